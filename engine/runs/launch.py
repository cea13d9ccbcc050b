"""Start and stop XTuner training as detached process groups that outlive xtui."""

from __future__ import annotations

import ast
import contextlib
import fcntl
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.errors import RunsError
from engine.files import write_atomic
from engine.runs import manifest as mf
from engine.runs import slurm
from engine.runs.checkpoints import list_checkpoints
from engine.runs.folders import is_run_dir
from engine.runs.processes import is_alive, session_members, stop_session
from engine.runs.workdir import WorkDir, config_digest
from engine.xtuner.config_check import config_problems
from engine.xtuner.doctor import launch_problems
from engine.xtuner.presets import DEEPSPEED_PRESETS

TORCH_PORT = 29500  # torchrun's default rendezvous port, for a run over several nodes given none
LOCK = ".xtui-lock"  # held while a launch checks the work dir and records itself
# Runs the trainer, then writes its exit code (and, when a signal killed it, the host memory) to the file in $0.
EXIT_RECORDER = '"$@"; c=$?; { echo $c; [ $c -gt 128 ] && grep -E "^Mem(Total|Available):" /proc/meminfo; } > "$0"'


class LaunchError(RunsError):
    """A launch, stop or resume that cannot go ahead; the message is one line for the user."""


class WorkDirUsed(LaunchError):
    """A fresh launch into a work dir that already holds a run (resume it, or pick another folder)."""


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """What to run: config, work dir, GPUs per node (torchrun above one), nodes, DeepSpeed, resume, Slurm."""

    config: Path
    work_dir: Path
    gpus: int = 1
    devices: str | None = None  # CUDA_VISIBLE_DEVICES
    deepspeed: str | None = None
    resume_from: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    master_port: int = 0  # torchrun rendezvous; `prepare` picks a free one on one node
    nnodes: int = 1  # torchrun's --nnodes, or the nodes of a Slurm job
    node_rank: int = 0  # which node's part this launch runs (torchrun over several nodes)
    master_addr: str | None = None  # node 0's address (torchrun over several nodes)
    slurm: slurm.SlurmOptions | None = None  # submit with sbatch instead of starting here


def prepare(spec: LaunchSpec) -> LaunchSpec:
    """Absolute paths and a free rendezvous port: the spec whose `command` is exactly what runs."""
    gpus = spec.slurm.tasks_per_node if spec.slurm else spec.gpus
    port = 0 if spec.slurm else spec.master_port or (TORCH_PORT if spec.nnodes > 1 else _free_port() if gpus > 1 else 0)
    return replace(
        spec, config=spec.config.resolve(), work_dir=spec.work_dir.resolve(),
        cwd=(spec.cwd or Path.cwd()).resolve(), master_port=port, gpus=gpus,
    )  # fmt: skip


def command(spec: LaunchSpec) -> list[str]:
    """The exact trainer command line, as it will run (shown to the user before it starts)."""
    args = [str(spec.config), "--work-dir", str(spec.work_dir)]
    if spec.deepspeed:
        args += ["--deepspeed", spec.deepspeed]
    if spec.resume_from:
        args += ["--resume", str(spec.resume_from)]
    if spec.slurm:
        return slurm.srun_command(spec.slurm, [sys.executable, "-m", "xtuner.tools.train", *args])
    if spec.gpus > 1 or spec.nnodes > 1:
        nodes = ["--nnodes", str(spec.nnodes), "--node-rank", str(spec.node_rank), "--master-addr", str(spec.master_addr)]  # fmt: skip
        return [
            sys.executable, "-m", "torch.distributed.run", *(nodes if spec.nnodes > 1 else []),
            "--nproc-per-node", str(spec.gpus), "--master-port", str(spec.master_port),
            "-m", "xtuner.tools.train", *args, "--launcher", "pytorch",
        ]  # fmt: skip
    return [sys.executable, "-m", "xtuner.tools.train", *args]


def node_commands(spec: LaunchSpec) -> list[list[str]]:
    """The command each node of a torchrun run over several nodes runs, node 0 first."""
    return [command(replace(spec, node_rank=rank)) for rank in range(spec.nnodes)]


