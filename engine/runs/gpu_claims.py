"""GPU memory claimed by queued runs as they start: two `--when-free` waiters that see the same memory free do not
both start into it (the first run's trainer takes a minute to load its model before the memory shows as used).

A claim is a small JSON file in one folder for every user of the machine (`engine.locations.gpu_claims_dir`);
a waiter checks the memory and writes its claim while it holds that folder's lock. A claim stands until CLAIM_S
have passed or its trainer (once started) is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.files import read_head, write_atomic
from engine.locations import gpu_claims_dir
from engine.runs.processes import is_alive

MAX_CLAIM_BYTES = 4096  # a claim is ~150 bytes; a bigger file is not one
CLAIM_S = 180.0  # how long a claim stands at most: a trainer loads its model and takes its memory within this


@dataclass(frozen=True, slots=True)
class Claim:
    """Memory a starting run counts on: `need` bytes on each of `gpus`, from `at` (wall clock)."""

    gpus: tuple[int, ...]
    need: int
    at: float
    work_dir: str
    pid: int = 0  # the trainer, once started (0 before)
    create_time: float = 0.0

    def stands(self, now: float) -> bool:
        """Whether the claim still counts: not expired, and its trainer (if started) alive."""
        if now - self.at >= CLAIM_S:
            return False
        return not self.pid or is_alive(self.pid, self.create_time)


def claimed(claims: list[Claim], gpu: int) -> int:
    """Bytes the standing claims hold on `gpu`."""
    return sum(claim.need for claim in claims if gpu in claim.gpus)


@contextlib.contextmanager
def claims_lock() -> Iterator[None]:
    """Hold the claims folder's lock: one waiter at a time checks the memory and claims it."""
    folder = _folder()
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def standing(now: float | None = None) -> list[Claim]:
    """The claims that still count (expired ones are removed when this user may remove them)."""
    now = time.time() if now is None else now
    found = []
    folder = gpu_claims_dir()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            data = json.loads(read_head(path, MAX_CLAIM_BYTES))  # a shared folder: no FIFO, no huge file read
            claim = Claim(**{**data, "gpus": tuple(data["gpus"])})
            stands = claim.stands(now)
        except (OSError, ValueError, TypeError, KeyError):
            continue  # another user's file being written, or not a claim
        if stands:
            found.append(claim)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return found


def record(claim: Claim) -> Path:
    """Write a claim (the caller holds the lock); its file's path, to update once the trainer is known."""
    path = _folder() / f"{os.getpid()}-{int(claim.at * 1000)}.json"
    write_atomic(path, json.dumps(asdict(claim)))
    return path


def started(path: Path, pid: int, create_time: float) -> None:
    """The claim's trainer started: the claim ends early if it dies."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(read_head(path, MAX_CLAIM_BYTES))
        write_atomic(path, json.dumps({**data, "pid": pid, "create_time": create_time}))


def _folder() -> Path:
    """The claims folder, made on first use, writable by every user (sticky: each removes only their own files)."""
    folder = gpu_claims_dir()
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            folder.chmod(0o1777)
    return folder
