"""Start, stop and resume XTuner training as detached process groups that outlive xtui."""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.runs import manifest as mf
from engine.xtuner.compat import trusted_load_env
from engine.xtuner.config_check import config_problems
from engine.runs.checkpoints import Checkpoint, check, latest_good, list_checkpoints
from engine.runs.processes import is_alive, stop_group
from engine.runs.watch import Run, is_run_dir

DEEPSPEED_PRESETS = (
    "deepspeed_zero1",
    "deepspeed_zero2",
    "deepspeed_zero2_offload",
    "deepspeed_zero3",
    "deepspeed_zero3_offload",
)


class LaunchError(Exception):
    """A launch, stop or resume that cannot go ahead; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """What to run: config, work dir, how many GPUs (torchrun above one), DeepSpeed, resume."""

    config: Path
    work_dir: Path
    gpus: int = 1
    devices: str | None = None  # CUDA_VISIBLE_DEVICES
    deepspeed: str | None = None
    resume_from: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    master_port: int = 0  # torchrun rendezvous; `prepare` picks a free one


def prepare(spec: LaunchSpec) -> LaunchSpec:
    """Absolute paths and a free rendezvous port: the spec whose `command` is exactly what runs."""
    port = spec.master_port or (_free_port() if spec.gpus > 1 else 0)
    return replace(
        spec, config=spec.config.resolve(), work_dir=spec.work_dir.resolve(),
        cwd=(spec.cwd or Path.cwd()).resolve(), master_port=port,
    )  # fmt: skip


def command(spec: LaunchSpec) -> list[str]:
    """The exact trainer command line, as it will run (shown to the user before it starts)."""
    args = [str(spec.config), "--work-dir", str(spec.work_dir)]
    if spec.deepspeed:
        args += ["--deepspeed", spec.deepspeed]
    if spec.resume_from:
        args += ["--resume", str(spec.resume_from)]
    if spec.gpus > 1:
        return [
            sys.executable, "-m", "torch.distributed.run",
            "--nproc-per-node", str(spec.gpus), "--master-port", str(spec.master_port),
            "-m", "xtuner.tools.train", *args, "--launcher", "pytorch",
        ]  # fmt: skip
    return [sys.executable, "-m", "xtuner.tools.train", *args]


def environment(spec: LaunchSpec) -> dict[str, str]:
    """Environment overrides for the trainer (recorded in the manifest)."""
    env = {"PYTHONUNBUFFERED": "1", **spec.env}
    if spec.devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = spec.devices
    return env


def _free_port() -> int:
    """A TCP port nobody listens on, for torchrun's rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def validate(spec: LaunchSpec) -> None:
    """Refuse what cannot work: missing or broken config, busy work dir, bad GPU or DeepSpeed choice."""
    if not spec.config.is_file():
        raise LaunchError(f"config not found: {spec.config}")
    try:
        ast.parse(spec.config.read_text(encoding="utf-8"), filename=str(spec.config))
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise LaunchError(f"config {spec.config} is not valid Python: {exc}") from None
    problems = config_problems(spec.config, spec.cwd or Path.cwd())
    if problems:
        raise LaunchError("; ".join(problems))
    if spec.gpus < 1:
        raise LaunchError("--gpus must be at least 1")
    if spec.deepspeed and spec.deepspeed not in DEEPSPEED_PRESETS and not Path(spec.deepspeed).is_file():
        raise LaunchError(f"unknown DeepSpeed config {spec.deepspeed!r}: use one of {', '.join(DEEPSPEED_PRESETS)} or a .json file")
    if spec.work_dir.exists() and not spec.work_dir.is_dir():
        raise LaunchError(f"work dir {spec.work_dir} exists and is not a folder")
    if _would_overwrite_config(spec):
        dump = spec.work_dir / spec.config.name
        raise LaunchError(f"the trainer would overwrite {dump} with its copy of the config: pick another work dir")
    pid = Run(spec.work_dir).alive_pid() if spec.work_dir.is_dir() else None
    if pid is not None:
        raise LaunchError(f"a run is alive in {spec.work_dir} (pid {pid}): stop it first or pick another work dir")


def _would_overwrite_config(spec: LaunchSpec) -> bool:
    """True when mmengine's copy of the config (work_dir/<config name>) would replace a file the user made."""
    dump = spec.work_dir / spec.config.name
    if not dump.exists():
        return False
    if not is_run_dir(spec.work_dir):
        return True  # a file that was there before any run
    manifest = mf.read_manifest(spec.work_dir)
    launched = {Path(launch.config).resolve() for launch in manifest.launches} if manifest else set()
    return dump.resolve() in launched  # xtui ran it as the config: the user's own file


