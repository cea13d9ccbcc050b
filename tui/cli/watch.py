"""`xtui watch` (and plain `xtui DIR ...`): the TUI on the runs under folders, or on one run."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import UsageError
from tui.cli.common import run_app


def register(sub: argparse._SubParsersAction) -> None:
    """Add `watch` to the subcommands."""
    p = sub.add_parser("watch", help="the TUI on the runs under folders (the default: `xtui DIR ...`)")
    p.add_argument("dirs", nargs="*", help="folders to watch, or one run's work dir (default: current folder)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Watch the runs under the folders (or open the one run a single work dir names)."""
    from engine.runs.folders import is_run_dir
    from tui.app import XtuiApp

    paths = [Path(d) for d in args.dirs] or [Path.cwd()]
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        raise UsageError(f"no such folder: {', '.join(missing)}")
    single = paths[0] if len(paths) == 1 and is_run_dir(paths[0]) else None
    roots = [single.parent] if single else paths
    return run_app(XtuiApp(roots=roots, open_run=single))
