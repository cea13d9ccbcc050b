"""Slurm: a launch's sbatch script, submitting it, the job's state as squeue or sacct report it, and scancel."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from engine.errors import RunsError
from engine.files import open_regular
from engine.runs import manifest as mf

PENDING = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"})
ENDED = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
    "DEADLINE", "REVOKED", "SPECIAL_EXIT",
})  # fmt: skip
WHY = {
    "TIMEOUT": "it reached its --time limit",
    "OUT_OF_MEMORY": "Slurm killed it for using more memory than the job asked for",
    "NODE_FAIL": "a node of the job failed",
    "PREEMPTED": "a job of higher priority took its nodes",
    "CANCELLED": "scancel (not xtui's stop)",
}
OWN_OPTIONS = ("-o", "--output", "-e", "--error")  # xtui sends the job's output to the work dir's console file
QUERY_TIMEOUT_S = 10.0
CACHE_S = 2.0  # a watcher polls each run about once a second: ask Slurm less often
KILL_WAIT_S = 30.0  # Slurm's default KillWait: between its TERM and its KILL of a cancelled job


# slurmstepd's words when its accounting (JobAcctGatherParams=OverMemoryKill) or a cgroup ends a step for its memory
_MEMORY_KILL = re.compile(rb"exceeded memory limit \((\d+) > (\d+)\)|Detected \d+ oom[-_]kill event")
TAIL_BYTES = 64 << 10


class SlurmError(RunsError):
    """sbatch or scancel refused, or is not installed; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class SlurmOptions:
    """Where the job runs and for how long: partition, GPUs per node (0: one CPU task), time limit, more sbatch args."""

    partition: str | None = None
    gpus_per_node: int = 1
    time: str | None = None
    sbatch_args: tuple[str, ...] = ()

    @property
    def tasks_per_node(self) -> int:
        """Processes per node: one per GPU, one on a CPU job."""
        return max(self.gpus_per_node, 1)

    def record(self) -> dict:
        """The options as the manifest keeps them."""
        return {
            "partition": self.partition,
            "gpus_per_node": self.gpus_per_node,
            "time": self.time,
            "sbatch_args": list(self.sbatch_args),
        }

    @classmethod
    def from_record(cls, data: dict) -> SlurmOptions:
        """The options a manifest recorded (keys a later xtui added are ignored)."""
        return cls(
            data.get("partition"), data.get("gpus_per_node", 1), data.get("time"), tuple(data.get("sbatch_args", ()))
        )


def problems(options: SlurmOptions, nodes: int) -> list[str]:
    """Why a job with these options cannot run xtui's way (empty when it can)."""
    found = []
    if options.gpus_per_node < 0:
        found.append("--gpus-per-node must be 0 or more")
    if options.gpus_per_node == 0 and nodes > 1:
        found.append("--gpus-per-node 0 runs one CPU task on one node: mmengine's slurm launcher needs a GPU per task")
    for arg in (options.partition, options.time, *options.sbatch_args):
        if arg is not None and ("\n" in arg or "\r" in arg):
            found.append(f"a Slurm option holds a line break: {arg!r}")
    for arg in options.sbatch_args:
        if arg.split("=", 1)[0] in OWN_OPTIONS or (arg[:2] in OWN_OPTIONS and not arg.startswith("--")):
            found.append(
                f"--sbatch-arg {arg}: xtui sends the job's output to the work dir's console file, where it reads errors"
            )
    return found


def script_path(work_dir: Path, index: int) -> Path:
    """Where the sbatch script of launch `index` is written."""
    return work_dir / f"xtui-slurm-{index}.sh"


def srun_command(options: SlurmOptions, trainer: list[str]) -> list[str]:
    """The trainer under srun, with `--launcher slurm` as XTuner documents (left out for a CPU job: see `problems`)."""
    launcher = ["--launcher", "slurm"] if options.gpus_per_node else []  # mmengine's slurm launcher sets a CUDA device
    return ["srun", "--kill-on-bad-exit=1", *trainer, *launcher]


def script(
    options: SlurmOptions, nodes: int, srun: list[str], env: dict[str, str], console: Path, exit_file: Path, cwd: Path
) -> str:
    """The sbatch script: the job's size and output file, the environment, srun, then the exit code into `exit_file`."""
    directives = [
        f"--job-name=xtui-{console.parent.name}", f"--output={console}", "--open-mode=append", f"--chdir={cwd}",
        f"--nodes={nodes}", f"--ntasks-per-node={options.tasks_per_node}",
    ]  # fmt: skip
    directives += [f"--gres=gpu:{options.gpus_per_node}"] if options.gpus_per_node else []
    directives += [f"--partition={options.partition}"] if options.partition else []
    directives += [f"--time={options.time}"] if options.time else []
    lines = ["#!/bin/bash", *(f"#SBATCH {shlex.quote(d)}" for d in [*directives, *options.sbatch_args])]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    if nodes * options.tasks_per_node > 1:  # one rendezvous port per job, so that two jobs on a node never collide
        lines.append("export MASTER_PORT=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}")
    lines += [shlex.join(srun), "code=$?", f"echo $code > {shlex.quote(str(exit_file))}", "exit $code"]
    return "\n".join(lines) + "\n"


def require_sbatch() -> None:
    """Refuse, before anything is written, to submit from a host without Slurm's client commands."""
    if shutil.which("sbatch") is None:
        raise SlurmError(
            "sbatch not found: --slurm needs Slurm's client commands (sbatch, squeue, scancel) on this host"
        )


