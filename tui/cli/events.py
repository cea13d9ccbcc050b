"""`xtui events`: a run's events as JSON lines, optionally following the run."""

from __future__ import annotations

import argparse

from tui.cli.common import existing_dir, to_json

POLL_S = 1.0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `events` to the subcommands."""
    p = sub.add_parser("events", help="a run's events as JSON lines")
    p.add_argument("dir", help="the run's work dir")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events until the run ends")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the run's events; with --follow, keep printing until the run ends."""
    from engine.runs.watch import Run

    watched = Run(existing_dir(args.dir))
    for event in watched.follow(POLL_S) if args.follow else watched.poll():
        print(to_json(event.to_json()), flush=True)
    return 0
