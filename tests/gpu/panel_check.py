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
from engine.runs.processes import session_members
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


def used_gpu_memory() -> int:
    """Bytes in use on GPU 0, as NVML reports them."""
    import pynvml

    pynvml.nvmlInit()
    return pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).used


def main() -> int:
    """Launch the demo's run on the GPU, capture the dashboard, stop the run: nothing of it left, its memory freed.

    `cuda=False` builds the demo's LoRA config without 4-bit, so bitsandbytes need not be carried; mmengine still
    trains it on the GPU it finds.
    """
    out = Path(os.environ.get("OUT", "."))
    before = used_gpu_memory()
    paths = build_demo(Path("/tmp/xtui-panel"), cuda=False)
    work_dir = paths.folder / "work"
    launch = start(LaunchSpec(config=paths.config, work_dir=work_dir, cwd=paths.folder))
    run = Run(work_dir)
    t0 = time.monotonic()
    while run.state.last is None and time.monotonic() - t0 < 120:
        run.poll()
        time.sleep(0.5)
    text = asyncio.run(capture(paths.folder, out, "xtui-panel/work"))
    print(text)
    during = used_gpu_memory()
    gone = stop(work_dir)
    time.sleep(2)
    left, after = session_members(launch.pid, launch.create_time), used_gpu_memory()
    print(
        f"stop: {gone}, processes left {left}, GPU memory used MiB before/during/after {before >> 20}/{during >> 20}/{after >> 20}"
    )
    return 0 if marked(text, "xtui-panel/work") and gone and not left and after <= before + (64 << 20) else 1


if __name__ == "__main__":
    sys.exit(main())
