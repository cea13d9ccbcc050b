"""`xtui export`: a run's checkpoint as a folder ready to upload (merged model, tokenizer, template, model card)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tui.cli.common import existing_dir, shell
from tui.terminal_text import printable


def register(sub: argparse._SubParsersAction) -> None:
    """Add `export` to the subcommands."""
    p = sub.add_parser("export", help="export a run as a merged model with its tokenizer, template and model card")
    p.add_argument("dir", help="the run's work dir")
    p.add_argument("--out", required=True, help="a new folder for the export (never overwritten)")
    p.add_argument("--checkpoint", help="iter_N.pth of the run (default: the latest good one)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to merge a LoRA run (default: cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export, showing the converters' output, then say what is in the folder."""
    from engine.runs.export import export_run, pick_checkpoint
    from tui.cli.convert import tool_line

    source = pick_checkpoint(existing_dir(args.dir), Path(args.checkpoint) if args.checkpoint else None)
    print(printable(f"exporting {source.checkpoint} into {args.out}", newlines=False), flush=True)
    exported = export_run(source, Path(args.out), tool_line, args.device)
    card = exported.card
    how = f"merged onto {exported.base}" if exported.base else "the whole model, as trained"
    loss = f"{card.loss:.4f}" if card.loss is not None else "?"
    print(printable(
        f"exported {exported.source.checkpoint.name} ({how}; loss {loss}; template {card.template or 'none'}) "
        f"into {exported.folder}, with README.md; try it: {shell('xtui', 'web', exported.folder)}", newlines=False,
    ))  # fmt: skip
    return 0