def slurm_script(spec: LaunchSpec, work_dir: WorkDir) -> str:
    """The sbatch script of the work dir's next launch (a spec with Slurm options, prepared)."""
    assert spec.slurm is not None
    index = len(work_dir.manifest.launches) if work_dir.manifest else 0
    exit_file, cwd = work_dir.exit_code_file(index), spec.cwd or Path.cwd()
    return slurm.script(spec.slurm, spec.nnodes, command(spec), environment(spec), work_dir.console, exit_file, cwd)


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


def check_spec(spec: LaunchSpec) -> None:
    """Refuse what cannot work wherever it runs: a missing or broken config, bad data, a bad GPU or DeepSpeed choice."""
    if not spec.config.is_file():
        raise LaunchError(f"config not found: {spec.config}")
    try:
        ast.parse(spec.config.read_text(encoding="utf-8"), filename=str(spec.config))
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise LaunchError(f"config {spec.config} is not valid Python: {exc}") from None
    except (RecursionError, MemoryError):
        raise LaunchError(f"config {spec.config} nests too deeply to be read") from None
    problems = config_problems(spec.config, spec.cwd or Path.cwd())
    if problems:
        raise LaunchError("; ".join(problems))
    if spec.gpus < 1:
        raise LaunchError("--gpus must be at least 1")
    _check_nodes(spec)
    if spec.deepspeed and spec.deepspeed not in DEEPSPEED_PRESETS and not Path(spec.deepspeed).is_file():
        raise LaunchError(
            f"unknown DeepSpeed config {spec.deepspeed!r}: use one of {', '.join(DEEPSPEED_PRESETS)} or a .json file"
        )
    if spec.work_dir.exists() and not spec.work_dir.is_dir():
        raise LaunchError(f"work dir {spec.work_dir} exists and is not a folder")


def _check_nodes(spec: LaunchSpec) -> None:
    """Refuse a node layout that cannot work: a rank outside the nodes, no address of node 0, Slurm options that cannot."""
    if spec.nnodes < 1 or not 0 <= spec.node_rank < spec.nnodes:
        raise LaunchError(f"--node-rank must be from 0 to {max(spec.nnodes, 1) - 1} (--nnodes {spec.nnodes})")
    if spec.slurm:
        if spec.node_rank or spec.master_addr:
            raise LaunchError("Slurm places the ranks itself: leave out --node-rank and --master-addr with --slurm")
        problems = slurm.problems(spec.slurm, spec.nnodes)
        if problems:
            raise LaunchError("; ".join(problems))
    elif spec.nnodes > 1 and not spec.master_addr:
        raise LaunchError(
            f"--nnodes {spec.nnodes} needs --master-addr: the address of node 0, which every node reaches"
        )


def free_sibling(folder: Path) -> Path:
    """`folder` if nothing is there, else the first of `folder-2`, `folder-3`... that is free."""
    candidate, n = folder, 1
    while candidate.exists():
        n += 1
        candidate = folder.with_name(f"{folder.name}-{n}")
    return candidate


def check_work_dir(spec: LaunchSpec, work_dir: WorkDir) -> None:
    """Refuse a work dir that is busy, holds another run (unless resuming it), or holds files xtui must not replace."""
    if work_dir.damage:
        raise LaunchError(f"{work_dir.damage}: xtui never overwrites that file; pick another work dir")
    if work_dir.node and not spec.slurm:
        _check_node_part(spec, work_dir)
        return
    if _would_overwrite_config(spec, work_dir):
        dump = spec.work_dir / spec.config.name
        raise LaunchError(f"the trainer would overwrite {dump} with its copy of the config: pick another work dir")
    pid = work_dir.alive_pid() if spec.work_dir.is_dir() else None
    if pid is not None and pid not in _other_nodes_processes(work_dir):
        raise LaunchError(f"a run is alive in {spec.work_dir} (pid {pid}): stop it first or pick another work dir")
    queued = waiting(work_dir)
    if queued is not None and queued.pid != os.getpid():  # the waiter itself starts the run it queued
        raise LaunchError(f"{spec.work_dir} holds a queued run ({queued.reason}): cancel it first (xtui stop)")
    job = slurm.job_of(work_dir.last)
    if job is not None and job.active:
        raise LaunchError(f"{job.describe()} holds {spec.work_dir}: stop it first (xtui stop) or pick another work dir")
    if spec.resume_from is None and (work_dir.log_files() or work_dir.last or list_checkpoints(work_dir.path)):
        raise WorkDirUsed(
            f"{spec.work_dir} already holds a run: resume it (xtui resume) or pick a new work dir "
            f"such as {free_sibling(spec.work_dir)}, so that two runs' histories never mix"
        )


