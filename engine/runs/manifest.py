"""The manifest xtui keeps in a work dir: every launch, its process and how it ended."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.errors import RunsError
from engine.files import read_head, write_atomic
from engine.runs.folders import MANIFEST

CONSOLE = "xtui-console.log"
MAX_BYTES = 4 << 20  # a manifest of thousands of launches is still far smaller


@dataclass(frozen=True, slots=True)
class Launch:
    """One start or resume of a run, as xtui started it."""

    argv: list[str]
    env: dict[str, str]
    pid: int  # session leader; also the process group id (for a Slurm launch: the sbatch that submitted the job)
    create_time: float  # guards against pid reuse
    started_at: float
    console_offset: int  # where this launch's output starts in the console file
    config: str
    cwd: str
    gpus: int = 1
    deepspeed: str | None = None
    resume_from: str | None = None
    stopped_at: float | None = None
    nnodes: int = 1
    node_rank: int = 0  # this node's part of a torchrun run over `nnodes` nodes
    master_addr: str | None = None
    master_port: int | None = None
    slurm_job: str | None = None  # the job id sbatch gave
    slurm: dict | None = None  # partition, gpus_per_node, time, sbatch_args: what a resume submits again
    config_sha256: str | None = None  # the config's bytes when launched: a later edit of the file is not this run's


@dataclass(frozen=True, slots=True)
class Queued:
    """A launch waiting on this host (engine.runs.queue): its waiter process, where the wait stands, how it ended."""

    pid: int  # the waiter, in a session of its own like a trainer
    create_time: float
    queued_at: float
    reason: str  # where the wait stands, as the waiter last wrote it
    after: str | None = None  # the work dir whose run it waits for
    ended: str | None = None  # why it ended without starting the run
    failed: bool = False  # ended by an error (the launch refused), not by the user or its condition


@dataclass(frozen=True, slots=True)
class Manifest:
    """What xtui knows about a work dir beyond the files XTuner writes."""

    work_dir: str
    host: str
    launches: list[Launch] = field(default_factory=list)
    queue: Queued | None = None  # the queue entry that made the first launch (or is still waiting)

    @property
    def last(self) -> Launch | None:
        """The most recent launch, if any."""
        return self.launches[-1] if self.launches else None


class DamagedManifest(RunsError):
    """A manifest file that is there but is not one xtui wrote (or was damaged since)."""


def _is_number(value: object) -> bool:
    """True for an int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: object) -> bool:
    """True for a non-negative int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_text(value: object) -> bool:
    """True for a str."""
    return isinstance(value, str)


def _is_slurm(value: object) -> bool:
    """True for the Slurm options of a launch: an object whose known keys hold values of their type (others ignored)."""
    checks = {
        "partition": _maybe(_is_text), "gpus_per_node": _is_count, "time": _maybe(_is_text),
        "sbatch_args": lambda v: isinstance(v, list) and all(map(_is_text, v)),
    }  # fmt: skip
    return isinstance(value, dict) and all(check(value[k]) for k, check in checks.items() if k in value)


def _maybe(check):
    """The check, letting None through too."""
    return lambda value: value is None or check(value)


_LAUNCH_FIELDS = {
    "argv": lambda v: isinstance(v, list) and all(map(_is_text, v)),
    "env": lambda v: isinstance(v, dict) and all(_is_text(k) and _is_text(x) for k, x in v.items()),
    "pid": lambda v: _is_count(v) and v > 0,
    "create_time": _is_number,
    "started_at": _is_number,
    "console_offset": _is_count,
    "config": _is_text,
    "cwd": _is_text,
    "gpus": lambda v: _is_count(v) and v > 0,
    "deepspeed": _maybe(_is_text),
    "resume_from": _maybe(_is_text),
    "stopped_at": _maybe(_is_number),
    "nnodes": lambda v: _is_count(v) and v > 0,
    "node_rank": _is_count,
    "master_addr": _maybe(_is_text),
    "master_port": _maybe(_is_count),
    "slurm_job": _maybe(lambda v: _is_text(v) and v.isascii() and v.isdigit()),
    "slurm": _maybe(_is_slurm),
    "config_sha256": _maybe(_is_text),
}
_QUEUE_FIELDS = {
    "pid": lambda v: _is_count(v) and v > 0,
    "create_time": _is_number,
    "queued_at": _is_number,
    "reason": _is_text,
    "after": _maybe(_is_text),
    "ended": _maybe(_is_text),
    "failed": lambda v: isinstance(v, bool),
}
_REQUIRED = {"argv", "env", "pid", "create_time", "started_at", "console_offset", "config", "cwd"}


def _launch(item: object, number: int) -> Launch:
    """One launch record, checked field by field (fields a later xtui added are ignored)."""
    if not isinstance(item, dict):
        raise DamagedManifest(f"{MANIFEST}: launch {number} is not an object")
    missing = sorted(_REQUIRED - item.keys())
    if missing:
        raise DamagedManifest(f"{MANIFEST}: launch {number} lacks {', '.join(missing)}")
    for key, check in _LAUNCH_FIELDS.items():
        if key in item and not check(item[key]):
            raise DamagedManifest(f"{MANIFEST}: launch {number} has a bad {key}: {str(item[key])[:40]!r}")
    return Launch(**{k: item[k] for k in _LAUNCH_FIELDS if k in item})


def _queued(item: object) -> Queued | None:
    """The queue entry, checked field by field (None when there is none)."""
    if item is None:
        return None
    if not isinstance(item, dict) or not {"pid", "create_time", "queued_at", "reason"} <= item.keys():
        raise DamagedManifest(f"{MANIFEST}: queue is not a queue entry")
    for key, check in _QUEUE_FIELDS.items():
        if key in item and not check(item[key]):
            raise DamagedManifest(f"{MANIFEST}: queue has a bad {key}: {str(item[key])[:40]!r}")
    return Queued(**{k: item[k] for k in _QUEUE_FIELDS if k in item})


def node_name(name: str, node: int) -> str:
    """The name of xtui's file `name` for node `node`'s part of a run over several nodes sharing the work dir (node 0
    keeps the plain names): `xtui-run.json` -> `xtui-run.node1.json`."""
    stem, dot, suffix = name.rpartition(".")
    return name if node == 0 else f"{stem}.node{node}{dot}{suffix}" if stem.strip(".") else f"{name}.node{node}"


def read_manifest(work_dir: Path, node: int = 0) -> Manifest | None:
    """The manifest of a work dir (of one node's part), None when there is none; DamagedManifest when it cannot be
    xtui's."""
    try:
        raw = read_head(work_dir / node_name(MANIFEST, node), MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DamagedManifest(f"{MANIFEST} cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_BYTES:
        raise DamagedManifest(f"{MANIFEST} is larger than {MAX_BYTES >> 20} MB: not one xtui wrote")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        raise DamagedManifest(f"{MANIFEST} is not valid JSON") from None
    if not isinstance(data, dict) or not _is_text(data.get("work_dir")) or not _is_text(data.get("host")):
        raise DamagedManifest(f"{MANIFEST} is not an xtui manifest (no work_dir and host)")
    launches = data.get("launches", [])
    if not isinstance(launches, list):
        raise DamagedManifest(f"{MANIFEST}: launches is not a list")
    runs = [_launch(item, n) for n, item in enumerate(launches)]
    return Manifest(data["work_dir"], data["host"], runs, _queued(data.get("queue")))


def write_manifest(work_dir: Path, manifest: Manifest, node: int = 0) -> None:
    """Write the manifest (of one node's part) atomically (temp file + rename) so a reader never sees half."""
    write_atomic(work_dir / node_name(MANIFEST, node), json.dumps(asdict(manifest), indent=2, ensure_ascii=False))