def start(spec: LaunchSpec) -> mf.Launch:
    """Launch the trainer in its own session, output to the work dir's console file."""
    spec = prepare(spec)
    validate(spec)
    spec.work_dir.mkdir(parents=True, exist_ok=True)
    old = mf.read_manifest(spec.work_dir)
    manifest = old or mf.Manifest(work_dir=str(spec.work_dir), host=socket.gethostname())
    index = len(manifest.launches)
    argv = command(spec)
    env = environment(spec)
    cwd = spec.cwd
    console = spec.work_dir / mf.CONSOLE
    with open(console, "ab") as out:
        offset = out.tell()
        out.write(f"### xtui launch {index} at {time.strftime('%Y/%m/%d %H:%M:%S')}: {' '.join(argv)}\n".encode())
        out.flush()
        wrapper = ["/bin/sh", "-c", '"$@"; echo $? > "$0"', str(mf.exit_code_file(spec.work_dir, index)), *argv]
        proc = subprocess.Popen(
            wrapper, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            cwd=cwd, env={**os.environ, **env}, start_new_session=True,
        )  # fmt: skip
    threading.Thread(target=proc.wait, daemon=True).start()  # reap it if we outlive it
    launch = mf.Launch(
        argv=argv, env=env, pid=proc.pid, create_time=_create_time(proc.pid), started_at=time.time(),
        console_offset=offset, config=str(spec.config), cwd=str(cwd), gpus=spec.gpus,
        deepspeed=spec.deepspeed, resume_from=str(spec.resume_from) if spec.resume_from else None,
    )  # fmt: skip
    mf.write_manifest(spec.work_dir, replace(manifest, launches=[*manifest.launches, launch]))
    return launch


def _create_time(pid: int) -> float:
    """The process start time psutil reports (0.0 if it is already gone)."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def stop(work_dir: Path, grace: float = 15.0) -> bool:
    """Stop the run xtui launched in `work_dir`: TERM its process group, then KILL; True when gone."""
    work_dir = work_dir.resolve()
    manifest = mf.read_manifest(work_dir)
    if manifest is None or manifest.last is None:
        raise LaunchError(f"{work_dir} has no run launched by xtui")
    last = manifest.last
    if not is_alive(last.pid, last.create_time):
        raise LaunchError(f"the run in {work_dir} is not running")
    mf.mark_stopped(work_dir, time.time())
    return stop_group(last.pid, grace)


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


def run_config(work_dir: Path) -> Path | None:
    """The config a resume runs: xtui's last launch's, else the copy mmengine dumped in the work dir."""
    manifest = mf.read_manifest(work_dir)
    if manifest and manifest.last and Path(manifest.last.config).is_file():
        return Path(manifest.last.config)
    dumped = sorted(work_dir.glob("*.py"))
    return dumped[0] if dumped else None


def preflight(work_dir: Path, checkpoint: Path | None = None, deepspeed: str | None = None) -> Preflight:
    """Check that resuming from `checkpoint` (default: latest good one) would really continue."""
    work_dir = work_dir.resolve()
    problems: list[str] = []
    notes: list[str] = []
    run = Run(work_dir)
    run.poll()
    max_iters = run.state.max_iters
    found = list_checkpoints(work_dir)
    chosen: Checkpoint | None = None
    if checkpoint is not None:
        path = checkpoint if checkpoint.is_absolute() or checkpoint.exists() else work_dir / checkpoint
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
    config = run_config(work_dir)
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
    work_dir = work_dir.resolve()
    last = (mf.read_manifest(work_dir) or mf.Manifest("", "")).last
    if deepspeed is None and last is not None:
        deepspeed = last.deepspeed
    check_ = preflight(work_dir, checkpoint, deepspeed)
    if not check_.ok:
        raise LaunchError("cannot resume: " + "; ".join(check_.problems))
    assert check_.checkpoint is not None and check_.config is not None
    env = trusted_load_env()
    spec = LaunchSpec(
        config=check_.config, work_dir=work_dir, gpus=gpus or (last.gpus if last else 1),
        devices=devices if devices is not None else (last.env.get("CUDA_VISIBLE_DEVICES") if last else None),
        deepspeed=deepspeed, resume_from=check_.checkpoint.path, env=env,
        cwd=Path(last.cwd) if last else None,
    )  # fmt: skip
    return start(spec), check_
