"""`xtui chat`: the chat screen on a model, base + adapter, a run's checkpoint or LLaVA."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tui.cli.common import run_app

if TYPE_CHECKING:
    from engine.chat.spec import ChatSpec


def register(sub: argparse._SubParsersAction) -> None:
    """Add `chat` to the subcommands."""
    parser = sub.add_parser(
        "chat", help="chat with a model, an adapter, a run's checkpoint or LLaVA",
        description="Chat with a model, an adapter, a run's checkpoint or LLaVA",
    )  # fmt: skip
    parser.add_argument("path", help="a model folder, or a run's work dir (chats with its latest checkpoint)")
    parser.add_argument("--adapter", help="a LoRA adapter folder (pth_to_hf output) on the model")
    parser.add_argument("--checkpoint", help="iter_N.pth of the run (default: the latest good one)")
    parser.add_argument("--compare", help="A/B: a second adapter folder or checkpoint on the same base")
    parser.add_argument("--llava", help="a LLaVA folder (projector, adapters) for the model")
    parser.add_argument("--visual-encoder", help="the visual encoder folder, when the LLaVA folder has none")
    parser.add_argument("--template", help="prompt template name (default: the run's, else internlm2_chat)")
    parser.add_argument("--system", default=None, help="system prompt")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda:N")
    parser.add_argument("--4bit", dest="bits4", action="store_true", help="load in 4 bits (GPU)")
    parser.add_argument(
        "--decoder", default="auto", choices=("auto", "eager", "graph", "compile"),
        help="auto: on a GPU, answers at once on CUDA graphs while torch.compile builds in the background, then switches "
        "between answers; eager on the CPU; graph: CUDA graphs only; compile: wait for the compiled one",
    )  # fmt: skip
    parser.set_defaults(func=run)


def chat_spec(args: argparse.Namespace) -> ChatSpec:
    """The ChatSpec the `xtui chat` arguments describe, by engine.chat.spec's rules; SpecError says what is wrong."""
    from engine.chat.models import LoadOptions
    from engine.chat.spec import build_spec
    from engine.runs.folders import is_run_dir

    path = Path(args.path)
    run = path if is_run_dir(path) else None
    named = ("adapter", "checkpoint", "compare", "llava", "visual_encoder")
    paths = {name: Path(getattr(args, name)) for name in named if getattr(args, name)}
    options = LoadOptions(device=args.device, bits=4 if args.bits4 else None, decoder=args.decoder)
    return build_spec(
        run=run, model=None if run else path, **paths, template=args.template, system=args.system, options=options
    )


def run(args: argparse.Namespace) -> int:
    """The chat screen on what the arguments name."""
    from engine.chat.models import SourceKind
    from tui.app import XtuiApp
    from tui.widgets.image_preview import detect_graphics

    spec = chat_spec(args)
    if spec.source.kind is SourceKind.LLAVA:
        detect_graphics()  # kitty / sixel previews: the terminal can be asked only before the app starts
    return run_app(XtuiApp(roots=[Path.cwd()], chat=spec))
