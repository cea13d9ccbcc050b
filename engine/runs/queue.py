"""A queue on a shared box: a launch that waits, detached like a run, until another run ends or its GPUs have the
memory it needs free, then starts as any launch does."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from engine.errors import XtuiError
from engine.gpu import GpuBackend, GpuReading, NvmlBackend
from engine.runs import gpu_claims, launch
from engine.runs import manifest as mf
from engine.runs.folders import is_run_dir
from engine.runs.launch import LaunchError, LaunchSpec, check_spec, check_work_dir, locked, prepare, waiting
from engine.runs.watch import Run, RunStatus
from engine.runs.workdir import WorkDir
from engine.xtuner.doctor import launch_problems

POLL_S = 2.0  # how often the waiter looks again
FREE_FOR_S = 10.0  # the memory must stay free this long (another run between two steps frees it for a moment)
ACTIVE = frozenset({RunStatus.UNKNOWN, RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.STALLED})
GIB = 1 << 30


@dataclass(frozen=True, slots=True)
class Wait:
    """What a queued launch waits for: another run's end (only a finish, if asked), and free memory on its GPUs."""

    after: Path | None = None
    only_if_finished: bool = False
    when_free: bool = False  # wait until each chosen GPU has the memory the run needs free
    need_gib: float | None = None  # that memory, per GPU


@dataclass(frozen=True, slots=True)
class Verdict:
    """Where a wait stands: go (start now), or not, in words; `end` set when the run must never start."""

    go: bool
    reason: str
    end: str | None = None


def shown(path: Path, cwd: Path) -> str:
    """A work dir as the user knows it: relative to the folder they queued from, when it lies under it."""
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)


class AfterRun:
    """Waits for another run to end, read from its work dir as `xtui status` reads it."""

    def __init__(self, path: Path, only_if_finished: bool, name: str) -> None:
        self.run, self.only_if_finished, self.name = Run(path), only_if_finished, name
        self.ended: Verdict | None = None  # once it ended, it stays ended (a later resume there is another run)

    def check(self) -> Verdict:
        """Go once the run ended (finished, when asked); the end of the queued one when it did not finish."""
        if self.ended:
            return self.ended
        _, status = self.run.poll_status()
        if status.state in ACTIVE:
            state = self.run.state
            progress = f", iter {state.done_iter}/{state.max_iters or '?'}" if state.last or state.saved else ""
            return Verdict(False, f"after {self.name} ({status.state}{progress})")
        why = f"{self.name} {status.state}" + (f" ({status.cause})" if status.cause else "")
        if self.only_if_finished and status.state != RunStatus.FINISHED:
            self.ended = Verdict(False, why, end=f"not started: {why}")
        else:
            self.ended = Verdict(True, why)
        return self.ended


