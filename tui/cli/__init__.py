"""The `xtui` command line: one argparse parser, a module per subcommand that registers itself; the TUI by default."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from engine.errors import XtuiError
from tui.terminal_text import printable

# Each module has `register(subparsers)`; listed in the order `xtui --help` shows them.
SUBCOMMANDS = (
    "watch", "status", "events", "train", "stop", "resume", "chat", "demo", "data", "config",
    "convert",
    "merge",
    "export",
    "web",
    "doctor",
)  # fmt: skip


def parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of `xtui` and every subcommand (or just `only`: the TUI's first frame must not wait for all 15)."""
    p = argparse.ArgumentParser(
        prog="xtui",
        description="A terminal cockpit for XTuner runs: launch, watch, stop, resume, chat.",
        epilog="`xtui DIR ...` is `xtui watch DIR ...`: with no subcommand, the TUI opens on the current folder.",
    )
    sub = p.add_subparsers(dest="command", metavar="SUBCOMMAND")
    for name in SUBCOMMANDS if only is None else (only,):
        importlib.import_module(f"tui.cli.{name}").register(sub)
    return p


def _with_subcommand(argv: list[str]) -> list[str]:
    """`argv` with `watch` put first when it names folders (or nothing) instead of a subcommand."""
    if not argv or argv[0] in SUBCOMMANDS or argv[0].startswith("-"):
        return argv or ["watch"]
    if Path(argv[0]).exists():
        return ["watch", *argv]
    raise XtuiError(
        f"{argv[0]!r} is not a subcommand nor a folder (subcommands: {', '.join(SUBCOMMANDS)}; see xtui --help)"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `xtui` console script: parse, run the subcommand, turn user errors into one line."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        argv = _with_subcommand(argv)
        args = parser(argv[0] if argv[0] in SUBCOMMANDS else None).parse_args(argv)
        return args.func(args)
    except XtuiError as exc:
        print(f"xtui: error: {printable(str(exc), newlines=False)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `xtui events DIR | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # a bug: the user gets one line, the traceback goes to a file
        from tui.crash import record

        print(f"xtui: error: {printable(record(exc), newlines=False)}", file=sys.stderr)
        return 1
