"""Resume a run: the pre-flight check that the resume would really continue, then the launch."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from engine.runs import manifest as mf
from engine.runs import slurm
from engine.runs.checkpoints import Checkpoint, check, latest_good
from engine.runs.launch import LaunchError, LaunchSpec, start
from engine.runs.watch import Run
from engine.runs.workdir import WorkDir
from engine.xtuner.compat import TRUST_NOTE, trusted_load_env

_ZERO_SHARD = re.compile(r"zero_pp_rank_(\d+)_mp_rank_(\d+)_optim_states\.pt$")


def in_run(work_dir: Path, path: Path) -> Path:
    """A path the user gave for a run's file: absolute as given; relative in the run, else in the current folder."""
    if path.is_absolute():
        return path
    inside = work_dir / path
    return inside if inside.exists() or not path.exists() else path.resolve()


@dataclass(frozen=True, slots=True)
class Preflight:
    """The verdict on a resume: the checkpoint, blocking problems, and notes for the user."""

    checkpoint: Checkpoint | None
    problems: list[str]
    notes: list[str]
    config: Path | None
    max_iters: int | None

    @property
    def ok(self) -> bool:
        """True when nothing blocks the resume."""
        return not self.problems and self.checkpoint is not None


def zero_world_size(checkpoint: Path) -> int | None:
    """How many ranks saved a DeepSpeed ZeRO checkpoint folder (one optimizer shard each), None when it holds none."""
    try:
        shards = {m.groups() for f in checkpoint.iterdir() if (m := _ZERO_SHARD.search(f.name))}
    except OSError:
        return None
    return len(shards) or None


def _slurm_options(last: mf.Launch | None, gpus: int | None) -> slurm.SlurmOptions | None:
    """The Slurm options a resume submits with: the last launch's, `gpus` per node when given (None: not Slurm)."""
    if last is None or not last.slurm:
        return None
    options = slurm.SlurmOptions.from_record(last.slurm)
    return replace(options, gpus_per_node=gpus) if gpus is not None else options


def _gpus_per_node(last: mf.Launch | None, gpus: int | None) -> int:
    """Processes per node a resume runs: `gpus` when given, else the last launch's."""
    options = _slurm_options(last, gpus)
    return options.tasks_per_node if options else gpus or (last.gpus if last else 1)


def _deepspeed(last: mf.Launch | None, deepspeed: str | None) -> str | None:
    """The DeepSpeed config a resume runs with: `deepspeed` when given, else the last launch's."""
    return deepspeed if deepspeed is not None or last is None else last.deepspeed


def preflight(
    work_dir: Path | WorkDir, checkpoint: Path | None = None, deepspeed: str | None = None, gpus: int | None = None,
) -> Preflight:  # fmt: skip
    """Check that resuming from `checkpoint` (default: latest good one) would really continue.

    A relative `checkpoint` is looked for in the run first, then in the current folder. The resume's ranks are `gpus`
    (default: the last launch's) per node times the last launch's nodes; its DeepSpeed, the last launch's unless given.
    """
    opened = work_dir if isinstance(work_dir, WorkDir) else WorkDir.open(work_dir)
    deepspeed = _deepspeed(opened.last, deepspeed)
    world_size = _gpus_per_node(opened.last, gpus) * (opened.last.nnodes if opened.last else 1)
    work_dir = opened.path
    problems: list[str] = []
    notes: list[str] = []
    run = Run(opened)
    run.poll()
    max_iters = run.state.max_iters
    found = run.checkpoints()
    chosen: Checkpoint | None = None
    if checkpoint is not None:
        path = in_run(work_dir, checkpoint)
        chosen = next((c for c in found if c.path.resolve() == path.resolve()), None)
        if chosen is None:
            problem = check(path)
            problems.append(f"{path}: {problem or 'not an iter_N.pth checkpoint of this run'}")
    else:
        chosen = latest_good(found)
        if chosen is None:
            problems.append("no complete checkpoint to resume from: it would restart from iteration 0")
        skipped = [c for c in (found[found.index(chosen) + 1 :] if chosen else found) if not c.ok]
        notes += [f"skipping {c.path.name}: {c.problem}" for c in skipped]
    if chosen is not None:
        if chosen.problem:
            problems.append(f"{chosen.path.name}: {chosen.problem}")
        if chosen.deepspeed and not deepspeed:
            problems.append(f"{chosen.path.name} is a DeepSpeed checkpoint: resume with --deepspeed")
        if not chosen.deepspeed and deepspeed:
            problems.append(f"{chosen.path.name} is a plain checkpoint: resume without --deepspeed")
        if max_iters is not None and chosen.iter is not None and chosen.iter >= max_iters:
            problems.append(
                f"{chosen.path.name} is at iteration {chosen.iter} of {max_iters}: the run would end at once"
            )
        if max_iters is None:
            notes.append("max iterations unknown (no log yet): cannot tell how far the resume goes")
        saved = zero_world_size(chosen.path) if chosen.deepspeed else None
        if saved and saved != world_size:
            problems.append(
                f"{chosen.path.name} holds DeepSpeed ZeRO optimizer shards of {saved} ranks and the resume would run "
                f"{world_size}: DeepSpeed cannot load them; resume on {saved} ranks (GPUs x nodes), as it was saved"
            )
    if run.alive_pid() is not None:
        problems.append(f"a run is alive in {work_dir}: stop it first")
    job = run.slurm_job()
    if job is not None and job.active:
        problems.append(f"{job.describe()}: stop it first (xtui stop)")
    config = opened.config()
    if config is None:
        problems.append(f"no config found for {work_dir}")
    if trusted_load_env():
        notes.append(
            "torch >= 2.6 loads checkpoints weights-only, which mmengine's resume cannot pass: "
            f"xtui sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, and {TRUST_NOTE}"
        )
    return Preflight(chosen, problems, notes, config, max_iters)


def resume(
    work_dir: Path, checkpoint: Path | None = None, gpus: int | None = None,
    deepspeed: str | None = None, devices: str | None = None,
) -> tuple[mf.Launch, Preflight]:  # fmt: skip
    """Resume after a passing pre-flight; GPUs, nodes, DeepSpeed and Slurm default to the last launch's.

    A Slurm launch is submitted again, with the options it was submitted with (`gpus` sets its GPUs per node).
    """
    opened = WorkDir.open(work_dir)
    last = opened.last
    deepspeed = _deepspeed(last, deepspeed)
    check_ = preflight(opened, checkpoint, deepspeed, gpus)
    if not check_.ok:
        raise LaunchError("cannot resume: " + "; ".join(check_.problems))
    assert check_.checkpoint is not None and check_.config is not None
    spec = LaunchSpec(
        config=check_.config, work_dir=opened.path, gpus=_gpus_per_node(last, gpus),
        devices=devices if devices is not None else (last.env.get("CUDA_VISIBLE_DEVICES") if last else None),
        deepspeed=deepspeed, resume_from=check_.checkpoint.path, env=trusted_load_env(),
        cwd=Path(last.cwd) if last else None, slurm=_slurm_options(last, gpus),
        nnodes=last.nnodes if last else 1, node_rank=last.node_rank if last else 0,
        master_addr=last.master_addr if last else None, master_port=(last.master_port or 0) if last else 0,
    )  # fmt: skip
    return start(spec), check_
