"""`xtui train`: launch a detached training run, here, over several nodes, or as a Slurm job."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from engine.errors import UsageError
from tui.cli.common import shell

SLURM_ONLY = ("partition", "gpus_per_node", "time", "sbatch_arg")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `train` to the subcommands."""
    from engine.xtuner.presets import DEEPSPEED_PRESETS

    p = sub.add_parser("train", help="launch a detached training run (here, over several nodes, or with Slurm)")
    p.add_argument("config", help="config file or XTuner built-in config name")
    p.add_argument("--work-dir", required=True, help="where the run writes its logs and checkpoints")
    p.add_argument(
        "--gpus", type=int, default=os.environ.get("NPROC_PER_NODE") or "1",
        help="processes (GPUs) per node, default $NPROC_PER_NODE or 1; above 1 uses torchrun",
    )  # fmt: skip
    p.add_argument("--devices", help="CUDA_VISIBLE_DEVICES for the run, e.g. 0,1")
    p.add_argument("--deepspeed", help=f"one of {', '.join(DEEPSPEED_PRESETS)} or a .json file")
    p.add_argument("--dry-run", action="store_true", help="print the commands (or the sbatch script) and start nothing")
    nodes = p.add_argument_group("several nodes with torchrun (defaults: XTuner's NNODES, NODE_RANK, ADDR, PORT)")
    nodes.add_argument(
        "--nnodes", "--nodes", type=int, default=os.environ.get("NNODES") or "1", help="nodes of the run"
    )
    nodes.add_argument("--node-rank", type=int, default=os.environ.get("NODE_RANK") or "0", help="this node's rank")
    nodes.add_argument(
        "--master-addr", default=os.environ.get("ADDR"), help="node 0's address, reachable from every node"
    )
    nodes.add_argument(
        "--master-port", type=int, default=os.environ.get("PORT") or "0", help="node 0's rendezvous port"
    )
    job = p.add_argument_group("Slurm: an sbatch script in the work dir, srun ... --launcher slurm")
    job.add_argument("--slurm", action="store_true", help="submit the run with sbatch instead of starting it here")
    job.add_argument("--partition", help="the partition to queue in")
    job.add_argument("--gpus-per-node", type=int, help="GPUs (tasks) per node, default --gpus; 0: one CPU task")
    job.add_argument("--time", help="the job's time limit, as sbatch --time takes it (e.g. 4:00:00)")
    job.add_argument(
        "--sbatch-arg", action="append", default=[], metavar="ARG",
        help="one more sbatch option, written with '=': --sbatch-arg=--mem=64G (repeatable)",
    )  # fmt: skip
    queue = p.add_argument_group("a queue on a shared box: wait, detached, then start as any launch")
    queue.add_argument("--after", metavar="DIR", help="start when the run in DIR ends")
    queue.add_argument("--only-if-finished", action="store_true", help="with --after: only if that run finished")
    queue.add_argument("--when-free", action="store_true", help="start when the run's GPUs have --need-gib free")
    queue.add_argument(
        "--need-gib",
        type=float,
        help="with --when-free: GPU memory the run needs on each GPU, GiB (default: the estimate)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Launch the run (or only show how, with --dry-run) and say how to watch and stop it."""
    from engine.runs.launch import LaunchSpec, plan, prepare, start
    from engine.xtuner.configs import resolve_config

    spec = prepare(LaunchSpec(
        config=resolve_config(args.config), work_dir=Path(args.work_dir), gpus=args.gpus, devices=args.devices,
        deepspeed=args.deepspeed, nnodes=args.nnodes, node_rank=args.node_rank, master_addr=args.master_addr,
        master_port=args.master_port, slurm=_slurm_options(args),
    ))  # fmt: skip
    if args.after or args.when_free or args.only_if_finished or args.need_gib is not None:
        return _queue(spec, args)
    if args.dry_run:
        _show(plan(spec), args)
        return 0
    launch = start(spec)
    if launch.slurm_job:
        from engine.runs.slurm import script_path

        script = script_path(spec.work_dir, len(_launches(spec.work_dir)) - 1)
        print(script.read_text(encoding="utf-8"), end="")
        print(f"submitted Slurm job {launch.slurm_job}: sbatch {shell(script)}")
    else:
        node = f"node {launch.node_rank} of {launch.nnodes}: " if launch.nnodes > 1 else ""
        print(f"started {node}pid {launch.pid}: {shell(*launch.argv)}")
        if launch.nnodes > 1:
            _show_nodes(spec, args, skip=launch.node_rank)
    part = ["--node-rank", str(launch.node_rank)] if launch.node_rank else []  # node 0 has the plain files
    print(
        f"watch: {shell('xtui', 'events', args.work_dir, '--follow')}    "
        f"stop: {shell('xtui', 'stop', args.work_dir, *part)}"
    )
    return 0


def _queue(spec, args: argparse.Namespace) -> int:
    """Queue the launch behind its wait (or, with --dry-run, only check it and show what it would start)."""
    from engine.runs.launch import plan
    from engine.runs.queue import Wait, check_wait, enqueue

    wait = Wait(Path(args.after) if args.after else None, args.only_if_finished, args.when_free, args.need_gib)
    if args.dry_run:
        check_wait(spec, wait)
        _show(plan(spec), args)
        waits = (
            [f"after {args.after} ends" + (", only if it finished" if args.only_if_finished else "")]
            if args.after
            else []
        )
        waits += ["when its GPUs have the memory free"] if args.when_free else []
        print(f"# queued, it would start {' and '.join(waits)}")
        return 0
    queued = enqueue(spec, wait)
    print(f"queued: {queued.reason} (waiter pid {queued.pid}); then it starts as xtui train would")
    print(f"status: {shell('xtui', 'status', args.work_dir)}    cancel: {shell('xtui', 'stop', args.work_dir)}")
    return 0


def _slurm_options(args: argparse.Namespace):
    """The Slurm options given (None without --slurm, where giving one is a mistake)."""
    from engine.runs.slurm import SlurmOptions

    given = [name for name in SLURM_ONLY if getattr(args, name) not in (None, [])]
    if not args.slurm:
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} goes with --slurm")
        return None
    gpus = args.gpus if args.gpus_per_node is None else args.gpus_per_node
    return SlurmOptions(args.partition, gpus, args.time, tuple(args.sbatch_arg))


