"""A run is an XTuner work dir: discovery, incremental watching, and its status."""

from __future__ import annotations

import functools
import math
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from engine.runs import manifest as mf
from engine.runs import ranks, slurm
from engine.runs.checkpoints import Checkpoint, last_checkpoint, latest_good, list_checkpoints
from engine.runs.events import (
    CheckpointSaved,
    Event,
    Resumed,
    RunError,
    Sample,
    Started,
    TrainStep,
    TrainSteps,
    Validation,
    spread_steps,
)
from engine.runs.logparse.columns import BIT, StepColumns
from engine.runs.logs import LogFollower
from engine.runs.processes import is_alive
from engine.runs.workdir import ExitRecord, WorkDir, manifest_stamp
from engine.xtuner.doctor import with_remedy

STALL_FACTOR = 10  # stalled after this many usual iteration times without progress
STALL_MIN_S = 30.0  # ...and never sooner (a checkpoint save or an evaluation of a fast run takes a few seconds)


@functools.lru_cache(maxsize=256)  # the stall check reads the last 50 steps' stamps every poll
def _stamp(at: str | None) -> float | None:
    """Seconds since the epoch of a work-dir log timestamp (`%Y/%m/%d %H:%M:%S`)."""
    if not at:
        return None
    try:
        return datetime.strptime(at, "%Y/%m/%d %H:%M:%S").timestamp()
    except ValueError:
        return None


@dataclass(slots=True)
class RunState:
    """Everything read so far from one run's files; the train steps are columns (StepColumns), not objects."""

    steps: StepColumns = field(default_factory=StepColumns)  # a Sequence of TrainStep
    samples: list[Sample] = field(default_factory=list)  # every sample read, in log order (branches left too)
    resumes: list[tuple[int, int]] = field(default_factory=list)  # (samples read before it, iteration resumed from)
    saved: list[int] = field(default_factory=list)
    saved_epochs: dict[int, int] = field(default_factory=dict)  # epoch -> the global iteration it was saved at
    validations: list[Validation] = field(default_factory=list)
    errors: list[RunError] = field(default_factory=list)  # since the last start
    starts: int = 0
    resumed_iter: int | None = None
    first_iter: int | None = None  # first logged iteration of the current start
    max_iters: int | None = None
    start_step: int = 0  # index in `steps` of the current start's first step
    nonfinite_since: int | None = None  # iteration from which the loss has been NaN or infinite
    last: TrainStep | None = None  # the newest train step

    @property
    def done_iter(self) -> int:
        """The newest iteration known to have run on the current branch: logged, or saved (the final one is often not
        logged); a resume from an older checkpoint leaves the abandoned branch's later steps and saves behind."""
        if len(self.steps) > self.start_step:
            logged = self.steps.iters[-1]
        else:
            logged = self.resumed_iter if self.resumed_iter is not None else (self.last.iter if self.last else 0)
        return max([logged, *self.saved])

    def branch_samples(self) -> list[Sample]:
        """The samples of the current branch: a resume from an older checkpoint leaves behind those made past it."""
        if not self.resumes:
            return self.samples
        return [
            sample
            for i, sample in enumerate(self.samples)
            if not any(i < before and sample.iter > resumed for before, resumed in self.resumes)
        ]

    @property
    def reached_max(self) -> bool:
        """True once the last iteration ran."""
        return bool(self.max_iters) and self.done_iter >= self.max_iters

    def apply(self, event: Event) -> None:
        """Fold one event into the state."""
        if isinstance(event, TrainStep):
            self._took(event)
            self.steps.append(event)
        elif isinstance(event, TrainSteps):
            first = len(self.steps)
            self.steps.extend(event.columns, event.start, event.stop)
            if len(self.steps) > first:
                self._took_rows(first)
        elif isinstance(event, Sample):
            self.samples.append(event)
        elif isinstance(event, CheckpointSaved):
            self.saved.append(event.iter)
            if event.epoch is not None:
                self.saved_epochs[event.epoch] = event.iter
        elif isinstance(event, Validation):
            self.validations.append(event)
        elif isinstance(event, Started):
            self.starts += 1
            self.errors.clear()
            self.resumed_iter = self.first_iter = None
            self.start_step = len(self.steps)
        elif isinstance(event, Resumed):
            self.resumed_iter = event.iter
            self.saved = [it for it in self.saved if it <= event.iter]  # saves past it belong to the abandoned branch
            self.resumes.append((len(self.samples), event.iter))
        elif isinstance(event, RunError):
            self.errors.append(event)

    def _took(self, step: TrainStep) -> None:
        """Note one more train step (its loss, its max_iters)."""
        if self.first_iter is None:
            self.first_iter = step.iter
        if step.loss is not None and not math.isfinite(step.loss):
            self.nonfinite_since = step.iter if self.nonfinite_since is None else self.nonfinite_since
        elif step.loss is not None:
            self.nonfinite_since = None
        if step.max_iters:
            self.max_iters = step.max_iters
        self.last = step

    def _took_rows(self, first: int) -> None:
        """Note the train steps from row `first` on, as `_took` would one by one (read from the newest back)."""
        steps = self.steps
        if self.first_iter is None:
            self.first_iter = steps.iters[first]
        present, losses, totals, iters = steps.present, steps.floats["loss"], steps.ints["max_iters"], steps.iters
        loss_bit, total_bit = BIT["loss"], BIT["max_iters"]
        since, later = self.nonfinite_since, None  # later: the earliest NaN loss after the newest finite one
        for k in range(len(steps) - 1, first - 1, -1):
            if present[k] & loss_bit:
                if math.isfinite(losses[k]):
                    since = later
                    break
                later = iters[k]
        else:
            since = later if since is None else since
        self.nonfinite_since = since
        for k in range(len(steps) - 1, first - 1, -1):
            if present[k] & total_bit and totals[k]:
                self.max_iters = totals[k]
                break
        self.last = steps[-1]

    def curve(self, name: str) -> tuple:
        """(iterations, values) of field `name` as numpy arrays, in iteration order: a step at or before a
        newer one logged earlier starts a new branch (a resume from an older checkpoint), the old one's go."""
        return self.steps.curve(name)

    def first_failure(self) -> str:
        """The error that failed the current start, with its rank (what follows it on other ranks are consequences)."""
        first = self.errors[0]
        message = with_remedy(first.message, first.detail)  # a known environment cause says what to do
        return f"rank {first.rank}: {message}" if first.rank is not None else message

    def usual_step_seconds(self) -> float | None:
        """Median wall time between logged iterations of the current start."""
        steps = self.steps
        stamps = [_stamp(steps.at_text(i)) for i in range(max(self.start_step, len(steps) - 50), len(steps))]
        gaps = [b - a for a, b in zip(stamps, stamps[1:]) if a is not None and b is not None and b >= a]
        return statistics.median(gaps) if gaps else None


