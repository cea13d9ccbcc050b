"""`xtui status`: every run under folders, one line each or JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from tui.cli.common import existing_dir, to_json
from tui.terminal_text import printable


def register(sub: argparse._SubParsersAction) -> None:
    """Add `status` to the subcommands."""
    p = sub.add_parser("status", help="runs under folders, with status, progress, loss, checkpoints")
    p.add_argument("dirs", nargs="*", help="folders to search (default: current folder)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--node-rank", type=int, default=0, help="of runs over several nodes: this node's part")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print every run under the given folders."""
    from engine.runs.folders import discover
    from engine.runs.watch import Run
    from engine.runs.workdir import WorkDir

    roots = [existing_dir(d) for d in args.dirs] or [Path.cwd()]
    summaries = []
    for work_dir in discover(roots):
        one = Run(WorkDir.open(work_dir, args.node_rank))
        one.poll()
        summaries.append(one.summary())
    if args.json:
        print(to_json(summaries, indent=2))
        return 0
    if not summaries:
        print("no runs found under " + ", ".join(str(r) for r in roots))
    for s in summaries:
        print(line(s))
    return 0


def line(s: dict) -> str:
    """One run's summary as a line of text."""
    progress = f"{s['iter']}/{s['max_iters'] or '?'}" if s["iter"] is not None else "-"
    loss = f"{s['loss']:.4f}" if s["loss"] is not None else "-"
    ckpts = ",".join(f"{_short(c)}{'' if c['problem'] is None else '!'}" for c in s["checkpoints"]) or "-"
    where = (f" pid {s['pid']}" if s["pid"] else "") + (f" node {s['node']}" if s["node"] else "")
    where += f" slurm job {s['slurm_job']}" if s["slurm_job"] else ""
    cause = f" ({s['cause']})" if s["cause"] else ""
    if s["last_checkpoint_problem"]:
        cause += f" ({s['last_checkpoint_problem']}; a resume would start from {s['resume_from'] or 'nothing'})"
    return printable(
        f"{s['status']:<9} {progress:>11}  loss {loss:<8} ckpt {ckpts:<12} {s['work_dir']}{where}{cause}",
        newlines=False,
    )


def _short(checkpoint: dict) -> str:
    """A checkpoint in a status line: its iteration, or `eN` for an epoch checkpoint whose iteration is unknown."""
    return str(checkpoint["iter"]) if checkpoint["iter"] is not None else f"e{checkpoint['epoch']}"
