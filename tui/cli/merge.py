"""`xtui merge`: a LoRA adapter merged into its base model, saved whole with its tokenizer."""

from __future__ import annotations

import argparse
from pathlib import Path

from tui.cli.common import existing_dir, shell
from tui.terminal_text import printable


def register(sub: argparse._SubParsersAction) -> None:
    """Add `merge` to the subcommands."""
    p = sub.add_parser("merge", help="merge a LoRA adapter into its base model (safetensors, float16)")
    p.add_argument("base", help="the base model folder")
    p.add_argument("adapter", help="the adapter folder (xtui convert's output)")
    p.add_argument("--out", required=True, help="a new folder for the merged model (never overwritten)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to merge (default: cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Merge, showing the tool's output, then say where the model is."""
    from engine.xtuner.convert import merge
    from tui.cli.convert import tool_line

    base, adapter = existing_dir(args.base), existing_dir(args.adapter)
    print(printable(f"merging {adapter} into {base}", newlines=False), flush=True)
    merged = merge(base, adapter, Path(args.out), args.device, tool_line)
    print(printable(f"merged model in {merged}; chat with it: {shell('xtui', 'chat', merged)}", newlines=False))
    return 0