class RunStatus(StrEnum):
    """Where a run stands; the value is the word shown and printed."""

    UNKNOWN = "unknown"  # not read yet
    QUEUED = "queued"  # waiting to start: a Slurm job for its nodes, xtui's queue for another run or free GPUs
    DAMAGED = "damaged"  # xtui's own file in the work dir cannot be read
    RUNNING = "running"
    STALLED = "stalled"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Status:
    """Where a run stands, why (for stalled, failed and stopped) and the live trainer's pid."""

    state: RunStatus
    cause: str | None = None
    pid: int | None = None


class Run:
    """One work dir, read incrementally: call `poll()` for new events."""

    def __init__(self, work_dir: Path | WorkDir, columns: bool = False) -> None:
        self.dir = work_dir if isinstance(work_dir, WorkDir) else WorkDir.open(work_dir)
        self.columns = columns  # poll gives train steps in TrainSteps batches (else one TrainStep each)
        self.work_dir = self.dir.path
        self.state = RunState()
        self._followers: dict[Path, LogFollower] = {}
        self._console: LogFollower | None = None
        self._console_launch = -1
        self._flushed = False
        self._checkpoints: list[Checkpoint] = []

    @property
    def manifest(self) -> mf.Manifest | None:
        """The xtui manifest, None for a run started by plain `xtuner train` (re-read only when it changed)."""
        return self.fresh_dir().manifest

    def fresh_dir(self) -> WorkDir:
        """The work dir, opened again when its manifest changed since it was last read."""
        if manifest_stamp(self.work_dir, self.dir.node) != self.dir.stamp:
            self.dir = WorkDir.open(self.work_dir, self.dir.node)
        return self.dir

    def poll(self) -> list[Event]:
        """Read only what was appended since the last poll and return the new events."""
        return self._read(lambda: self.alive_pid() or _active(self.slurm_job()))

    def poll_status(self, now: float | None = None) -> tuple[list[Event], Status]:
        """`poll()` then `status()`, with one liveness check for both (a watcher's cycle)."""
        pid, job = self.alive_pid(), self.slurm_job()
        return self._read(lambda: pid or _active(job)), self._status(pid, now, job)

    def _read(self, alive_pid: Callable[[], int | None]) -> list[Event]:
        """New events; once the trainer is gone (asked only then), the followers' unfinished text too."""
        events: list[Event] = []
        for path in self.dir.log_files():
            follower = self._followers.get(path)
            if follower is None:
                follower = self._followers[path] = LogFollower(path, columns=True)
                events.append(Started(log=str(path.relative_to(self.work_dir))))
            events.extend(follower.poll())
        events.extend(self._console_errors())
        if not self._flushed and not alive_pid():
            self._flushed = True
            for follower in self._followers.values():
                events.extend(follower.flush())
            if self._console:
                events.extend(e for e in self._console.flush() if isinstance(e, RunError))
        for event in events:
            self.state.apply(event)
        return events if self.columns else spread_steps(events)

    def poll_live(self) -> tuple[list[Event], bool]:
        """New events and whether the run may still write more (its trainer lives, or its Slurm job is queued)."""
        live = self.alive_pid() is not None or _active(self.slurm_job())
        return self._read(lambda: live), live

    def follow(self, interval: float = 1.0) -> Iterator[Event]:
        """Yield events as they come, until the trainer is gone and everything is read."""
        while True:
            events, live = self.poll_live()
            yield from events
            if not live:
                return
            time.sleep(interval)

    def _console_errors(self) -> list[Event]:
        """Errors from the console file of xtui's last launch (tracebacks go to stderr only)."""
        manifest = self.manifest
        if manifest is None or manifest.last is None:
            return []
        index = len(manifest.launches) - 1
        if index != self._console_launch:
            self._console_launch = index
            self._console = LogFollower(self.dir.console, offset=manifest.last.console_offset, columns=True)
            self._flushed = False
        assert self._console is not None
        return [e for e in self._console.poll() if isinstance(e, RunError)]

    def alive_pid(self) -> int | None:
        """Pid of the live trainer (xtui's launch or a plain `xtuner train` on this dir)."""
        return self.fresh_dir().alive_pid()

    def slurm_job(self) -> slurm.SlurmJob | None:
        """The Slurm job of xtui's last launch as Slurm reports it (None: not a Slurm launch, or Slurm does not answer)."""
        return slurm.job_of(self.fresh_dir().last)

    def checkpoints(self) -> list[Checkpoint]:
        """Checkpoints on disk, checked (one unchanged in size since the last call is not read again)."""
        self._checkpoints = list_checkpoints(self.work_dir, self._checkpoints, epoch_iters=self.state.saved_epochs)
        return self._checkpoints

    def _restarted_instead_of_resuming(self) -> str | None:
        """Why xtui's resume launch trains from the start again (mmengine did not load the checkpoint)."""
        manifest = self.manifest
        last = manifest.last if manifest else None
        if last is None or not last.resume_from or self.state.resumed_iter is not None:
            return None
        if self.state.first_iter is None or self.state.starts < len(manifest.launches):
            return None  # this launch has not logged an iteration (or its log folder) yet
        return f"resume did not load {Path(last.resume_from).name}: training restarted at iteration {self.state.first_iter}"

    def summary(self) -> dict:
        """Where the run stands as a JSON-ready dict (after a poll): status, progress, loss, checkpoints."""
        status = self.status()
        last = self.state.last
        checkpoints = self.checkpoints()
        resume_from = latest_good(checkpoints)
        return {
            "work_dir": str(self.work_dir),
            "status": status.state,
            "cause": status.cause,
            "pid": status.pid,
            "iter": self.state.done_iter if last or self.state.saved else None,
            "max_iters": self.state.max_iters,
            "epoch": last.epoch if last else None,
            "loss": last.loss if last else None,
            **_placement(self.dir.last),
            "checkpoints": [c.to_json() for c in checkpoints],
            "resume_from": resume_from.path.name if resume_from else None,
            "last_checkpoint_problem": last_checkpoint(self.work_dir)[1],
        }

    def status(self, now: float | None = None) -> Status:
        """Running, stalled, finished, failed (with cause) or stopped."""
        return self._status(self.alive_pid(), now, self.slurm_job())

    def _status(self, pid: int | None, now: float | None, job: slurm.SlurmJob | None = None) -> Status:
        """The status, given the live trainer's pid (None when there is none) and the launch's Slurm job."""
        now = time.time() if now is None else now
        state = self.state
        if self.dir.damage:
            return Status(RunStatus.DAMAGED, self.dir.damage, pid)
        if self.dir.manifest and self.dir.manifest.queue and not self.dir.manifest.launches:
            return _queue_status(self.dir.manifest.queue)
        restarted = self._restarted_instead_of_resuming()
        if restarted:
            return Status(RunStatus.FAILED, restarted, pid)
        nonfinite = None
        if state.nonfinite_since is not None and state.last is not None:
            nonfinite = f"loss is {state.last.loss} since iteration {state.nonfinite_since}"
        if job is not None and job.pending and not state.errors:
            return Status(RunStatus.QUEUED, job.describe())
        if pid is not None or _active(job):
            if state.errors:
                return Status(RunStatus.FAILED, state.first_failure(), pid)
            lost = ranks.lost_ranks(self.dir.last, now) if pid is not None else None
            if lost:
                return Status(RunStatus.FAILED, lost, pid)
            usual = state.usual_step_seconds()
            last = _stamp(state.last.at) if len(state.steps) > state.start_step else None
            if usual is not None and last is not None:
                limit = max(STALL_FACTOR * usual, STALL_MIN_S)
                if now - last > limit:
                    cause = f"no new iteration for {now - last:.0f} s (usual {usual:.1f} s)"
                    return Status(RunStatus.STALLED, "; ".join([cause, *ranks.hang_details(self.dir)]), pid)
            return Status(RunStatus.RUNNING, nonfinite or (job.describe() if job else None), pid)
        if state.errors:
            return Status(RunStatus.FAILED, state.first_failure())
        if nonfinite:
            return Status(RunStatus.FAILED, f"{nonfinite}: the weights it saved are not usable")
        if state.reached_max:
            return Status(RunStatus.FINISHED)
        manifest = self.manifest
        if manifest and manifest.last:
            if manifest.last.stopped_at:
                return Status(RunStatus.STOPPED, "stopped by the user")
            if job is not None and job.state != "COMPLETED":
                cause = slurm.ended_cause(job, self.dir.console, manifest.last.console_offset)
                return Status(RunStatus.STOPPED if job.cancelled else RunStatus.FAILED, cause)
            ended = self.dir.exit_record(len(manifest.launches) - 1)
            if ended is not None and ended.code != 0:
                return Status(RunStatus.FAILED, _exit_cause(ended))
            at = f"iteration {state.last.iter}" if state.last else "before the first iteration"
            if ended is None:
                return Status(
                    RunStatus.FAILED, f"trainer gone at {at}, and its launcher was killed before it could say how"
                )
            return Status(RunStatus.FAILED, f"trainer ended at {at} without reaching max iterations")
        return Status(RunStatus.STOPPED, "not running and max iterations not reached")


