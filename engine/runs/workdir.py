"""A work dir: which folders are runs, where each file of a run lives, and its manifest read once per operation.

Cheap to import: the TUI checks a folder before its first frame.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

from engine.runs import manifest as mf

_TS_DIR = re.compile(r"^\d{8}_\d{6}$")
_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", "vis_data"}


def log_files(work_dir: Path) -> list[Path]:
    """The mmengine log of every start of the run, oldest first."""
    try:
        folders = sorted(p for p in work_dir.iterdir() if _TS_DIR.match(p.name) and p.is_dir())
    except OSError:
        return []
    return [f / f"{f.name}.log" for f in folders if (f / f"{f.name}.log").exists()]


def is_run_dir(path: Path) -> bool:
    """True for a work dir xtui launched or one that holds an mmengine log folder."""
    return (path / mf.MANIFEST).exists() or bool(log_files(path))


def discover(roots: list[Path], depth: int = 3) -> list[Path]:
    """Work dirs under `roots` (each root itself included), at most `depth` levels down."""
    found: list[Path] = []

    def walk(path: Path, level: int) -> None:
        if is_run_dir(path):
            found.append(path)
            return
        if level >= depth:
            return
        try:
            children = sorted(p for p in path.iterdir() if p.is_dir())
        except OSError:
            return
        for child in children:
            if child.name not in _SKIP_DIRS and not child.name.startswith("."):
                walk(child, level + 1)

    for root in roots:
        walk(root.resolve(), 0)
    return found


def manifest_stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes whenever the manifest is rewritten (written by rename: a new inode each time), None when absent."""
    try:
        st = (path / mf.MANIFEST).stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


@dataclass(frozen=True, slots=True)
class WorkDir:
    """One run's folder: where its files are, and its manifest as it was when opened (None: not launched by xtui)."""

    path: Path
    manifest: mf.Manifest | None = None
    stamp: tuple[int, int, int] | None = None

    @classmethod
    def open(cls, path: Path) -> WorkDir:
        """The work dir at `path` (made absolute) with its manifest read now."""
        path = path.resolve()
        stamp = manifest_stamp(path)
        return cls(path, mf.read_manifest(path) if stamp else None, stamp)

    @property
    def last(self) -> mf.Launch | None:
        """xtui's most recent launch in this dir, if any."""
        return self.manifest.last if self.manifest else None

    @property
    def console(self) -> Path:
        """The file the trainer's stdout and stderr go to, every launch appended."""
        return self.path / mf.CONSOLE

    def exit_code_file(self, launch_index: int) -> Path:
        """Where the launch's wrapper writes the trainer's exit code."""
        return self.path / f".xtui-exit-{launch_index}"

    def exit_code(self, launch_index: int) -> int | None:
        """The exit code the launch's wrapper wrote, None when it never wrote one."""
        try:
            return int(self.exit_code_file(launch_index).read_text().strip())
        except (OSError, ValueError):
            return None

    def log_files(self) -> list[Path]:
        """The mmengine log of every start of the run, oldest first."""
        return log_files(self.path)

    def config(self) -> Path | None:
        """The config a resume or a conversion runs: xtui's last launch's, else the copy mmengine dumped here."""
        if self.last and Path(self.last.config).is_file():
            return Path(self.last.config)
        dumped = sorted(self.path.glob("*.py"))
        return dumped[0] if dumped else None

    def alive_pid(self) -> int | None:
        """Pid of the live trainer: xtui's last launch, else a plain `xtuner train` naming this dir."""
        from engine.runs.processes import is_alive, processes_of_work_dir

        if self.last:
            return self.last.pid if is_alive(self.last.pid, self.last.create_time) else None
        pids = processes_of_work_dir(self.path)
        return pids[0] if pids else None

    def record(self, manifest: mf.Manifest) -> WorkDir:
        """Write `manifest` as this dir's and return the work dir holding it."""
        mf.write_manifest(self.path, manifest)
        return replace(self, manifest=manifest, stamp=manifest_stamp(self.path))

    def mark_stopped(self, at: float | None = None) -> WorkDir:
        """Record that the user stopped the last launch."""
        if self.manifest is None or self.last is None:
            return self
        stopped = replace(self.last, stopped_at=time.time() if at is None else at)
        return self.record(replace(self.manifest, launches=[*self.manifest.launches[:-1], stopped]))