def _launches(work_dir: Path) -> list:
    """The launches the work dir's manifest records."""
    from engine.runs.workdir import WorkDir

    manifest = WorkDir.open(work_dir).manifest
    return manifest.launches if manifest else []


def _show(spec, args: argparse.Namespace) -> None:
    """What a launch would run: the sbatch script, each node's command, or the one command."""
    from engine.runs.launch import command, environment, slurm_script
    from engine.runs.slurm import script_path
    from engine.runs.workdir import WorkDir
    from engine.xtuner.memory_estimate import memory_line
    from tui.terminal_text import printable

    if spec.slurm:
        work_dir = WorkDir.open(spec.work_dir)
        print(slurm_script(spec, work_dir), end="")
        print(
            f"# dry run: would write {script_path(spec.work_dir, len(_launches(spec.work_dir)))} and submit it with sbatch"
        )
    elif spec.nnodes > 1:
        _show_nodes(spec, args)
    else:
        print(shell(*(f"{k}={v}" for k, v in environment(spec).items()), *command(spec)))
        print("# dry run: nothing started")
    readings = [] if spec.slurm else None  # a Slurm job's GPUs are not this machine's
    ok, line = memory_line(spec.config, spec.cwd, spec.deepspeed, spec.gpus, spec.nnodes, spec.devices, readings)
    print(printable(f"# {line}" if ok else f"# warning: {line}"))


def _show_nodes(spec, args: argparse.Namespace, skip: int | None = None) -> None:
    """Each node's command, to run there (torchrun), and the same through xtui, which watches it there."""
    from engine.runs.launch import environment, node_commands

    env = [f"{k}={v}" for k, v in environment(spec).items()]
    for rank, argv in enumerate(node_commands(spec)):
        if rank == skip:
            continue
        print(f"# node {rank} of {spec.nnodes}, to run there:")
        print(shell(*env, *argv))
        own = ["--deepspeed", args.deepspeed] if args.deepspeed else []
        print(
            "#   or through xtui there: "
            + shell("xtui", "train", args.config, "--work-dir", args.work_dir, "--gpus", spec.gpus, *own,
                    "--nnodes", spec.nnodes, "--node-rank", rank, "--master-addr", spec.master_addr,
                    "--master-port", spec.master_port)
        )  # fmt: skip
