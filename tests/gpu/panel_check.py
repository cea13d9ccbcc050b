"""On a GPU machine: the dashboard's GPU panel reading the real GPU (NVML) while a run xtui launched trains.

Not part of the CPU suite; run by hand on the device machine. Writes the screen as text (and SVG) to
$OUT and exits non-zero unless the panel shows the GPU by name with the run's process marked.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from engine.demo.build import build_demo
from engine.runs.launch import LaunchSpec, start, stop
from engine.runs.watch import Run
from tui.app import XtuiApp


def marked(text: str, label: str) -> bool:
    """True when the panel shows an H200 and a GPU process line naming the run."""
    return "H200" in text and any("pid" in line and label in line for line in text.splitlines())


def screen_text(app) -> str:
    """The screen as plain text (through the compositor; textual is pinned)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def capture(root: Path, out: Path, label: str) -> str:
    """Run the app headless at 80x24 until the panel marks the run's process, then save the screen."""
    app = XtuiApp(roots=[root], poll_s=1.0)
    async with app.run_test(size=(80, 24)) as pilot:
        text = ""
        for _ in range(60):
            await pilot.pause(1.0)
            text = screen_text(app)
            if marked(text, label):
                break
        (out / "gpu_panel_80x24.txt").write_text(text)
        app.save_screenshot(str(out / "gpu_panel_80x24.svg"))
    return text


def main() -> int:
    """Launch the demo's CUDA run, capture the dashboard, stop the run."""
    out = Path(os.environ.get("OUT", "."))
    paths = build_demo(Path("/tmp/xtui-panel"), cuda=True)
    work_dir = paths.folder / "work"
    start(LaunchSpec(config=paths.config, work_dir=work_dir, cwd=paths.folder))
    run = Run(work_dir)
    t0 = time.monotonic()
    while run.state.last is None and time.monotonic() - t0 < 120:
        run.poll()
        time.sleep(0.5)
    text = asyncio.run(capture(paths.folder, out, "xtui-panel/work"))
    print(text)
    stop(work_dir)
    return 0 if marked(text, "xtui-panel/work") else 1


if __name__ == "__main__":
    sys.exit(main())
