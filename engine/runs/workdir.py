"""A work dir: where each file of a run lives, and its manifest read once per operation."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path

from engine.files import read_head
from engine.runs import manifest as mf
from engine.runs.folders import log_files

CONFIG_BYTES = 16 << 20  # far above any config; what is past it is not hashed


def manifest_stamp(path: Path, node: int = 0) -> tuple[int, int, int] | None:
    """What changes whenever the manifest is rewritten (written by rename: a new inode each time), None when absent."""
    try:
        st = (path / mf.node_name(mf.MANIFEST, node)).stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def config_digest(path: Path) -> str | None:
    """The sha256 of a config file's bytes, None when it cannot be read."""
    try:
        return hashlib.sha256(read_head(path, CONFIG_BYTES)).hexdigest()
    except OSError:
        return None


def _unchanged_since(config: Path, launch: mf.Launch) -> bool:
    """Whether the config file is as it was at the launch: its hash when the launch recorded one (xtui before
    2026-12-01 did not), else not modified since the launch started."""
    if launch.config_sha256 is not None:
        return config_digest(config) == launch.config_sha256
    try:
        return config.stat().st_mtime <= launch.started_at
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class ExitRecord:
    """How a launch's trainer ended: its exit code and, when a signal killed it, the host memory then."""

    code: int
    memory_total: int | None = None  # bytes
    memory_available: int | None = None

    @property
    def killed_by(self) -> int | None:
        """The signal that ended the trainer (the shell reports 128 + N), None for a plain exit."""
        return self.code - 128 if self.code > 128 else None


@dataclass(frozen=True, slots=True)
class WorkDir:
    """One run's folder: where its files are, and its manifest as it was when opened (None: not launched by xtui).

    Each node of a run over several nodes that share the folder keeps xtui's files of its own part (node 0: the plain
    names); the trainer's files are the run's, written by its rank 0."""

    path: Path
    manifest: mf.Manifest | None = None
    stamp: tuple[int, int, int] | None = None
    damage: str | None = None  # why the manifest file there cannot be xtui's
    node: int = 0

    @classmethod
    def open(cls, path: Path, node: int = 0) -> WorkDir:
        """The work dir at `path` (made absolute) with its manifest (of node `node`'s part) read now."""
        path = path.resolve()
        stamp = manifest_stamp(path, node)
        try:
            return cls(path, mf.read_manifest(path, node) if stamp else None, stamp, node=node)
        except mf.DamagedManifest as exc:
            return cls(path, None, stamp, str(exc), node)

    @property
    def last(self) -> mf.Launch | None:
        """xtui's most recent launch in this dir, if any."""
        return self.manifest.last if self.manifest else None

    @property
    def console(self) -> Path:
        """The file the trainer's stdout and stderr go to, every launch appended."""
        return self.path / mf.node_name(mf.CONSOLE, self.node)

    def exit_code_file(self, launch_index: int) -> Path:
        """Where the launch's wrapper writes the trainer's exit code."""
        return self.path / mf.node_name(f".xtui-exit-{launch_index}", self.node)

    def exit_record(self, launch_index: int) -> ExitRecord | None:
        """How the launch's trainer ended, as its wrapper wrote it; None when it never wrote (or wrote garbage)."""
        try:
            lines = read_head(self.exit_code_file(launch_index), 4096).decode("ascii", "replace").splitlines()
            code = int(lines[0])
        except (OSError, ValueError, IndexError):
            return None
        memory = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        kib = {key.strip(): value.split()[0] for key, value in memory.items() if value.split()}
        try:
            total, available = int(kib["MemTotal"]) << 10, int(kib["MemAvailable"]) << 10
        except (KeyError, ValueError):
            total = available = None
        return ExitRecord(code, total, available)

    def log_files(self) -> list[Path]:
        """The mmengine log of every start of the run, oldest first."""
        return log_files(self.path)

    def config(self) -> Path | None:
        """The config a resume or a conversion runs: xtui's last launch's as it was then (the file while unchanged,
        else the copy mmengine dumped here when that launch started), else any copy mmengine dumped here."""
        last = self.last
        if last is not None:
            launched, dumped = Path(last.config), self.path / Path(last.config).name
            if launched.is_file() and (_unchanged_since(launched, last) or not dumped.is_file()):
                return launched
            if dumped.is_file():
                return dumped
        found = sorted(self.path.glob("*.py"))
        return found[0] if found else None

    def alive_pid(self) -> int | None:
        """Pid of the live trainer: xtui's last launch, else a plain `xtuner train` naming this dir."""
        from engine.runs.processes import is_alive, processes_of_work_dir, session_members

        last = self.last
        if last is None:
            pids = processes_of_work_dir(self.path)
            return pids[0] if pids else None
        if is_alive(last.pid, last.create_time):
            return last.pid
        if self.exit_code_file(len(self.manifest.launches) - 1).exists():
            return None  # the wrapper saw the trainer end
        members = session_members(last.pid, last.create_time)  # the wrapper was killed: is the trainer?
        return members[0] if members else None

    def record(self, manifest: mf.Manifest) -> WorkDir:
        """Write `manifest` as this dir's and return the work dir holding it."""
        mf.write_manifest(self.path, manifest, self.node)
        return replace(self, manifest=manifest, stamp=manifest_stamp(self.path, self.node))

    def mark_stopped(self, at: float | None = None) -> WorkDir:
        """Record that the user stopped the last launch."""
        if self.manifest is None or self.last is None:
            return self
        stopped = replace(self.last, stopped_at=time.time() if at is None else at)
        return self.record(replace(self.manifest, launches=[*self.manifest.launches[:-1], stopped]))
