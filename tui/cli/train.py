"""`xtui train`: launch a detached training run."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tui.cli.common import shell


def register(sub: argparse._SubParsersAction) -> None:
    """Add `train` to the subcommands."""
    from engine.xtuner.presets import DEEPSPEED_PRESETS

    p = sub.add_parser("train", help="launch a detached training run")
    p.add_argument("config", help="config file or XTuner built-in config name")
    p.add_argument("--work-dir", required=True, help="where the run writes its logs and checkpoints")
    p.add_argument(
        "--gpus", type=int, default=int(os.environ.get("NPROC_PER_NODE") or 1),
        help="processes (GPUs), default $NPROC_PER_NODE or 1; above 1 uses torchrun",
    )  # fmt: skip
    p.add_argument("--devices", help="CUDA_VISIBLE_DEVICES for the run, e.g. 0,1")
    p.add_argument("--deepspeed", help=f"one of {', '.join(DEEPSPEED_PRESETS)} or a .json file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Launch the run and say how to watch and stop it."""
    from engine.runs.launch import LaunchSpec, start
    from engine.xtuner.configs import resolve_config

    spec = LaunchSpec(
        config=resolve_config(args.config), work_dir=Path(args.work_dir), gpus=args.gpus,
        devices=args.devices, deepspeed=args.deepspeed,
    )  # fmt: skip
    launch = start(spec)
    print(f"started pid {launch.pid}: {shell(*launch.argv)}")
    print(f"watch: {shell('xtui', 'events', args.work_dir, '--follow')}    stop: {shell('xtui', 'stop', args.work_dir)}")
    return 0
