"""Where a chat model can be loaded: its memory need against each GPU's free memory, read before loading."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from engine.gpu import GpuBackend, GpuReading, NvmlBackend

if TYPE_CHECKING:
    from engine.chat.models import LoadOptions, ModelSource

GIB = 1024**3
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt")
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
HEADROOM = 1.2  # activations, the KV cache and CUDA's own context on top of the weights
OVERHEAD = int(0.75 * GIB)
FOUR_BIT = "4bit"  # the alternative of loading in 4 bits on the planned GPU


@dataclass(frozen=True, slots=True)
class DevicePlan:
    """The device to load on, whether it fits, and what to say (and offer) when it does not."""

    device: str
    fits: bool
    message: str
    alternatives: tuple[str, ...] = ()  # "cuda:N", FOUR_BIT, "cpu", best first

    def options(self, options: LoadOptions, choice: str | None = None) -> LoadOptions:
        """`options` moved to the planned device, or to one of the alternatives when `choice` names one."""
        if choice == FOUR_BIT:
            return replace(options, device=self.device, bits=4)
        return replace(options, device=choice or self.device)


def weights_bytes(folder: Path) -> int:
    """Bytes of weight files in a model folder."""
    return sum(p.stat().st_size for pattern in WEIGHT_FILES for p in Path(folder).glob(pattern))


def stored_dtype(folder: Path) -> str:
    """The dtype a model folder's config.json says its weights are stored in (float32 when unsaid)."""
    try:
        value = json.loads((Path(folder) / "config.json").read_text()).get("torch_dtype")
    except (OSError, ValueError):
        value = None
    return value if value in DTYPE_BYTES else "float32"


def memory_need(folder: Path, dtype: str = "float16", bits: int | None = None) -> int:
    """Rough bytes a model needs on a GPU loaded as `dtype` (or 4-bit): its weights, scaled, plus headroom."""
    weights = weights_bytes(folder) * DTYPE_BYTES.get(dtype, 2) / DTYPE_BYTES[stored_dtype(folder)]
    if bits == 4:
        weights /= 3.5  # nf4 with double quantisation, embeddings and norms kept in 16 bits
    return int(weights * HEADROOM) + OVERHEAD


def _gb(value: int | None) -> str:
    return "N/A" if value is None else f"{value / GIB:.1f} GB"


def _holders(gpu: GpuReading, owners: Mapping[int, str]) -> str:
    """Who holds a GPU's memory, by run, as a clause ('' when nobody known)."""
    runs: dict[str, int] = {}
    for proc in gpu.processes:
        if proc.pid in owners:
            runs[owners[proc.pid]] = runs.get(owners[proc.pid], 0) + (proc.used_memory or 0)
    return "; ".join(f"training run {name} holds {_gb(used)}" for name, used in runs.items())


def plan(gpus: Sequence[GpuReading], need: int, want: int | None = None, need_4bit: int | None = None,
         owners: Mapping[int, str] | None = None) -> DevicePlan:  # fmt: skip
    """Pick GPU `want` (or the one with most free memory) when `need` bytes fit; else say why and what else."""
    owners = owners or {}
    free = {
        g.index: g.memory_total - g.memory_used
        for g in gpus
        if g.memory_total is not None and g.memory_used is not None
    }
    if not gpus:
        return DevicePlan("cpu", True, "no GPU: loading on the CPU")
    chosen = want if want is not None else max(free, key=free.get, default=gpus[0].index)
    gpu = next((g for g in gpus if g.index == chosen), None)
    if gpu is None:
        return DevicePlan("cpu", False, f"there is no GPU {chosen}", ("cpu",))
    if chosen not in free:
        return DevicePlan(f"cuda:{chosen}", True, f"GPU {chosen}: free memory unknown (N/A), trying anyway")
    if free[chosen] >= need:
        return DevicePlan(f"cuda:{chosen}", True, f"GPU {chosen}: {_gb(free[chosen])} free, needs ~{_gb(need)}")
    others = tuple(f"cuda:{i}" for i, f in sorted(free.items(), key=lambda kv: -kv[1]) if i != chosen and f >= need)
    small = (FOUR_BIT,) if need_4bit is not None and free[chosen] >= need_4bit else ()
    held = _holders(gpu, owners)
    message = f"GPU {chosen} has {_gb(free[chosen])} free, the model needs ~{_gb(need)}" + (f"; {held}" if held else "")
    return DevicePlan(f"cuda:{chosen}", False, message, (*others, *small, "cpu"))


def plan_load(source: ModelSource, options: LoadOptions, owners: Mapping[int, str] | None = None,
              backend: GpuBackend | None = None) -> DevicePlan | None:  # fmt: skip
    """Where `source` fits, read off the GPUs (NVML unless `backend`) before loading; None when there is no choice.

    No choice: the CPU was asked for, the source has no model folder to weigh (a checkpoint), or there is no GPU.
    """
    if options.device == "cpu" or source.model is None:
        return None
    gpus, _ = (backend or NvmlBackend()).read(with_processes=True)
    if not gpus:
        return None
    want = int(options.device.split(":")[1]) if options.device.startswith("cuda:") else None
    need = memory_need(source.model, bits=options.bits)
    return plan(gpus, need, want, memory_need(source.model, bits=4), owners)