def _check_node_part(spec: LaunchSpec, work_dir: WorkDir) -> None:
    """Refuse to start node R's part (R > 0) twice; the run's own files are node 0's to judge (its rank 0 writes them)."""
    pid = work_dir.alive_pid() if work_dir.last else None
    if pid is not None:
        raise LaunchError(
            f"node {work_dir.node}'s part of the run in {spec.work_dir} is alive (pid {pid}): stop it first "
            f"(xtui stop {spec.work_dir} --node-rank {work_dir.node})"
        )


def _other_nodes_processes(work_dir: WorkDir) -> set[int]:
    """Pids of the live parts that other nodes of a run over several nodes started in the work dir from this host."""
    found: set[int] = set()
    for path in work_dir.path.glob("xtui-run.node*.json"):
        node = path.name.removeprefix("xtui-run.node").removesuffix(".json")
        last = WorkDir.open(work_dir.path, int(node)).last if node.isdigit() and int(node) else None
        found.update(session_members(last.pid, last.create_time) if last else ())
    return found


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


def waiting(work_dir: WorkDir) -> mf.Queued | None:
    """The queue entry of a run still waiting to start in the work dir (its waiter alive), None otherwise."""
    manifest = work_dir.manifest
    queued = manifest.queue if manifest and not manifest.launches else None
    return queued if queued and not queued.ended and is_alive(queued.pid, queued.create_time) else None


