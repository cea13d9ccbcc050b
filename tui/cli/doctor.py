"""`xtui doctor`: what a run needs on this machine, one check each, with what to do about a problem."""

from __future__ import annotations

import argparse
from pathlib import Path

from tui.cli.common import to_json
from tui.terminal_text import printable


def register(sub: argparse._SubParsersAction) -> None:
    """Add `doctor` to the subcommands."""
    p = sub.add_parser("doctor", help="check Python, GPUs, torch, xtuner and its packages, and free disk")
    p.add_argument("--work-dir", default=".", help="where runs will write (its free disk is checked; default: here)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print every check; exit 1 when one failed."""
    from engine.xtuner.doctor import CheckStatus, doctor

    checks = doctor(Path(args.work_dir))
    if args.json:
        print(to_json([c.to_json() for c in checks], indent=2))
    else:
        for check in checks:
            print(printable(f"{check.status:<5} {check.name:<13} {check.found}", newlines=False))
            if check.fix:
                print(printable(f"{'':19}-> {check.fix}", newlines=False))
    return 1 if any(c.status is CheckStatus.FAIL for c in checks) else 0