def _queue_status(queued: mf.Queued) -> Status:
    """A run that has not started yet: queued (why), or how its wait ended (engine.runs.queue)."""
    if queued.ended:
        return Status(RunStatus.FAILED if queued.failed else RunStatus.STOPPED, queued.ended)
    if is_alive(queued.pid, queued.create_time):
        return Status(RunStatus.QUEUED, queued.reason, queued.pid)
    return Status(RunStatus.STOPPED, f"its queue's waiter (pid {queued.pid}) is gone: the run never started")


def _active(job: slurm.SlurmJob | None) -> bool:
    """True while a Slurm job is queued or running."""
    return job is not None and job.active


def _placement(launch: mf.Launch | None) -> dict:
    """Where the last launch runs: its node of several, its Slurm job."""
    node = f"{launch.node_rank}/{launch.nnodes}" if launch and launch.nnodes > 1 and not launch.slurm_job else None
    return {"node": node, "slurm_job": launch.slurm_job if launch else None}


def _exit_cause(ended: ExitRecord) -> str:
    """Why the trainer ended, in words: the exit code, or the signal (and the host memory then, for SIGKILL)."""
    sig = ended.killed_by
    if sig is None:
        return f"trainer exited with code {ended.code}"
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    if sig != signal.SIGKILL:
        return f"trainer killed by {name} (exit code {ended.code})"
    memory = ""
    if ended.memory_total and ended.memory_available is not None:
        memory = (
            f"; host memory then: {ended.memory_available / 2**30:.1f} of {ended.memory_total / 2**30:.1f} GiB free"
        )
    return f"killed (SIGKILL: out of host memory?), exit code {ended.code}{memory}"
