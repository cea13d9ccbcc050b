"""`xtui convert`: a run's checkpoint to Hugging Face form (pth_to_hf) with the run's own config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tui.cli.common import existing_dir, shell
from tui.terminal_text import printable

NEXT_STEP = {"adapter": "merge it: {merge}", "model": "chat with it: {chat}", "llava": "chat with it: {llava}"}


def register(sub: argparse._SubParsersAction) -> None:
    """Add `convert` to the subcommands."""
    p = sub.add_parser("convert", help="convert a run's checkpoint to Hugging Face form (adapter, model or LLaVA)")
    p.add_argument("dir", help="the run's work dir")
    p.add_argument("--checkpoint", help="iter_N.pth of the run (default: the latest good one)")
    p.add_argument("--out", help="a new folder (default: WORK_DIR/iter_N_hf); an existing one is never overwritten")
    p.set_defaults(func=run)


def tool_line(line: str) -> None:
    """One line of a converter's output, shown as it comes (on stderr: stdout is left for the result)."""
    print(printable(f"  | {line}", newlines=False), file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Convert the checkpoint, then say what came out and what to do with it."""
    from engine.runs.export import convert_run, pick_checkpoint

    source = pick_checkpoint(existing_dir(args.dir), Path(args.checkpoint) if args.checkpoint else None)
    print(printable(f"converting {source.checkpoint} with {source.config}", newlines=False), flush=True)
    converted = convert_run(source, Path(args.out) if args.out else None, tool_line)
    hint = NEXT_STEP[converted.kind].format(
        merge=shell("xtui", "merge", converted.base or "BASE", converted.folder, "--out", f"{converted.folder}_merged"),
        chat=shell("xtui", "chat", converted.folder), llava=shell("xtui", "chat", "LLM", "--llava", converted.folder),
    )  # fmt: skip
    print(printable(f"{converted.kind} in {converted.folder}; {hint}", newlines=False))
    return 0