class FreeMemory:
    """Waits until each chosen GPU has `need` bytes free, less what starting runs claimed, and has kept them free for
    `hold` seconds; then claims them (engine.runs.gpu_claims), so that another waiter does not start into them too."""

    def __init__(self, gpus: list[int], need: int, backend: GpuBackend, hold: float = FREE_FOR_S) -> None:
        self.gpus, self.need, self.backend, self.hold = gpus, need, backend, hold
        self.free_since: float | None = None

    def check(self, now: float | None = None) -> Verdict:
        """Go when the memory has been free long enough; else how much is free on the GPUs that lack it."""
        now = time.monotonic() if now is None else now
        free, error, claims = self._free()
        lacking = [i for i in self.gpus if free.get(i) is None or free[i] - gpu_claims.claimed(claims, i) < self.need]
        if not lacking:
            self.free_since = now if self.free_since is None else self.free_since
            if now - self.free_since >= self.hold:
                return Verdict(True, f"{_gib(self.need)} GiB free on {_gpus(self.gpus)}")
            return Verdict(False, f"{_gib(self.need)} GiB free on {_gpus(self.gpus)}: holding {self.hold:.0f} s")
        self.free_since = None
        have = ", ".join(
            f"{'' if len(self.gpus) == 1 else f'GPU {i}: '}{_have(free.get(i), gpu_claims.claimed(claims, i))}"
            for i in lacking
        )
        return Verdict(False, f"waiting for {_gib(self.need)} GiB free on {_gpus(self.gpus)} ({error or have})")

    def claim(self, work_dir: Path) -> Path | None:
        """Claim the memory if it is still free, less others' claims (checked and written under the claims' lock);
        the claim's file, or None when another run claimed it first (the hold starts over)."""
        with gpu_claims.claims_lock():
            free, _error, claims = self._free()
            if all(free.get(i) is not None and free[i] - gpu_claims.claimed(claims, i) >= self.need for i in self.gpus):
                return gpu_claims.record(gpu_claims.Claim(tuple(self.gpus), self.need, time.time(), str(work_dir)))
        self.free_since = None
        return None

    def _free(self) -> tuple[dict[int, int | None], str | None, list[gpu_claims.Claim]]:
        """(free bytes by GPU, the reading's error, the claims standing) now."""
        readings, error = self.backend.read(with_processes=False)
        return {gpu.index: _free(gpu) for gpu in readings}, error, gpu_claims.standing()


def _have(free: int | None, claimed: int) -> str:
    """What a GPU has: `12 GiB free`, with what starting runs claimed of it."""
    if free is None:
        return "no reading"
    return f"{_gib(free)} GiB free" + (f", {_gib(claimed)} GiB of it claimed by a run starting" if claimed else "")


def _free(gpu: GpuReading | None) -> int | None:
    """A GPU's free memory in bytes, None when the driver did not say."""
    if gpu is None or gpu.memory_total is None or gpu.memory_used is None:
        return None
    return gpu.memory_total - gpu.memory_used


def _gib(size: float) -> str:
    """Bytes in GiB, to a tenth."""
    return f"{size / GIB:.1f}".removesuffix(".0")


def _gpus(indexes: list[int]) -> str:
    """`GPU 0`, or `each of GPUs 0,1`."""
    return f"GPU {indexes[0]}" if len(indexes) == 1 else f"each of GPUs {','.join(map(str, indexes))}"


def chosen_gpus(spec: LaunchSpec) -> list[int]:
    """The GPUs the run will use, as NVML numbers them: its CUDA_VISIBLE_DEVICES, else the first `gpus`."""
    if spec.devices is None:
        return list(range(spec.gpus))
    try:
        return [int(part) for part in spec.devices.split(",") if part.strip()]
    except ValueError:
        raise LaunchError(f"--when-free needs GPU numbers in --devices, not {spec.devices!r}") from None


def needed_gib(spec: LaunchSpec, wait: Wait) -> float:
    """The memory each GPU must have free: the user's --need-gib, else the estimate read off the config."""
    from engine.errors import XtunerError
    from engine.xtuner.memory_estimate import estimate_config

    if wait.need_gib is not None:
        if wait.need_gib <= 0:
            raise LaunchError("--need-gib must be more than 0")
        return wait.need_gib
    try:
        found = estimate_config(spec.config, spec.cwd or Path.cwd(), spec.deepspeed, spec.gpus * spec.nnodes)
    except (XtunerError, OSError, UnicodeDecodeError) as exc:
        raise LaunchError(f"--when-free needs --need-gib N (GPU memory per GPU, GiB): no estimate ({exc})") from None
    return round(found.needed / GIB, 1)


def conditions(spec: LaunchSpec, wait: Wait, backend: GpuBackend | None = None) -> list:
    """The checks of the wait, in order: the run to follow first, then the memory."""
    found: list = []
    if wait.after is not None:
        found.append(AfterRun(wait.after, wait.only_if_finished, shown(wait.after, spec.cwd or Path.cwd())))
    if wait.when_free:
        found.append(FreeMemory(chosen_gpus(spec), int(needed_gib(spec, wait) * GIB), backend or NvmlBackend()))
    return found


