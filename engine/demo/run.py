"""The demo's run: build the demo and launch it, or attach to its live run."""

from __future__ import annotations

from pathlib import Path

from engine.runs.folders import discover
from engine.runs.launch import LaunchSpec, free_sibling, start
from engine.runs.watch import Run


def launch_demo(folder: Path, name: str) -> tuple[Run, bool]:
    """The demo's live run if one is alive, else a fresh one; True when freshly launched."""
    folder = folder.resolve()
    for work_dir in discover([folder], depth=1):
        run = Run(work_dir)
        if run.alive_pid() is not None:
            return run, False
    from engine.demo.build import build_demo

    paths = build_demo(folder, name=name)
    work_dir = free_sibling(folder / "work")  # an earlier demo run is never overwritten
    start(LaunchSpec(config=paths.config, work_dir=work_dir, cwd=folder))
    return Run(work_dir), True