def submit(path: Path, cwd: Path) -> tuple[str, int, float]:
    """Submit the script with sbatch: the job id, and the pid and start time of the sbatch that did it."""
    import psutil

    proc = subprocess.Popen(
        ["sbatch", "--parsable", str(path)], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        created = psutil.Process(proc.pid).create_time()  # readable until it is reaped, even once it has exited
    except psutil.Error:
        created = time.time()
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise SlurmError("sbatch did not answer within 60 s: is slurmctld up?") from None
    job = out.strip().split(";")[0]
    if proc.returncode != 0 or not job.isdigit():
        raise SlurmError(f"sbatch refused the job: {_first_line(err or out)}")
    return job, proc.pid, created


@dataclass(frozen=True, slots=True)
class SlurmJob:
    """A Slurm job as squeue or sacct reports it: its state word, the reason Slurm gives, the nodes it got."""

    id: str
    state: str
    reason: str | None = None
    nodes: str | None = None

    @property
    def pending(self) -> bool:
        """True while it waits in the queue (or for its nodes to boot)."""
        return self.state in PENDING

    @property
    def active(self) -> bool:
        """True while it is queued, running, suspended or finishing."""
        return self.state not in ENDED

    @property
    def cancelled(self) -> bool:
        """True when scancel ended it."""
        return self.state == "CANCELLED"

    def describe(self) -> str:
        """The job in words: pending (why), running (where), or how it ended and what that means."""
        if self.pending:
            return f"Slurm job {self.id} {self.state.lower()}" + (f" ({self.reason})" if self.reason else "")
        where = f" on {self.nodes}" if self.nodes else ""
        if self.active:
            return f"Slurm job {self.id} {self.state.lower()}{where}"
        why = WHY.get(self.state) or self.reason
        return f"Slurm job {self.id} {self.state}{where}" + (f": {why}" if why else "")


def ended_cause(job: SlurmJob, console: Path, offset: int) -> str:
    """How an ended job ended, in words; a step that slurmstepd killed for its memory is named so whatever state the job
    took (accounting's kill leaves it FAILED), read from the end of the launch's output."""
    if job.state not in ("FAILED", "OUT_OF_MEMORY"):
        return job.describe()
    try:
        with open_regular(console) as fh:
            fh.seek(max(offset, fh.seek(0, 2) - TAIL_BYTES))
            found = list(_MEMORY_KILL.finditer(fh.read(TAIL_BYTES)))
    except OSError:
        found = []
    if not found:
        return job.describe()
    used = found[-1]
    detail = f" (used {int(used[1]) >> 20} MiB of {int(used[2]) >> 20} MiB)" if used[1] else ""
    return SlurmJob(job.id, "OUT_OF_MEMORY", job.reason, job.nodes).describe() + detail


_jobs: dict[str, tuple[float, SlurmJob | None]] = {}


def job(job_id: str, max_age: float = CACHE_S) -> SlurmJob | None:
    """The job as squeue reports it, else sacct (once squeue has forgotten it); None when neither answers."""
    seen = _jobs.get(job_id)
    if seen is not None and time.monotonic() - seen[0] < max_age:
        return seen[1]
    found = _squeue(job_id) or _sacct(job_id)
    _jobs[job_id] = (time.monotonic(), found)
    return found


def job_of(launch: mf.Launch | None) -> SlurmJob | None:
    """The Slurm job of a launch as Slurm reports it now (None for a launch that did not go through Slurm)."""
    return job(launch.slurm_job) if launch is not None and launch.slurm_job else None


def _query(argv: list[str]) -> list[str]:
    """The output lines of a Slurm query, [] when it fails, is missing or does not answer in time."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def _squeue(job_id: str) -> SlurmJob | None:
    """The job from squeue, which knows it until MinJobAge after it ends."""
    lines = _query(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T|%r|%N"])
    return _job(job_id, lines[0].split("|")) if lines else None


def _sacct(job_id: str) -> SlurmJob | None:
    """The job from the accounting database, where there is one."""
    lines = _query(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,Reason,NodeList"])
    return _job(job_id, lines[0].split("|")) if lines else None


def _job(job_id: str, fields: list[str]) -> SlurmJob | None:
    """A SlurmJob from state, reason and nodes as Slurm prints them ("CANCELLED by 0" is CANCELLED)."""
    state, reason, nodes = (_known(f) for f in fields[:3]) if len(fields) >= 3 else (None, None, None)
    return SlurmJob(job_id, state.split()[0].rstrip("+"), reason, nodes) if state else None


def _known(text: str) -> str | None:
    """A field Slurm printed, None for its words for nothing."""
    text = text.strip()
    return None if text in ("", "None", "(null)", "None assigned") else text


def cancel(job_id: str, grace: float) -> bool:
    """scancel the job (Slurm sends TERM, then KILL after its KillWait); True once Slurm says it has ended."""
    try:
        done = subprocess.run(["scancel", job_id], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SlurmError(
            "scancel not found: stopping a Slurm launch needs Slurm's client commands on this host"
        ) from None
    except subprocess.TimeoutExpired:
        raise SlurmError("scancel did not answer within 60 s: is slurmctld up?") from None
    if done.returncode != 0:
        raise SlurmError(f"scancel refused: {_first_line(done.stderr or done.stdout)}")
    deadline = time.monotonic() + grace + KILL_WAIT_S
    while time.monotonic() < deadline:
        now = job(job_id, max_age=0)
        if now is None or not now.active:
            return True
        time.sleep(0.5)
    return False


def _first_line(text: str) -> str:
    """The first non-empty line of a command's message."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "no message")
