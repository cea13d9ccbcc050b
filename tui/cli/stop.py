"""`xtui stop`: stop a run and its whole process tree, or cancel its Slurm job."""

from __future__ import annotations

import argparse

from tui.cli.common import existing_dir


def register(sub: argparse._SubParsersAction) -> None:
    """Add `stop` to the subcommands."""
    p = sub.add_parser(
        "stop", help="stop a run (TERM its processes, then KILL; scancel for a Slurm job; a queued one: cancel it)"
    )
    p.add_argument("dir", help="the run's work dir")
    p.add_argument(
        "--grace", type=float, default=15.0, help="seconds between TERM and KILL (a Slurm job: Slurm's KillWait)"
    )
    p.add_argument("--node-rank", type=int, default=0, help="of a run over several nodes: this node's part")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Stop the run; exit 1 when some process could not be stopped."""
    from engine.runs.launch import stop
    from engine.runs.workdir import WorkDir

    folder = existing_dir(args.dir)
    gone = stop(folder, grace=args.grace, node=args.node_rank)
    manifest = WorkDir.open(folder).manifest
    never_started = manifest is not None and manifest.queue is not None and not manifest.launches
    print(("cancelled before start" if never_started else "stopped") if gone else "some processes could not be stopped")
    return 0 if gone else 1
