"""`xtui demo` without the TUI: build the demo, launch it (or attach), print progress lines."""

from __future__ import annotations

import time
from pathlib import Path

from engine.runs.events import CheckpointSaved, Event, Resumed, RunError, Sample, TrainStep
from engine.runs.launch import LaunchSpec, start
from engine.runs.watch import Run, discover

POLL_S = 0.5


def describe(event: Event) -> str | None:
    """One human line for an event, None for events not worth a line."""
    if isinstance(event, TrainStep):
        loss = f"  loss {event.loss:.4f}" if event.loss is not None else ""
        eta = f"  eta {int(event.eta) // 60}:{int(event.eta) % 60:02d}" if event.eta is not None else ""
        return f"iter {event.iter:>5}/{event.max_iters or '?'}{loss}{eta}"
    if isinstance(event, Sample):
        answer = event.answer.replace("\n", " ").strip() or "(empty)"
        return f"sample @ iter {event.iter}: {event.prompt} -> {answer}"
    if isinstance(event, CheckpointSaved):
        return f"checkpoint iter_{event.iter}.pth saved"
    if isinstance(event, Resumed):
        return f"resumed at iteration {event.iter}"
    if isinstance(event, RunError):
        return f"error ({event.cause}): {event.message}"
    return None


def next_work_dir(folder: Path) -> Path:
    """`work`, or `work-2`, `work-3`... so that an earlier demo run is never overwritten."""
    candidate, n = folder / "work", 1
    while candidate.exists():
        n += 1
        candidate = folder / f"work-{n}"
    return candidate


def launch_demo(folder: Path, name: str) -> tuple[Run, bool]:
    """The demo's live run if one is alive, else a fresh one; True when freshly launched."""
    folder = folder.resolve()
    for work_dir in discover([folder], depth=1):
        run = Run(work_dir)
        if run.alive_pid() is not None:
            return run, False
    from engine.demo.build import build_demo

    paths = build_demo(folder, name=name)
    work_dir = next_work_dir(folder)
    start(LaunchSpec(config=paths.config, work_dir=work_dir, cwd=folder))
    return Run(work_dir), True


def run_demo(folder: Path, name: str, follow: bool = True) -> int:
    """Launch (or attach to) the demo and print its progress until it ends."""
    print(f"building the demo in {folder} (tiny model, tokenizer, data, config)...", flush=True)
    t0 = time.monotonic()
    run, fresh = launch_demo(folder, name)
    verb = "launched" if fresh else "attached to the live run in"
    print(f"{verb} {run.work_dir} ({time.monotonic() - t0:.1f} s)", flush=True)
    if not follow:
        return 0
    print("Ctrl-C leaves training running; `xtui stop DIR` stops it.", flush=True)
    for event in run.follow(POLL_S):
        line = describe(event)
        if line:
            print(line, flush=True)
    status = run.status()
    print(f"run {status.state}{f': {status.cause}' if status.cause else ''} ({time.monotonic() - t0:.0f} s)")
    return 0 if status.state == "finished" else 1
