"""The headless `xtui` command line: status, events, train, stop, resume, demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from engine.runs.launch import DEEPSPEED_PRESETS, LaunchError, LaunchSpec, preflight, resume, start, stop
from engine.runs.watch import Run, discover

POLL_S = 1.0


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


def run_summary(run: Run) -> dict:
    """One run's status as a JSON-ready dict (after a poll)."""
    status = run.status()
    last = run.state.last
    return {
        "work_dir": str(run.work_dir),
        "status": status.state,
        "cause": status.cause,
        "pid": status.pid,
        "iter": last.iter if last else None,
        "max_iters": run.state.max_iters,
        "loss": last.loss if last else None,
        "checkpoints": [c.to_json() for c in run.checkpoints()],
    }


def _existing_dir(path: str) -> Path:
    """A folder argument that must exist."""
    folder = Path(path)
    if not folder.is_dir():
        raise CliError(f"no such folder: {path}")
    return folder


def cmd_status(args: argparse.Namespace) -> int:
    """Print every run under the given folders."""
    roots = [_existing_dir(d) for d in args.dirs] or [Path.cwd()]
    summaries = []
    for work_dir in discover(roots):
        run = Run(work_dir)
        run.poll()
        summaries.append(run_summary(run))
    if args.json:
        print(json.dumps(summaries, ensure_ascii=False, indent=2))
        return 0
    if not summaries:
        print("no runs found under " + ", ".join(str(r) for r in roots))
    for s in summaries:
        progress = f"{s['iter']}/{s['max_iters'] or '?'}" if s["iter"] is not None else "-"
        loss = f"{s['loss']:.4f}" if s["loss"] is not None else "-"
        ckpts = ",".join(f"{c['iter']}{'' if c['problem'] is None else '!'}" for c in s["checkpoints"]) or "-"
        pid = f" pid {s['pid']}" if s["pid"] else ""
        cause = f" ({s['cause']})" if s["cause"] else ""
        print(f"{s['status']:<9} {progress:>11}  loss {loss:<8} ckpt {ckpts:<12} {s['work_dir']}{pid}{cause}")
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    """Print the run's events as JSON lines; with --follow, keep printing until the run ends."""
    run = Run(_existing_dir(args.dir))
    for event in run.follow(POLL_S) if args.follow else run.poll():
        print(json.dumps(event.to_json(), ensure_ascii=False), flush=True)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Launch a detached training run."""
    spec = LaunchSpec(
        config=resolve_config(args.config), work_dir=Path(args.work_dir), gpus=args.gpus,
        devices=args.devices, deepspeed=args.deepspeed,
    )  # fmt: skip
    launch = start(spec)
    print(f"started pid {launch.pid}: {' '.join(launch.argv)}")
    print(f"watch: xtui events {args.work_dir} --follow    stop: xtui stop {args.work_dir}")
    return 0


def resolve_config(name: str) -> Path:
    """A config path, or the file of an XTuner built-in config name."""
    path = Path(name)
    if path.is_file():
        return path
    if path.suffix == ".py" or "/" in name:
        raise CliError(f"config not found: {name}")
    from engine.xtuner.configs import ConfigError, find_builtin

    try:
        return find_builtin(name)
    except ConfigError:
        raise CliError(f"unknown config {name!r}: not a file and not an XTuner built-in config") from None


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop a run and its whole process tree."""
    gone = stop(_existing_dir(args.dir), grace=args.grace)
    print("stopped" if gone else "some processes of the run could not be stopped")
    return 0 if gone else 1


def cmd_resume(args: argparse.Namespace) -> int:
    """Resume from a checkpoint after the pre-flight check."""
    work_dir = _existing_dir(args.dir)
    checkpoint = Path(args.from_) if args.from_ else None
    if args.check:
        result = preflight(work_dir, checkpoint, args.deepspeed)
        _print_preflight(result)
        return 0 if result.ok else 1
    launch, result = resume(work_dir, checkpoint, gpus=args.gpus, deepspeed=args.deepspeed)
    _print_preflight(result)
    print(f"resumed pid {launch.pid}: {' '.join(launch.argv)}")
    return 0


def _print_preflight(result) -> None:
    """The pre-flight verdict, one line each."""
    if result.checkpoint is not None:
        print(f"checkpoint: {result.checkpoint.path} (iteration {result.checkpoint.iter} of {result.max_iters or '?'})")
    for problem in result.problems:
        print(f"problem: {problem}")
    for note in result.notes:
        print(f"note: {note}")


def cmd_demo(args: argparse.Namespace) -> int:
    """Build the tiny demo and train it, printing progress."""
    from engine.demo.build import DemoError
    from engine.demo.run import run_demo

    try:
        return run_demo(Path(args.dir), name=args.name, follow=not args.no_follow)
    except DemoError as exc:
        raise CliError(str(exc)) from None


def parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    p = argparse.ArgumentParser(prog="xtui", description="Launch, watch, stop and resume XTuner runs.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("status", help="runs under folders, with status, progress, loss, checkpoints")
    s.add_argument("dirs", nargs="*", help="folders to search (default: current folder)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("events", help="a run's events as JSON lines")
    s.add_argument("dir", help="the run's work dir")
    s.add_argument("--follow", "-f", action="store_true", help="keep printing new events until the run ends")
    s.set_defaults(func=cmd_events)

    s = sub.add_parser("train", help="launch a detached training run")
    s.add_argument("config", help="config file or XTuner built-in config name")
    s.add_argument("--work-dir", required=True, help="where the run writes its logs and checkpoints")
    s.add_argument(
        "--gpus", type=int, default=int(os.environ.get("NPROC_PER_NODE") or 1),
        help="processes (GPUs), default $NPROC_PER_NODE or 1; above 1 uses torchrun",
    )  # fmt: skip
    s.add_argument("--devices", help="CUDA_VISIBLE_DEVICES for the run, e.g. 0,1")
    s.add_argument("--deepspeed", help=f"one of {', '.join(DEEPSPEED_PRESETS)} or a .json file")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("stop", help="stop a run (TERM its process group, then KILL)")
    s.add_argument("dir", help="the run's work dir")
    s.add_argument("--grace", type=float, default=15.0, help="seconds between TERM and KILL")
    s.set_defaults(func=cmd_stop)

    s = sub.add_parser("resume", help="resume a run from a checkpoint after a pre-flight check")
    s.add_argument("dir", help="the run's work dir")
    s.add_argument("--from", dest="from_", metavar="CHECKPOINT", help="iter_N.pth (default: latest good one)")
    s.add_argument("--gpus", type=int, help="processes (default: as the last launch)")
    s.add_argument("--deepspeed", help="DeepSpeed config (default: as the last launch)")
    s.add_argument("--check", action="store_true", help="only print the pre-flight check")
    s.set_defaults(func=cmd_resume)

    s = sub.add_parser("demo", help="build a tiny model and dataset offline and fine-tune it")
    s.add_argument("--dir", default="xtui-demo", help="folder for the demo (default: ./xtui-demo)")
    s.add_argument("--name", default="小明", help="the assistant's name the model learns")
    s.add_argument("--headless", action="store_true", help="print progress lines instead of opening the TUI")
    s.add_argument("--no-follow", action="store_true", help="launch and return at once")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `xtui` console script."""
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (CliError, LaunchError) as exc:
        print(f"xtui: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `xtui events DIR | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