@contextlib.contextmanager
def locked(folder: Path, node: int = 0) -> Iterator[None]:
    """Hold the work dir's launch lock (of one node's part): one launch (or queue entry) at a time checks the dir and
    records itself."""
    lock = folder / mf.node_name(LOCK, node)
    while True:
        with open(lock, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                if os.fstat(fh.fileno()).st_ino != os.stat(lock).st_ino:
                    continue  # a cancelled queue entry removed the file meanwhile: lock the one there now
            except FileNotFoundError:
                continue
            try:
                yield
                return
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def plan(spec: LaunchSpec) -> LaunchSpec:
    """The prepared spec after every check a launch makes, starting nothing (what --dry-run shows)."""
    spec = prepare(spec)
    check_spec(spec)
    check_work_dir(spec, WorkDir.open(spec.work_dir, spec.node_rank))
    return spec


def start(spec: LaunchSpec) -> mf.Launch:
    """Launch the trainer in its own session (or submit its Slurm job), output to the work dir's console file."""
    spec = prepare(spec)
    check_spec(spec)
    if spec.slurm:
        slurm.require_sbatch()
    elif problems := launch_problems(spec.config, spec.gpus, spec.deepspeed):  # this machine's part (xtui doctor)
        raise LaunchError("; ".join(problems))
    spec.work_dir.mkdir(parents=True, exist_ok=True)
    with locked(spec.work_dir, spec.node_rank):
        work_dir = WorkDir.open(spec.work_dir, spec.node_rank)
        check_work_dir(spec, work_dir)
        return _launch(spec, work_dir)


def _launch(spec: LaunchSpec, work_dir: WorkDir) -> mf.Launch:
    """Start the trainer (or submit its Slurm job) and record the launch in the manifest (the caller holds the lock)."""
    manifest = work_dir.manifest or mf.Manifest(work_dir=str(spec.work_dir), host=socket.gethostname())
    index = len(manifest.launches)
    argv = command(spec)
    env = environment(spec)
    cwd = spec.cwd or Path.cwd()
    with open(work_dir.console, "ab") as out:
        offset = out.tell()
        out.write(f"### xtui launch {index} at {time.strftime('%Y/%m/%d %H:%M:%S')}: {' '.join(argv)}\n".encode())
    if spec.slurm is None:
        job, (pid, created) = None, _spawn(argv, env, cwd, work_dir.console, work_dir.exit_code_file(index))
    else:
        script = slurm.script_path(spec.work_dir, index)
        write_atomic(script, slurm_script(spec, work_dir))
        job, pid, created = slurm.submit(script, cwd)
    launch = mf.Launch(
        argv=argv, env=env, pid=pid, create_time=created, started_at=time.time(),
        console_offset=offset, config=str(spec.config), cwd=str(cwd), gpus=spec.gpus,
        deepspeed=spec.deepspeed, resume_from=str(spec.resume_from) if spec.resume_from else None,
        nnodes=spec.nnodes, node_rank=spec.node_rank, master_addr=spec.master_addr,
        master_port=spec.master_port or None, slurm_job=job, slurm=spec.slurm.record() if spec.slurm else None,
        config_sha256=config_digest(Path(spec.config)),
    )  # fmt: skip
    work_dir.record(replace(manifest, launches=[*manifest.launches, launch]))
    return launch


def _spawn(argv: list[str], env: dict[str, str], cwd: Path, console: Path, exit_file: Path) -> tuple[int, float]:
    """Start the trainer in a session of its own under the exit recorder, output appended to `console`: pid, start time."""
    return detach(["/bin/sh", "-c", EXIT_RECORDER, str(exit_file), *argv], env, cwd, console)


def detach(argv: list[str], env: dict[str, str], cwd: Path, console: Path) -> tuple[int, float]:
    """Start `argv` in a session of its own (it outlives xtui, the UI and SSH), output appended to `console`: pid,
    start time."""
    with open(console, "ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env={**os.environ, **env},
            start_new_session=True,
        )  # fmt: skip
    threading.Thread(target=proc.wait, daemon=True).start()  # reap it if we outlive it
    return proc.pid, _create_time(proc.pid)


def _create_time(pid: int) -> float:
    """The process start time psutil reports (0.0 if it is already gone)."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def stop(work_dir: Path, grace: float = 15.0, node: int = 0) -> bool:
    """Stop the run xtui launched in `work_dir` (node `node`'s part of one over several nodes): TERM its whole session
    (whichever process was signalled before), then KILL, or scancel its Slurm job; True when nothing of it is left."""
    opened = WorkDir.open(work_dir, node)
    last = opened.last
    if opened.damage:
        raise LaunchError(f"cannot stop the run in {opened.path}: {opened.damage}")
    if last is None and opened.manifest and opened.manifest.queue:
        return _cancel_queued(opened.path, grace)
    if last is None:
        raise LaunchError(f"{opened.path} has no run launched by xtui")
    if last.slurm_job:
        return _cancel(opened, last.slurm_job, grace)
    if opened.alive_pid() is None:
        raise LaunchError(f"the run in {opened.path} is not running")
    opened.mark_stopped()
    return stop_session(last.pid, last.create_time, grace)


def _cancel_queued(folder: Path, grace: float) -> bool:
    """Cancel a queued run before it starts: record why, end its waiter and remove the lock; True when nothing of it is
    left (a run its waiter started meanwhile is stopped instead)."""
    with locked(folder):  # the waiter records its run under this lock: it cannot start one while we hold it
        opened = WorkDir.open(folder)
        queued = opened.manifest.queue if opened.manifest else None
        if opened.last is None and queued is not None:
            if queued.ended:
                raise LaunchError(f"the run in {opened.path} is not queued: {queued.ended}")
            ended = replace(queued, ended="cancelled before start", reason="cancelled before start")
            opened.record(replace(opened.manifest, queue=ended))
            gone = stop_session(queued.pid, queued.create_time, grace)
            (folder / LOCK).unlink(missing_ok=True)
            return gone
    return stop(folder, grace)


def _cancel(opened: WorkDir, job_id: str, grace: float) -> bool:
    """Stop a Slurm launch with scancel; True once Slurm says the job ended."""
    job = slurm.job(job_id, max_age=0)
    if job is not None and not job.active:
        raise LaunchError(f"the run in {opened.path} is not running ({job.describe()})")
    opened.mark_stopped()
    return slurm.cancel(job_id, grace)
