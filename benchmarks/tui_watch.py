"""Run the xtui app headless on one run until the run ends: the load xtui puts on a training it watches."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

ENDED = {"finished", "failed", "stopped"}


async def watch(work_dir: Path, size: tuple[int, int] = (120, 40)) -> tuple[str, float, float]:
    """Open the run's view (GPU panel polling meanwhile on the dashboard below it); the final state, and the wall
    and CPU time when the view first showed the run."""
    from tui.app import XtuiApp

    app = XtuiApp(roots=[work_dir.parent], open_run=work_dir)
    async with app.run_test(size=size) as pilot:
        while app.record(work_dir).status.state == "unknown":
            await pilot.pause(0.2)
        shown = time.monotonic(), time.process_time()
        while app.record(work_dir).status.state not in ENDED:
            await pilot.pause(1.0)
        return app.record(work_dir).status.state, *shown


if __name__ == "__main__":
    wall, cpu = time.monotonic(), time.process_time()
    state, shown_wall, shown_cpu = asyncio.run(watch(Path(sys.argv[1]).resolve()))
    end_wall, end_cpu = time.monotonic(), time.process_time()
    watching = 100 * (end_cpu - shown_cpu) / (end_wall - shown_wall)
    print(json.dumps({"state": state, "wall_s": round(end_wall - wall, 1), "cpu_s": round(end_cpu - cpu, 1),
                      "cpu_percent": round(100 * (end_cpu - cpu) / (end_wall - wall), 1),
                      "watching_cpu_percent": round(watching, 2)}))  # fmt: skip
