"""Shared test doubles for the TUI: a GPU backend (there is no GPU here) and a fixture work dir."""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.gpu import GpuProcess, GpuReading
from tests.support import FIXTURE_LOG


class FakeGpus:
    """Two H200s with fixed readings; GPU 1's power reading is not supported."""

    def __init__(self, pids: tuple[int, ...] = (4242,)) -> None:
        self.pids = pids

    def read(self, with_processes: bool):
        procs = tuple(GpuProcess(pid, 9 << 30) for pid in self.pids) if with_processes else ()
        gpus = [
            GpuReading(0, "NVIDIA H200", 10 << 30, 141 << 30, 87, 61, 350.0, 700.0, procs),
            GpuReading(1, "NVIDIA H200", 1 << 30, 141 << 30, 0, 35, None, 700.0, ()),
        ]
        return gpus, None


class NoGpus:
    """A machine without an NVIDIA driver."""

    def read(self, with_processes: bool):
        return [], "no NVIDIA driver: NVML Shared Library Not Found"


def fixture_run(root: Path, name: str = "work") -> Path:
    """A finished work dir holding the real H200 log (as a plain `xtuner train` leaves it: no manifest)."""
    work_dir = root / name
    stamp = work_dir / "20261128_135200"
    stamp.mkdir(parents=True)
    shutil.copy(FIXTURE_LOG, stamp / "20261128_135200.log")
    return work_dir
