"""The `xtui` command: the TUI for `xtui [DIR ...]` and `xtui demo`, the headless engine CLI otherwise."""

from __future__ import annotations

import sys
from pathlib import Path

HEADLESS = {"status", "events", "train", "stop", "resume"}


def open_tui(dirs: list[str]) -> int:
    """Watch the runs under `dirs` (or open the one run a single work dir names)."""
    from engine.runs.workdir import is_run_dir
    from tui.app import XtuiApp

    paths = [Path(d) for d in dirs] or [Path.cwd()]
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        print(f"xtui: error: no such folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    single = paths[0] if len(paths) == 1 and is_run_dir(paths[0]) else None
    roots = [single.parent] if single else paths
    XtuiApp(roots=roots, open_run=single).run()
    return 0


def open_demo(argv: list[str]) -> int:
    """`xtui demo`: build and launch (or attach to) the demo, then show it in the TUI."""
    from engine import cli as engine_cli

    args = engine_cli.parser().parse_args(["demo", *argv])
    if args.headless or args.no_follow:
        return engine_cli.main(["demo", *argv])
    from engine.demo.build import DemoError
    from engine.demo.run import launch_demo
    from tui.app import XtuiApp

    print(f"building the demo in {args.dir} (tiny model, tokenizer, data, config)...", flush=True)
    try:
        run, _ = launch_demo(Path(args.dir), args.name)
    except DemoError as exc:
        print(f"xtui: error: {exc}", file=sys.stderr)
        return 2
    XtuiApp(roots=[run.work_dir.parent], open_run=run.work_dir).run()
    return 0


def chat_parser():
    """`xtui chat` arguments."""
    import argparse

    parser = argparse.ArgumentParser(prog="xtui chat", description="Chat with a model, an adapter, a run's checkpoint or LLaVA")
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
    return parser


def chat_spec(argv: list[str]):
    """The ChatSpec the `xtui chat` arguments describe; ValueError with the reason when they do not fit."""
    from engine.chat.models import LoadOptions, ModelSource
    from engine.xtuner.templates import template
    from engine.runs.workdir import is_run_dir
    from engine.chat.spec import ChatSpec, spec_for_run

    args = chat_parser().parse_args(argv)
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


def open_chat(argv: list[str]) -> int:
    """`xtui chat`: the chat screen on what the arguments name."""
    from tui.app import XtuiApp
    from tui.widgets.image_preview import detect_graphics

    try:
        spec = chat_spec(argv)
    except ValueError as exc:
        print(f"xtui chat: error: {exc}", file=sys.stderr)
        return 2
    if spec.source.kind == "llava":
        detect_graphics()  # kitty / sixel previews: the terminal can be asked only before the app starts
    XtuiApp(roots=[Path.cwd()], chat=spec).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Dispatch: headless subcommands go to the engine CLI."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and (argv[0] in HEADLESS or argv[0].startswith("-")):
        from engine import cli as engine_cli

        return engine_cli.main(argv)
    if argv and argv[0] == "demo":
        return open_demo(argv[1:])
    if argv and argv[0] == "chat":
        return open_chat(argv[1:])
    return open_tui(argv)


if __name__ == "__main__":
    sys.exit(main())
