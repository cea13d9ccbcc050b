"""`xtui demo`: build the tiny demo offline, launch it (or attach), and show it in the TUI or as progress lines."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tui.cli.common import run_app, shell
from tui.terminal_text import printable

POLL_S = 0.5


def register(sub: argparse._SubParsersAction) -> None:
    """Add `demo` to the subcommands."""
    p = sub.add_parser("demo", help="build a tiny model and dataset offline and fine-tune it")
    p.add_argument("--dir", default="xtui-demo", help="folder for the demo (default: ./xtui-demo)")
    p.add_argument("--name", default="小明", help="the assistant's name the model learns")
    p.add_argument("--headless", action="store_true", help="print progress lines instead of opening the TUI")
    p.add_argument("--no-follow", action="store_true", help="launch and return at once")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Launch (or attach to) the demo, then open the TUI on it or print its progress."""
    from engine.demo.build import MARKER
    from engine.demo.run import launch_demo

    folder = Path(args.dir)
    if (folder / MARKER).is_file():
        print(f"reusing the demo in {folder} (its tiny model, data and config are kept as they are)...", flush=True)
    else:
        print(f"building the demo in {folder} (tiny model, tokenizer, data, config)...", flush=True)
    t0 = time.monotonic()
    demo_run, fresh = launch_demo(folder, args.name)
    if not (args.headless or args.no_follow):
        from tui.app import XtuiApp

        return run_app(XtuiApp(roots=[demo_run.work_dir.parent], open_run=demo_run.work_dir))
    verb = "launched" if fresh else "attached to the live run in"
    print(f"{verb} {demo_run.work_dir} ({time.monotonic() - t0:.1f} s)", flush=True)
    if args.no_follow:
        return 0
    print(f"Ctrl-C leaves training running; `{shell('xtui', 'stop', demo_run.work_dir)}` stops it.", flush=True)
    for event in demo_run.follow(POLL_S):
        text = describe(event)
        if text:
            print(printable(text, newlines=False), flush=True)
    status = demo_run.status()
    print(printable(f"run {status.state}{f': {status.cause}' if status.cause else ''} ({time.monotonic() - t0:.0f} s)"))
    return 0 if status.state == "finished" else 1


def describe(event) -> str | None:
    """One human line for an event, None for events not worth a line."""
    from engine.runs.events import CheckpointSaved, Resumed, RunError, Sample, TrainStep

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
