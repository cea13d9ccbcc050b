"""`xtui resume`: resume a run from a checkpoint after the pre-flight check, or only print the check."""

from __future__ import annotations

import argparse
from pathlib import Path

from tui.cli.common import existing_dir, shell
from tui.terminal_text import printable


def register(sub: argparse._SubParsersAction) -> None:
    """Add `resume` to the subcommands."""
    p = sub.add_parser("resume", help="resume a run from a checkpoint after a pre-flight check")
    p.add_argument("dir", help="the run's work dir")
    p.add_argument("--from", dest="from_", metavar="CHECKPOINT", help="iter_N.pth (default: latest good one)")
    p.add_argument("--gpus", type=int, help="processes (GPUs) per node (default: as the last launch)")
    p.add_argument("--deepspeed", help="DeepSpeed config (default: as the last launch)")
    p.add_argument("--check", action="store_true", help="only print the pre-flight check")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check, then resume (or only check, with --check: exit 1 when it would not work)."""
    from engine.runs.resume import preflight, resume

    work_dir = existing_dir(args.dir)
    checkpoint = Path(args.from_) if args.from_ else None
    if args.check:
        result = preflight(work_dir, checkpoint, args.deepspeed, args.gpus)
        print_preflight(result)
        return 0 if result.ok else 1
    launch, result = resume(work_dir, checkpoint, gpus=args.gpus, deepspeed=args.deepspeed)
    print_preflight(result)
    how = f"as Slurm job {launch.slurm_job}" if launch.slurm_job else f"pid {launch.pid}"
    print(f"resumed {how}: {shell(*launch.argv)}")
    return 0


def print_preflight(result) -> None:
    """The pre-flight verdict, one line each."""
    lines = [f"problem: {problem}" for problem in result.problems] + [f"note: {note}" for note in result.notes]
    if result.checkpoint is not None:
        lines.insert(
            0, f"checkpoint: {result.checkpoint.path} (iteration {result.checkpoint.iter} of {result.max_iters or '?'})"
        )
    for line in lines:
        print(printable(line, newlines=False))
