"""The `xtui` command: the TUI for `xtui [DIR ...]` and `xtui demo`, the headless engine CLI otherwise."""

from __future__ import annotations

import sys
from pathlib import Path

HEADLESS = {"status", "events", "train", "stop", "resume"}


def open_tui(dirs: list[str]) -> int:
    """Watch the runs under `dirs` (or open the one run a single work dir names)."""
    from engine.workdirs import is_run_dir
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
    from engine.demo import DemoError
    from engine.demo_run import launch_demo
    from tui.app import XtuiApp

    print(f"building the demo in {args.dir} (tiny model, tokenizer, data, config)...", flush=True)
    try:
        run, _ = launch_demo(Path(args.dir), args.name)
    except DemoError as exc:
        print(f"xtui: error: {exc}", file=sys.stderr)
        return 2
    XtuiApp(roots=[run.work_dir.parent], open_run=run.work_dir).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Dispatch: headless subcommands go to the engine CLI."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and (argv[0] in HEADLESS or argv[0].startswith("-")):
        from engine import cli as engine_cli

        return engine_cli.main(argv)
    if argv and argv[0] == "demo":
        return open_demo(argv[1:])
    return open_tui(argv)


if __name__ == "__main__":
    sys.exit(main())
