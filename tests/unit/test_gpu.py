"""GPU snapshots: the real NVML code path against a fake pynvml, and the monitor's caching."""

import sys
import types
from collections import namedtuple

import pytest

from engine.gpu import GpuMonitor, NvmlBackend

Mem = namedtuple("Mem", "used total free")
Util = namedtuple("Util", "gpu memory")
Proc = namedtuple("Proc", "pid usedGpuMemory")


class NotSupported(Exception):
    pass


def fake_pynvml(count=2, broken=(), calls=None):
    """A stand-in pynvml module: GPU 1 has no power reading; `broken` names calls that raise."""
    calls = calls if calls is not None else []

    def api(name, fn):
        def wrapped(*args):
            calls.append(name)
            if name in broken:
                raise NotSupported(name)
            return fn(*args)

        return wrapped

    mod = types.ModuleType("pynvml")
    mod.nvmlInit = api("nvmlInit", lambda: None)
    mod.nvmlDeviceGetCount = api("nvmlDeviceGetCount", lambda: count)
    mod.nvmlDeviceGetHandleByIndex = api("nvmlDeviceGetHandleByIndex", lambda i: i)
    mod.nvmlDeviceGetName = api("nvmlDeviceGetName", lambda h: "NVIDIA H200")
    mod.nvmlDeviceGetMemoryInfo = api("nvmlDeviceGetMemoryInfo", lambda h: Mem(10 << 30, 140 << 30, 130 << 30))
    mod.nvmlDeviceGetUtilizationRates = api("nvmlDeviceGetUtilizationRates", lambda h: Util(87, 40))
    mod.nvmlDeviceGetTemperature = api("nvmlDeviceGetTemperature", lambda h, s: 61)

    def power(h):
        if h == 1:
            raise NotSupported("power")
        return 350_000

    mod.nvmlDeviceGetPowerUsage = api("nvmlDeviceGetPowerUsage", power)
    mod.nvmlDeviceGetEnforcedPowerLimit = api("nvmlDeviceGetEnforcedPowerLimit", lambda h: 700_000)
    mod.nvmlDeviceGetComputeRunningProcesses = api(
        "nvmlDeviceGetComputeRunningProcesses", lambda h: [Proc(100 + h, 5 << 30), Proc(200, None)]
    )
    mod.nvmlDeviceGetGraphicsRunningProcesses = api(
        "nvmlDeviceGetGraphicsRunningProcesses", lambda h: [Proc(200, None)]
    )
    return mod, calls


@pytest.fixture
def nvml(monkeypatch):
    def install(**kw):
        mod, calls = fake_pynvml(**kw)
        monkeypatch.setitem(sys.modules, "pynvml", mod)
        return calls

    return install


def test_reads_every_gpu_and_failed_calls_are_none(nvml) -> None:
    nvml(broken={"nvmlDeviceGetUtilizationRates"})
    gpus, error = NvmlBackend().read(with_processes=True)
    assert error is None and len(gpus) == 2
    first, second = gpus
    assert first.name == "NVIDIA H200" and first.memory_used == 10 << 30 and first.memory_total == 140 << 30
    assert first.power == 350.0 and first.power_limit == 700.0 and first.temperature == 61
    assert first.utilization is None and second.power is None
    assert [(p.pid, p.used_memory) for p in first.processes] == [(100, 5 << 30), (200, None)]


def test_no_driver_gives_reason_and_host_still_works(nvml, tmp_path) -> None:
    nvml(broken={"nvmlInit"})
    snap = GpuMonitor(backend=NvmlBackend(), disk_path=tmp_path).poll()
    assert snap.gpus == () and "no NVIDIA driver" in snap.gpu_error and "nvmlInit" in snap.gpu_error
    assert snap.host.memory_total > 0 and snap.host.disk_free > 0


def test_handles_cached_and_process_list_polled_less_often(nvml) -> None:
    calls = nvml(count=1)
    monitor = GpuMonitor(backend=NvmlBackend(), process_every=5.0)
    snaps = [monitor.poll(now=t) for t in (0.0, 1.0, 2.0, 5.0, 6.0)]
    assert calls.count("nvmlInit") == 1 and calls.count("nvmlDeviceGetHandleByIndex") == 1
    assert calls.count("nvmlDeviceGetComputeRunningProcesses") == 2  # at 0 s and 5 s
    assert all(s.gpus[0].processes for s in snaps)  # cached list shown in between
    assert len(monitor.history[0]) == 5
