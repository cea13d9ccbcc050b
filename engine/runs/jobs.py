"""Jobs after training (convert, merge, export): detached processes that outlive xtui, each recorded in a folder of
the run's work dir (its record, its log, its exit code) and read back like a run: running, finished, stopped or failed."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from engine.errors import RunsError
from engine.files import open_regular, read_head, write_atomic
from engine.runs.processes import is_alive, stop_session

JOBS_DIR = "xtui-jobs"  # in a work dir: one folder per job
RECORD = "job.json"
LOG = "job.log"  # the job's stdout and stderr
EXIT = "exit"  # its exit code, written by the wrapper when the process ends
STOPPED = "stopped"  # written when the user stopped it
TAIL_BYTES = 16 * 1024
ERROR_PREFIX = "xtui: error: "  # how the CLI says what went wrong
_PERCENT = re.compile(r"(\d{1,3})%\|")  # a tqdm bar's "45%|"


class JobKind(StrEnum):
    """What a job does; the value is the word shown."""

    CONVERT = "convert"
    MERGE = "merge"
    EXPORT = "export"


class JobState(StrEnum):
    """How a job stands; the value is the word shown."""

    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"  # by the user (s in the jobs screen)
    FAILED = "failed"


class JobError(RunsError):
    """A job that cannot be started or stopped as asked."""


@dataclass(frozen=True, slots=True)
class Job:
    """One job: what it runs, what it writes (`out`), the base an adapter merges onto, the run's template, its
    process, its folder."""

    kind: JobKind
    label: str
    argv: list[str]
    out: str
    base: str | None
    template: str | None
    pid: int
    create_time: float
    started: float
    folder: Path

    @property
    def log(self) -> Path:
        """The job's output file."""
        return self.folder / LOG

    @property
    def output(self) -> Path:
        """The folder the job writes."""
        return Path(self.out)

    def status(self) -> JobStatus:
        """How it stands now, read from its folder and the process table."""
        code = _exit_code(self.folder / EXIT)
        lines = tail_lines(self.log)
        if code is None and is_alive(self.pid, self.create_time):
            return JobStatus(JobState.RUNNING, None, lines[-1] if lines else "starting…", _percent(lines))
        if code == 0:
            return JobStatus(JobState.FINISHED, 0, lines[-1] if lines else "done")
        if (self.folder / STOPPED).exists():
            return JobStatus(JobState.STOPPED, code, "stopped before it finished")
        errors = [line for line in lines if line.startswith(ERROR_PREFIX)]
        said = errors[-1][len(ERROR_PREFIX) :] if errors else lines[-1] if lines else "ended without output"
        if code is None:
            said = f"ended without an exit code (killed?): {said}"
        return JobStatus(JobState.FAILED, code, said)


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A job's state, its exit code once it ended, its last words (the cause, when it failed), its progress (0-1)."""

    state: JobState
    exit_code: int | None
    message: str
    progress: float | None = None


def _exit_code(path: Path) -> int | None:
    """The exit code the wrapper wrote, None while there is none (or it is garbage)."""
    try:
        return int(read_head(path, 64).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _percent(lines: list[str]) -> float | None:
    """The progress the newest progress bar in `lines` shows, as a fraction."""
    for line in reversed(lines):
        found = _PERCENT.search(line)
        if found:
            return min(int(found.group(1)), 100) / 100
    return None


def tail_lines(path: Path, limit: int = TAIL_BYTES) -> list[str]:
    """The non-empty lines of the last `limit` bytes of a log ([] when it cannot be read); a bar's \\r updates count."""
    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - limit))
            raw = fh.read(limit)
    except OSError:
        return []
    lines = re.split(r"[\r\n]+", raw.decode("utf-8", "replace"))
    if size > limit:
        lines = lines[1:]  # cut mid-line
    return [line.strip() for line in lines if line.strip()]


def jobs_dir(work_dir: Path) -> Path:
    """Where a work dir's jobs are recorded."""
    return Path(work_dir) / JOBS_DIR


def read_job(folder: Path) -> Job | None:
    """The job recorded in `folder`; None when it has no readable record (still starting, or damaged)."""
    try:
        raw = json.loads(read_head(folder / RECORD, 1 << 20))
        return Job(**{**raw, "kind": JobKind(raw["kind"]), "folder": folder})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def list_jobs(work_dir: Path) -> list[Job]:
    """The jobs of a work dir, newest first."""
    try:
        folders = [p for p in jobs_dir(work_dir).iterdir() if p.is_dir()]
    except OSError:
        return []
    found = [job for job in map(read_job, folders) if job is not None]
    return sorted(found, key=lambda job: job.started, reverse=True)


def running_into(work_dir: Path, out: Path) -> Job | None:
    """The running job of `work_dir` that writes `out`, if there is one."""
    target = Path(out).resolve()
    return next(
        (j for j in list_jobs(work_dir) if j.output.resolve() == target and j.status().state is JobState.RUNNING),
        None,
    )


def start(
    work_dir: Path, kind: JobKind, argv: list[str], out: Path, label: str, base: Path | None = None,
    template: str | None = None,
) -> Job:  # fmt: skip
    """Start `argv` detached (a session of its own) as a job of `work_dir` writing `out`; its output goes to its log."""
    from engine.runs.launch import _spawn  # the trainer's own starter: exit code recorder, new session

    out = Path(out).resolve()
    busy = running_into(work_dir, out)
    if busy is not None:
        raise JobError(f"{busy.label} is already writing {out}: wait for it, or stop it in the jobs list")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parent = jobs_dir(work_dir)
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        folder = parent / f"{stamp}-{kind}-{n}"
        try:
            folder.mkdir()
            break
        except FileExistsError:
            continue
    else:
        raise JobError(f"no free job folder in {parent}")
    env = {"PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "1"}
    pid, created = _spawn(argv, env, Path(work_dir), folder / LOG, folder / EXIT)
    job = Job(
        kind, label, list(argv), str(out), str(base) if base else None, template, pid, created, time.time(), folder
    )
    record = {k: v for k, v in asdict(job).items() if k != "folder"}
    write_atomic(folder / RECORD, json.dumps(record, ensure_ascii=False, indent=1))
    return job


def stop(job: Job, grace: float = 5.0) -> bool:
    """Stop a running job (its whole session); True when nothing of it is left."""
    if job.status().state is not JobState.RUNNING:
        raise JobError(f"{job.label} is not running")
    write_atomic(job.folder / STOPPED, str(time.time()))
    return stop_session(job.pid, job.create_time, grace)
