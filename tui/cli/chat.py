"""`xtui chat`: the chat screen on a model, base + adapter, a run's checkpoint or LLaVA."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import UsageError
from tui.cli.common import run_app


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
        help="auto: torch.compile on a GPU (fastest, ~30 s to warm up), eager on the CPU; graph: CUDA graphs, quick start",
    )  # fmt: skip
    parser.set_defaults(func=run)


def chat_spec(args: argparse.Namespace):
    """The ChatSpec the `xtui chat` arguments describe; ValueError with the reason when they do not fit."""
    from engine.chat.models import LoadOptions, ModelSource
    from engine.xtuner.templates import template
    from engine.runs.workdir import is_run_dir
    from engine.chat.spec import ChatSpec, spec_for_run

    path = Path(args.path).resolve()
    options = LoadOptions(device=args.device, bits=4 if args.bits4 else None, decoder=args.decoder)
    if is_run_dir(path):
        from engine.runs.checkpoints import latest_good, list_checkpoints

        latest = latest_good(list_checkpoints(path))
        checkpoint = Path(args.checkpoint).resolve() if args.checkpoint else (latest.path if latest else None)
        if checkpoint is None:
            raise ValueError(f"{path} has no complete checkpoint yet")
        spec = spec_for_run(path, checkpoint)
        compare = Path(args.compare).resolve() if args.compare else None
        other = ModelSource("checkpoint", checkpoint=compare, config=spec.source.config) if compare else None
        spec = ChatSpec(spec.source, options, spec.template, spec.system, other)
    else:
        kind = "llava" if args.llava else "adapter" if args.adapter else "base"
        paths = {k: Path(v).resolve() if v else None for k, v in vars(args).items() if k in ("adapter", "llava", "visual_encoder")}
        source = ModelSource(kind, model=path, **paths)
        other = ModelSource("adapter", model=path, adapter=Path(args.compare).resolve()) if args.compare else None
        spec = ChatSpec(source, options, "internlm2_chat", "", other)
    problems = spec.source.problems() + (spec.compare.problems() if spec.compare else [])
    if problems:
        raise ValueError("; ".join(problems))
    if args.template:
        template(args.template)  # raises with the list of names
    return ChatSpec(
        spec.source, spec.options, args.template or spec.template,
        spec.system if args.system is None else args.system, spec.compare,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """The chat screen on what the arguments name."""
    from tui.app import XtuiApp
    from tui.widgets.image_preview import detect_graphics

    try:
        spec = chat_spec(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if spec.source.kind == "llava":
        detect_graphics()  # kitty / sixel previews: the terminal can be asked only before the app starts
    return run_app(XtuiApp(roots=[Path.cwd()], chat=spec))
