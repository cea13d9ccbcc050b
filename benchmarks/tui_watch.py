"""Run the xtui app headless on one run until the run ends: the load xtui puts on a training it watches."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

ENDED = {"finished", "failed", "stopped"}


async def watch(work_dir: Path, size: tuple[int, int] = (120, 40)) -> str:
    """Open the run's view (GPU panel polling meanwhile on the dashboard below it); the final state."""
    from tui.app import XtuiApp

    app = XtuiApp(roots=[work_dir.parent], open_run=work_dir)
    async with app.run_test(size=size) as pilot:
        while app.record(work_dir).status.state not in ENDED:
            await pilot.pause(1.0)
        return app.record(work_dir).status.state


if __name__ == "__main__":
    wall, cpu = time.monotonic(), time.process_time()
    state = asyncio.run(watch(Path(sys.argv[1]).resolve()))
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    print(json.dumps({"state": state, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "cpu_percent": round(100 * cpu / wall, 1)}))