def check_wait(spec: LaunchSpec, wait: Wait, backend: GpuBackend | None = None) -> None:
    """Refuse a wait that could never end: no run to follow there, itself or a run waiting for it, GPUs not here."""
    if wait.only_if_finished and wait.after is None:
        raise LaunchError("--only-if-finished goes with --after DIR")
    if wait.need_gib is not None and not wait.when_free:
        raise LaunchError("--need-gib goes with --when-free")
    if wait.after is None and not wait.when_free:
        raise LaunchError("a queued launch waits for something: --after DIR, --when-free, or both")
    if spec.slurm:
        raise LaunchError(
            "Slurm queues jobs itself: instead of --after or --when-free, "
            "--sbatch-arg=--dependency=afterany:JOB (afterok: only if it finished)"
        )
    if spec.node_rank:
        raise LaunchError("queue node 0's part: the other nodes' parts wait for it at torchrun's rendezvous")
    if wait.after is not None:
        _check_after(spec.work_dir.resolve(), wait.after)
    if wait.when_free:
        need = needed_gib(spec, wait)
        readings, error = (backend or NvmlBackend()).read(with_processes=False)
        if error:
            raise LaunchError(f"--when-free reads the GPUs' free memory, and there are no readings here: {error}")
        totals = {gpu.index: gpu.memory_total for gpu in readings}
        for index in chosen_gpus(spec):
            if index not in totals:
                raise LaunchError(f"--when-free: there is no GPU {index} here ({len(totals)} GPUs)")
            if totals[index] is not None and totals[index] < need * GIB:
                given = "--need-gib" if wait.need_gib is not None else "its estimate"
                raise LaunchError(
                    f"the run needs {need:g} GiB on each GPU ({given}), and GPU {index} holds only "
                    f"{_gib(totals[index])} GiB in all"
                )


def _check_after(work_dir: Path, after: Path) -> None:
    """Refuse to follow a folder that holds no run, the queued run itself, or a chain of waits that leads back to it."""
    seen, current = {work_dir}, after.resolve()
    if not is_run_dir(current):
        raise LaunchError(f"--after {after}: no run there (no xtui manifest, no XTuner log)")
    while current is not None:
        if current in seen:
            raise LaunchError(f"--after {after}: that run waits, itself or through others, for {work_dir}")
        seen.add(current)
        queued = waiting(WorkDir.open(current))
        current = Path(queued.after) if queued and queued.after else None


def enqueue(spec: LaunchSpec, wait: Wait, backend: GpuBackend | None = None) -> mf.Queued:
    """Check the launch as `start` would, record it as queued in its work dir and start its detached waiter."""
    spec = replace(prepare(spec), master_port=spec.master_port)  # the rendezvous port is picked when it starts
    wait = replace(wait, after=wait.after.resolve() if wait.after else None)
    check_spec(spec)
    check_wait(spec, wait, backend)
    wait = replace(wait, need_gib=needed_gib(spec, wait)) if wait.when_free else wait  # estimated once, here
    if problems := launch_problems(spec.config, spec.gpus, spec.deepspeed):
        raise LaunchError("; ".join(problems))
    spec.work_dir.mkdir(parents=True, exist_ok=True)
    with locked(spec.work_dir):
        work_dir = WorkDir.open(spec.work_dir)
        check_work_dir(spec, work_dir)
        first = next((v for v in (c.check() for c in conditions(spec, wait, backend)) if not v.go), None)
        if first is not None and first.end:
            raise LaunchError(f"--only-if-finished: {first.reason}, so the run would never start")
        reason = first.reason if first else "starting"
        with open(work_dir.console, "ab") as out:
            out.write(
                f"### xtui queued at {time.strftime('%Y/%m/%d %H:%M:%S')}: {' '.join(launch.command(spec))}\n".encode()
            )
        payload = json.dumps({"spec": _spec_record(spec), "wait": _wait_record(wait)})
        pid, created = launch.detach(
            [sys.executable, "-m", "engine.runs.queue", payload], {}, spec.cwd, work_dir.console
        )
        manifest = work_dir.manifest or mf.Manifest(work_dir=str(spec.work_dir), host=socket.gethostname())
        queued = mf.Queued(pid, created, time.time(), reason, str(wait.after) if wait.after else None)
        work_dir.record(replace(manifest, queue=queued))
    return queued


