"""GPU and host readings as frozen snapshots: NVML (pynvml) with cached handles, psutil for the host."""

from __future__ import annotations

import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import psutil

HISTORY = 120  # readings kept per GPU (two minutes at one a second)
PROCESS_EVERY_S = 5.0  # the process list costs milliseconds per call: read it less often
HOST_EVERY_S = 2.0  # host CPU % is the average since the last reading: steadier, and repainted half as often


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A process using a GPU; `used_memory` in bytes when the driver says."""

    pid: int
    used_memory: int | None


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One GPU at one moment; any field the driver would not give is None (shown as N/A)."""

    index: int
    name: str | None
    memory_used: int | None  # bytes
    memory_total: int | None
    utilization: int | None  # percent
    temperature: int | None  # °C
    power: float | None  # watts
    power_limit: float | None
    processes: tuple[GpuProcess, ...] = ()


@dataclass(frozen=True, slots=True)
class HostReading:
    """Host CPU, memory and the free space of the drive that holds `disk_path`."""

    cpu_percent: float
    memory_used: int
    memory_total: int
    disk_free: int | None
    disk_path: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the GPU panel shows at one moment; `gpu_error` says why there are no GPUs."""

    at: float
    gpus: tuple[GpuReading, ...]
    host: HostReading
    gpu_error: str | None = None


class GpuBackend(Protocol):
    """Where GPU readings come from (NVML here; a fake in tests)."""

    def read(self, with_processes: bool) -> tuple[list[GpuReading], str | None]:
        """Every GPU's reading, or an empty list and why."""


class NvmlBackend:
    """NVML through pynvml: initialised once, handles cached, every call allowed to fail."""

    def __init__(self) -> None:
        self._nvml = None
        self._handles: list = []
        self._error: str | None = None

    def _init(self) -> None:
        """Load NVML once; remember why it failed."""
        if self._nvml is not None or self._error is not None:
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self._nvml = pynvml
        except ImportError:
            self._error = "nvidia-ml-py is not installed"
        except Exception as exc:  # pynvml.NVMLError and friends: no driver, no library
            self._error = f"no NVIDIA driver: {exc}"

    def _call(self, fn: str, *args):
        """One NVML call; None when it fails (NotSupported, lost GPU, MIG...)."""
        try:
            return getattr(self._nvml, fn)(*args)
        except Exception:
            return None

    def read(self, with_processes: bool) -> tuple[list[GpuReading], str | None]:
        """Read every GPU; the process list only when asked."""
        self._init()
        if self._nvml is None:
            return [], self._error
        readings = []
        for index, handle in enumerate(self._handles):
            name = self._call("nvmlDeviceGetName", handle)
            memory = self._call("nvmlDeviceGetMemoryInfo", handle)
            util = self._call("nvmlDeviceGetUtilizationRates", handle)
            power = self._call("nvmlDeviceGetPowerUsage", handle)
            limit = self._call("nvmlDeviceGetEnforcedPowerLimit", handle)
            readings.append(
                GpuReading(
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else name,
                    memory_used=memory.used if memory else None,
                    memory_total=memory.total if memory else None,
                    utilization=util.gpu if util else None,
                    temperature=self._call("nvmlDeviceGetTemperature", handle, 0),  # NVML_TEMPERATURE_GPU
                    power=power / 1000 if power is not None else None,
                    power_limit=limit / 1000 if limit is not None else None,
                    processes=self._processes(handle) if with_processes else (),
                )
            )
        return readings, None

    def _processes(self, handle) -> tuple[GpuProcess, ...]:
        """Compute and graphics processes on one GPU, each pid once."""
        seen: dict[int, GpuProcess] = {}
        for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            for proc in self._call(fn, handle) or []:
                used = getattr(proc, "usedGpuMemory", None)
                seen.setdefault(proc.pid, GpuProcess(proc.pid, used if isinstance(used, int) and used >= 0 else None))
        return tuple(seen.values())


def host_reading(disk_path: Path) -> HostReading:
    """CPU since the last call, memory, free disk of the drive that holds `disk_path`."""
    memory = psutil.virtual_memory()
    try:
        free = shutil.disk_usage(disk_path).free
    except OSError:
        free = None
    return HostReading(psutil.cpu_percent(None), memory.total - memory.available, memory.total, free, str(disk_path))


@dataclass
class GpuMonitor:
    """Takes snapshots (call `poll` about once a second) and keeps a short history per GPU."""

    backend: GpuBackend = field(default_factory=NvmlBackend)
    disk_path: Path = field(default_factory=Path.cwd)
    read_host: Callable[[Path], HostReading] = host_reading
    process_every: float = PROCESS_EVERY_S
    host_every: float = HOST_EVERY_S
    history: dict[int, deque[GpuReading]] = field(default_factory=dict)
    _processes: dict[int, tuple[GpuProcess, ...]] = field(default_factory=dict)
    _processes_at: float = float("-inf")
    _host: HostReading | None = None
    _host_at: float = float("-inf")

    def poll(self, now: float | None = None) -> Snapshot:
        """A fresh snapshot; process lists are re-read every `process_every` seconds, the host every `host_every`."""
        now = time.monotonic() if now is None else now
        fresh = now - self._processes_at >= self.process_every
        gpus, error = self.backend.read(with_processes=fresh)
        if fresh:
            self._processes_at = now
            self._processes = {g.index: g.processes for g in gpus}
        else:
            gpus = [_with_processes(g, self._processes.get(g.index, ())) for g in gpus]
        for gpu in gpus:
            self.history.setdefault(gpu.index, deque(maxlen=HISTORY)).append(gpu)
        if self._host is None or now - self._host_at >= self.host_every:
            self._host, self._host_at = self.read_host(self.disk_path), now
        return Snapshot(at=time.time(), gpus=tuple(gpus), host=self._host, gpu_error=error)


def _with_processes(gpu: GpuReading, processes: tuple[GpuProcess, ...]) -> GpuReading:
    """The same reading with the cached process list."""
    return replace(gpu, processes=processes)
