"""Resume a run: the pre-flight check that the resume would really continue, then the launch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.runs import manifest as mf
from engine.runs.checkpoints import Checkpoint, check, latest_good
from engine.runs.launch import LaunchError, LaunchSpec, start
from engine.runs.watch import Run
from engine.runs.workdir import WorkDir
from engine.xtuner.compat import trusted_load_env


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


def preflight(
    work_dir: Path | WorkDir, checkpoint: Path | None = None, deepspeed: str | None = None
) -> Preflight:  # fmt: skip
    """Check that resuming from `checkpoint` (default: latest good one) would really continue.

    A relative `checkpoint` is looked for in the run first, then in the current folder.
    """
    opened = work_dir if isinstance(work_dir, WorkDir) else WorkDir.open(work_dir)
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
        skipped = [c for c in found if not c.ok and (chosen is None or c.iter > chosen.iter)]
        notes += [f"skipping {c.path.name}: {c.problem}" for c in skipped]
    if chosen is not None:
        if chosen.problem:
            problems.append(f"{chosen.path.name}: {chosen.problem}")
        if chosen.deepspeed and not deepspeed:
            problems.append(f"{chosen.path.name} is a DeepSpeed checkpoint: resume with --deepspeed")
        if not chosen.deepspeed and deepspeed:
            problems.append(f"{chosen.path.name} is a plain checkpoint: resume without --deepspeed")
        if max_iters is not None and chosen.iter >= max_iters:
            problems.append(f"{chosen.path.name} is at iteration {chosen.iter} of {max_iters}: the run would end at once")
        if max_iters is None:
            notes.append("max iterations unknown (no log yet): cannot tell how far the resume goes")
    if run.alive_pid() is not None:
        problems.append(f"a run is alive in {work_dir}: stop it first")
    config = opened.config()
    if config is None:
        problems.append(f"no config found for {work_dir}")
    if trusted_load_env():
        notes.append(
            "torch >= 2.6 loads checkpoints weights-only, which mmengine's resume cannot pass: "
            "xtui sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, which unpickles the checkpoint: "
            "resume only checkpoints you trust (your own runs)"
        )
    return Preflight(chosen, problems, notes, config, max_iters)


def resume(
    work_dir: Path, checkpoint: Path | None = None, gpus: int | None = None,
    deepspeed: str | None = None, devices: str | None = None,
) -> tuple[mf.Launch, Preflight]:  # fmt: skip
    """Resume after a passing pre-flight; the GPU and DeepSpeed choice default to the last launch's."""
    opened = WorkDir.open(work_dir)
    last = opened.last
    if deepspeed is None and last is not None:
        deepspeed = last.deepspeed
    check_ = preflight(opened, checkpoint, deepspeed)
    if not check_.ok:
        raise LaunchError("cannot resume: " + "; ".join(check_.problems))
    assert check_.checkpoint is not None and check_.config is not None
    env = trusted_load_env()
    spec = LaunchSpec(
        config=check_.config, work_dir=opened.path, gpus=gpus or (last.gpus if last else 1),
        devices=devices if devices is not None else (last.env.get("CUDA_VISIBLE_DEVICES") if last else None),
        deepspeed=deepspeed, resume_from=check_.checkpoint.path, env=env,
        cwd=Path(last.cwd) if last else None,
    )  # fmt: skip
    return start(spec), check_