def _spec_record(spec: LaunchSpec) -> dict:
    """The spec as the waiter gets it (JSON)."""
    return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(spec).items()}


def _wait_record(wait: Wait) -> dict:
    """The wait as the waiter gets it (JSON)."""
    return {**asdict(wait), "after": str(wait.after) if wait.after else None}


def _note(folder: Path, **changes) -> bool:
    """Write where the wait stands into the queue entry; False when the entry is no longer this waiter's to write."""
    with locked(folder):
        work_dir = WorkDir.open(folder)
        queued = work_dir.manifest.queue if work_dir.manifest and not work_dir.manifest.launches else None
        if queued is None or queued.pid != os.getpid() or queued.ended:
            return False
        if any(getattr(queued, key) != value for key, value in changes.items()):
            work_dir.record(replace(work_dir.manifest, queue=replace(queued, **changes)))
        return True


def wait_and_start(spec: LaunchSpec, wait: Wait, poll: float = POLL_S, backend: GpuBackend | None = None) -> None:
    """The waiter: look at its conditions until they hold, then start the run as any launch; or record why it never
    will (the run it followed did not finish, the launch was refused)."""
    checks = conditions(spec, wait, backend)
    memory = next((check for check in checks if isinstance(check, FreeMemory)), None)
    claim = None
    while True:
        verdicts = [check.check() for check in checks]
        end = next((v.end for v in verdicts if v.end), None)
        if end:
            _end(spec.work_dir, end, failed=False)
            return
        holding = next((v for v in verdicts if not v.go), None)
        if holding is None:
            if memory is None or (claim := memory.claim(spec.work_dir)) is not None:
                break
            holding = Verdict(False, "another run claimed that memory first: waiting again")
        if not _note(spec.work_dir, reason=holding.reason):
            return  # the entry was cancelled or replaced
        time.sleep(poll)
    why = "; ".join(v.reason for v in verdicts)
    if not _note(spec.work_dir, reason=f"starting: {why}"):
        _drop(claim)
        return
    print(f"### xtui queue: starting at {time.strftime('%Y/%m/%d %H:%M:%S')} ({why})", flush=True)
    try:
        started = launch.start(spec)
    except XtuiError as exc:
        _drop(claim)
        _end(spec.work_dir, f"not started: {exc}", failed=True)
        return
    if claim is not None:
        gpu_claims.started(claim, started.pid, started.create_time)


def _drop(claim: Path | None) -> None:
    """Give up a memory claim (the run will not start)."""
    if claim is not None:
        claim.unlink(missing_ok=True)


def _end(folder: Path, why: str, failed: bool) -> None:
    """Record that the queued run will never start, and why (also at the end of the console)."""
    if _note(folder, reason=why, ended=why, failed=failed):
        print(f"### xtui queue ended at {time.strftime('%Y/%m/%d %H:%M:%S')}: {why}", flush=True)


def main(payload: str) -> None:
    """The detached waiter's entry point: the spec and the wait as `enqueue` wrote them."""
    data = json.loads(payload)
    paths = {"config", "work_dir", "cwd", "resume_from"}
    spec = LaunchSpec(**{k: Path(v) if k in paths and v is not None else v for k, v in data["spec"].items()})
    wait = Wait(**{**data["wait"], "after": Path(data["wait"]["after"]) if data["wait"]["after"] else None})
    wait_and_start(spec, wait)


if __name__ == "__main__":
    main(sys.argv[1])
