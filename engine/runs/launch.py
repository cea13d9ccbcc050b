"""Start and stop XTuner training as detached process groups that outlive xtui."""

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

from engine.errors import RunsError
from engine.runs import manifest as mf
from engine.runs.processes import is_alive, stop_group
from engine.runs.workdir import WorkDir, is_run_dir
from engine.xtuner.config_check import config_problems
from engine.xtuner.presets import DEEPSPEED_PRESETS



class LaunchError(RunsError):
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


def validate(spec: LaunchSpec, work_dir: WorkDir) -> None:
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
    if _would_overwrite_config(spec, work_dir):
        dump = spec.work_dir / spec.config.name
        raise LaunchError(f"the trainer would overwrite {dump} with its copy of the config: pick another work dir")
    pid = work_dir.alive_pid() if spec.work_dir.is_dir() else None
    if pid is not None:
        raise LaunchError(f"a run is alive in {spec.work_dir} (pid {pid}): stop it first or pick another work dir")


def _would_overwrite_config(spec: LaunchSpec, work_dir: WorkDir) -> bool:
    """True when mmengine's copy of the config (work_dir/<config name>) would replace a file the user made."""
    dump = spec.work_dir / spec.config.name
    if not dump.exists():
        return False
    if not is_run_dir(spec.work_dir):
        return True  # a file that was there before any run
    manifest = work_dir.manifest
    launched = {Path(launch.config).resolve() for launch in manifest.launches} if manifest else set()
    return dump.resolve() in launched  # xtui ran it as the config: the user's own file


def start(spec: LaunchSpec) -> mf.Launch:
    """Launch the trainer in its own session, output to the work dir's console file."""
    spec = prepare(spec)
    work_dir = WorkDir.open(spec.work_dir)
    validate(spec, work_dir)
    spec.work_dir.mkdir(parents=True, exist_ok=True)
    manifest = work_dir.manifest or mf.Manifest(work_dir=str(spec.work_dir), host=socket.gethostname())
    index = len(manifest.launches)
    argv = command(spec)
    env = environment(spec)
    cwd = spec.cwd
    with open(work_dir.console, "ab") as out:
        offset = out.tell()
        out.write(f"### xtui launch {index} at {time.strftime('%Y/%m/%d %H:%M:%S')}: {' '.join(argv)}\n".encode())
        out.flush()
        wrapper = ["/bin/sh", "-c", '"$@"; echo $? > "$0"', str(work_dir.exit_code_file(index)), *argv]
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
    work_dir.record(replace(manifest, launches=[*manifest.launches, launch]))
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
    opened = WorkDir.open(work_dir)
    last = opened.last
    if last is None:
        raise LaunchError(f"{opened.path} has no run launched by xtui")
    if not is_alive(last.pid, last.create_time):
        raise LaunchError(f"the run in {opened.path} is not running")
    opened.mark_stopped()
    return stop_group(last.pid, grace)
