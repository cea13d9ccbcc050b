"""`xtui events`: the events of one run or several, as JSON lines, optionally following them."""

from __future__ import annotations

import argparse
import time

from tui.cli.common import existing_dir, to_json

POLL_S = 1.0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `events` to the subcommands."""
    p = sub.add_parser("events", help="a run's events as JSON lines (several runs: each line names its work dir)")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="the runs' work dirs")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events until the runs end")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the runs' events; with --follow, keep printing until every trainer is gone and all is read."""
    from engine.runs.watch import Run

    runs = [Run(existing_dir(d)) for d in args.dirs]
    tagged = len(runs) > 1
    live = list(runs)
    while live:
        for watched in list(live):
            events, still = watched.poll_live() if args.follow else (watched.poll(), False)
            for event in events:
                record = event.to_json()
                print(to_json({"work_dir": str(watched.work_dir), **record} if tagged else record), flush=True)
            if not still:
                live.remove(watched)
        if live:
            time.sleep(POLL_S)
    return 0
