"""Peak GPU memory per GPU of an XTuner run, worked out from the model's config.json and the config, no weights loaded.

The figure is what mmengine logs as `memory` (torch.cuda.max_memory_allocated): the weights as XTuner holds them
(peft's prepare_model_for_kbit_training casts every 16-bit weight of a LoRA or QLoRA model to fp32; DeepSpeed casts
them back to 16 bits), the trainable weights' gradients and AdamW states (split over the ranks by ZeRO), the
checkpointed layer inputs, and the loss's logits (fp16, their fp32 copy, its shifted copy and log-softmax, as
transformers 4.48 computes the loss), the peak for a large vocabulary, or AdamW's temporaries at its step, whichever
is larger.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from engine.errors import XtunerError
from engine.files import read_head
from engine.gpu import GpuReading, NvmlBackend
from engine.xtuner.config_values import config_values, local_path
from engine.xtuner.configs import ConfigError, _find_call, _parse
from engine.xtuner.doctor import loads_in_4bit

GIB = 1 << 30
MIB = 1 << 20
BUCKET = 500_000_000  # elements of DeepSpeed's default reduce bucket; XTuner's presets overlap_comm: two of them
HEADROOM = 1.1  # the caching allocator holds more than it hands out
CUDA_CONTEXT = GIB // 2  # what NVML counts beyond torch's allocations
NF4 = 0.5 + 4 / 64  # bytes per 4-bit weight: packed pairs, one fp32 absmax per block of 64
NF4_DOUBLE = 0.5 + 1 / 64 + 4 / (64 * 256)  # double quantization: a uint8 absmax, one fp32 per 256 blocks
CONFIG_JSON_BYTES = 1 << 20
LINEARS = {  # target_modules names (Llama, Qwen2, Mistral...; InternLM2) -> which of q, k, v, o, gate, up, down
    "q_proj": (0,), "k_proj": (1,), "v_proj": (2,), "o_proj": (3,), "gate_proj": (4,), "up_proj": (5,),
    "down_proj": (6,), "wqkv": (0, 1, 2), "wo": (3,), "w1": (4,), "w3": (5,), "w2": (6,),
}  # fmt: skip
MOE_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")


class EstimateError(XtunerError):
    """A run whose memory cannot be estimated: no local config.json of the model, or a model this does not know."""


class Method(StrEnum):
    """What trains: every weight, a LoRA adapter over 16-bit weights, or one over 4-bit (nf4) weights."""

    FULL = "full"
    LORA = "lora"
    QLORA = "qlora"


@dataclass(frozen=True, slots=True)
class ModelShape:
    """A decoder-only transformer's sizes, as its config.json gives them."""

    vocab: int
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool = False
    dtype_bytes: int = 2  # of config.json's torch_dtype

    @classmethod
    def from_config(cls, data: dict) -> ModelShape:
        """The shape a config.json describes; EstimateError for a mixture of experts or a missing size."""
        if any(data.get(key) for key in MOE_KEYS):
            raise EstimateError("mixture-of-experts models are not estimated")
        try:
            hidden, heads = int(data["hidden_size"]), int(data["num_attention_heads"])
            return cls(
                vocab=int(data["vocab_size"]), hidden=hidden, layers=int(data["num_hidden_layers"]),
                intermediate=int(data["intermediate_size"]), heads=heads,
                kv_heads=int(data.get("num_key_value_heads") or heads), head_dim=int(data.get("head_dim") or hidden // heads),
                tied=bool(data.get("tie_word_embeddings", False)), dtype_bytes=4 if data.get("torch_dtype") == "float32" else 2,
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise EstimateError(f"config.json lacks a size the estimate needs: {exc}") from None

    def _linears(self) -> list[tuple[int, int]]:
        """(in, out) of each Linear in one layer: q, k, v, o, gate, up, down (what LoRA wraps and nf4 quantizes)."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        h, i = self.hidden, self.intermediate
        return [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]

    @property
    def linear_params(self) -> int:
        """Weights of the layers' Linear modules."""
        return self.layers * sum(a * b for a, b in self._linears())

    @property
    def parameters(self) -> int:
        """Every weight: embeddings, output head (unless tied), layers and their norms."""
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return embeddings + self.linear_params + (2 * self.layers + 1) * self.hidden

    def lora_params(self, r: int, targets: tuple[int, ...] = ()) -> int:
        """Weights of a rank-`r` LoRA adapter on the layers' Linears `targets` (indexes; none: all, XTuner's default)."""
        linears = self._linears()
        return self.layers * r * sum(a + b for i, (a, b) in enumerate(linears) if not targets or i in targets)


@dataclass(frozen=True, slots=True)
class Training:
    """How a run trains, as far as memory goes."""

    method: Method = Method.LORA
    lora_r: int = 64
    lora_targets: tuple[int, ...] = ()  # which of q, k, v, o, gate, up, down LoRA wraps (none named: all)
    max_length: int = 2048
    batch_size: int = 1
    dtype_bytes: int = 2  # the torch_dtype the config loads the model in (4: float32)
    gradient_checkpointing: bool = True  # XTuner's SupervisedFinetune turns it on
    zero_stage: int = 0  # 0: no DeepSpeed
    offload: bool = False  # DeepSpeed's offload presets: optimizer (and, at ZeRO-3, weights) on the CPU
    world_size: int = 1
    double_quant: bool = True


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """Peak GPU memory per GPU, in parts (name, bytes), with what the estimate leaves out."""

    parts: tuple[tuple[str, int], ...]
    training: Training
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        """Bytes at the peak."""
        return sum(size for _, size in self.parts)

    @property
    def needed(self) -> int:
        """Free bytes a GPU needs for it: the peak, the allocator's slack, the CUDA context."""
        return int(self.total * HEADROOM) + CUDA_CONTEXT

    def describe(self) -> str:
        """The estimate in one line: the total and its parts in GiB (in MiB under 1 GiB: a tiny model's)."""
        run = self.training
        how = f"{run.method.value}" + (f" r{run.lora_r}" if run.method is not Method.FULL else "")
        how += f", {run.batch_size} x {run.max_length} tokens"
        how += (
            f", ZeRO-{run.zero_stage}{' offload' if run.offload else ''} on {run.world_size}" if run.zero_stage else ""
        )
        unit, word = (GIB, "GiB") if self.total >= GIB else (MIB, "MiB")
        parts = ", ".join(f"{name} {size / unit:.1f}" for name, size in self.parts if size >= unit // 20)
        return f"~{self.total / unit:.1f} {word} per GPU for {how}" + (f" ({parts})" if parts else "")


def estimate(shape: ModelShape, run: Training) -> MemoryEstimate:
    """The peak memory per GPU of `run` on a model of `shape`."""
    mixed = run.zero_stage > 0  # DeepSpeed: 16-bit weights, an fp32 master copy in the optimizer
    float_bytes = 2 if mixed else 4 if run.method is not Method.FULL else run.dtype_bytes
    world = max(run.world_size, 1)
    trainable = shape.parameters if run.method is Method.FULL else shape.lora_params(run.lora_r, run.lora_targets)
    quantized = shape.linear_params if run.method is Method.QLORA else 0
    nf4 = NF4_DOUBLE if run.double_quant else NF4
    weights = (shape.parameters - quantized + (trainable if run.method is not Method.FULL else 0)) * float_bytes
    weights += int(quantized * nf4)
    if run.zero_stage == 3:
        gathered = 2 * shape.linear_params // shape.layers * 2  # the layer in use and the one prefetched
        weights = gathered if run.offload else weights // world + gathered
    grads = trainable * float_bytes // (world if run.zero_stage >= 2 else 1)
    states = trainable * (
        12 if mixed else 2 * float_bytes
    )  # master + AdamW's two, or AdamW's two in the weights' dtype
    states = 0 if run.offload else states // (world if mixed else 1)
    buckets = (2 if run.zero_stage < 3 else 1) * BUCKET * 2 if mixed else 0
    copies = 0  # autocast's fp16 copies of fp32 weights during the forward: every trainable one and the output head
    if not mixed and float_bytes == 4:
        copies = 2 * (shape.parameters if run.method is Method.FULL else trainable + shape.vocab * shape.hidden)
    tokens = run.batch_size * run.max_length
    act = 2 if mixed or run.dtype_bytes == 2 and run.method is Method.FULL else 4  # the residual stream's dtype
    lora = run.method is not Method.FULL
    layer = tokens * (
        shape.hidden * (8 * act + 13 + (27 if lora else 0)) + shape.intermediate * (8 + (9 if lora else 0))
    )
    logits = tokens * shape.vocab * 14
    if run.gradient_checkpointing:
        activations = shape.layers * tokens * shape.hidden * act + max(logits, 2 * layer)
    else:
        activations = shape.layers * layer + logits
    step = 0 if run.offload else trainable * 4 // (world if mixed else 1)  # AdamW's foreach temporaries
    peak = ("activations", activations + copies) if activations + copies >= step else ("optimizer step", step)
    parts = (("weights", weights), ("gradients", grads), ("optimizer", states), ("DeepSpeed buckets", buckets))
    return MemoryEstimate((*parts, peak), run)


def hub_config(name: str) -> Path | None:
    """The config.json of a hub model id in the local Hugging Face cache, None when it is not there."""
    hub = (
        os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME") or Path.home() / ".cache/huggingface") / "hub"
    )
    snapshots = Path(hub) / f"models--{name.replace('/', '--')}" / "snapshots"
    found = sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime) if snapshots.is_dir() else []
    return found[-1] if found else None


def model_config(name: object, cwd: Path) -> dict:
    """The config.json of the model a config names: a local folder, or a hub id in the local cache."""
    folder = local_path(name, cwd) or (cwd / name if isinstance(name, str) and name else None)
    path = folder / "config.json" if folder is not None and folder.is_dir() else None
    path = path or (hub_config(name) if isinstance(name, str) and name.count("/") == 1 else None)
    if path is None:
        raise EstimateError(f"no config.json of the model {name!r} on this machine")
    try:
        data = json.loads(read_head(path, CONFIG_JSON_BYTES))
    except (OSError, ValueError) as exc:
        raise EstimateError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise EstimateError(f"{path} is not a model config")
    return data


def _keyword(tree: ast.Module, path: str, name: str) -> ast.expr | None:
    """The value of keyword `name` of the call at `path` (e.g. model.lora), None when either is absent."""
    try:
        call = _find_call(tree, path)
    except ConfigError:
        return None
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _value(node: ast.expr | None, values: dict) -> object:
    """What a keyword gives, as a literal or a setting's name (None when neither)."""
    return values.get(node.id) if isinstance(node, ast.Name) else getattr(node, "value", None)


def _whole(value: object, default: int) -> int:
    """`value` when it is a whole number above 0, else `default`."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def _targets(node: ast.expr | None, values: dict) -> tuple[int, ...]:
    """The Linears a LoRA's target_modules names (none for no list, or names this does not know: all of them)."""
    names = _value(node, values) if isinstance(node, ast.Name) else None
    if isinstance(node, ast.List | ast.Tuple):
        names = [item.value for item in node.elts if isinstance(item, ast.Constant)]
    known = [LINEARS[name] for name in names or () if isinstance(name, str) and name in LINEARS]
    return tuple(sorted({index for indexes in known for index in indexes}))


def _dtype_bytes(node: ast.expr | None, shape: ModelShape) -> int:
    """Bytes per weight of the torch_dtype the config loads in (float32 without one; flash-attn forces 16 bits)."""
    text = ast.unparse(node) if node is not None else ""
    if importlib.util.find_spec("flash_attn") is not None:  # XTuner then loads Llama-like models in bf16/fp16
        return 2
    if "auto" in text:
        return shape.dtype_bytes
    return 2 if any(word in text for word in ("float16", "bfloat16", "half")) else 4


def deepspeed_stage(deepspeed: str | None) -> tuple[int, bool]:
    """ZeRO stage and offload of a DeepSpeed preset name or .json file ((0, False) without DeepSpeed)."""
    if not deepspeed:
        return 0, False
    if not deepspeed.endswith(".json"):
        stage = next((int(c) for c in deepspeed.removeprefix("deepspeed_zero")[:1] if c.isdigit()), 0)
        return stage, deepspeed.endswith("_offload")
    try:
        zero = json.loads(read_head(deepspeed, CONFIG_JSON_BYTES)).get("zero_optimization") or {}
        return int(zero.get("stage", 0)), bool(zero.get("offload_optimizer") or zero.get("offload_param"))
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise EstimateError(f"cannot read the DeepSpeed config {deepspeed}: {exc}") from None


def estimate_config(config: Path, cwd: Path, deepspeed: str | None = None, world_size: int = 1) -> MemoryEstimate:
    """The peak memory per GPU of training `config` from `cwd` on `world_size` GPUs, read without running it."""
    source = config.read_text(encoding="utf-8")
    tree, values = _parse(source), config_values(source)
    model = values.get("pretrained_model_name_or_path") or values.get("llm_name_or_path")
    shape = ModelShape.from_config(model_config(model, cwd))
    lora_key = "llm_lora" if _keyword(tree, "model", "llm_lora") is not None else "lora"  # LLaVA's, or the LLM's
    lora = _keyword(tree, "model", lora_key)
    has_lora = lora is not None and not (isinstance(lora, ast.Constant) and lora.value is None)
    if not has_lora and _value(_keyword(tree, "model", "freeze_llm"), values) is True:
        raise EstimateError("a frozen LLM (LLaVA's pretraining of the projector) is not estimated")
    method = (Method.QLORA if loads_in_4bit(config) else Method.LORA) if has_lora else Method.FULL
    stage, offload = deepspeed_stage(deepspeed)
    checkpointing = _keyword(tree, "model", "use_activation_checkpointing")
    run = Training(
        method=method, lora_r=_whole(_value(_keyword(tree, f"model.{lora_key}", "r"), values), 8),
        lora_targets=_targets(_keyword(tree, f"model.{lora_key}", "target_modules"), values),
        max_length=_whole(values.get("max_length"), 2048), batch_size=_whole(values.get("batch_size"), 1),
        dtype_bytes=_dtype_bytes(_keyword(tree, "model.llm", "torch_dtype"), shape),
        gradient_checkpointing=_value(checkpointing, values) is not False,
        zero_stage=stage, offload=offload, world_size=world_size,
        double_quant=_value(_keyword(tree, "model.llm.quantization_config", "bnb_4bit_use_double_quant"), values) is True,
    )  # fmt: skip
    notes = [] if values.get("pack_to_max_length", True) else ["not packed: every sequence taken as max_length long"]
    notes += ["the visual encoder is not counted"] if "llm_name_or_path" in values else []
    return MemoryEstimate(estimate(shape, run).parts, run, tuple(notes))


def fit(estimate_: MemoryEstimate, gpus: list[GpuReading], devices: str | None, count: int) -> tuple[bool, str]:
    """Whether the run fits the free memory NVML reports on the GPUs it will use (CUDA_VISIBLE_DEVICES `devices`, else
    the first `count`), and the line that says so (the estimate alone without a reading of them)."""
    chosen = [int(d) for d in (devices or "").split(",") if d.strip().isdigit()] or list(range(count))
    free = [
        (g.index, g.memory_total - g.memory_used)
        for g in gpus
        if g.index in chosen and g.memory_total is not None and g.memory_used is not None
    ]
    if not free:
        return True, f"peak {estimate_.describe()}"
    index, least = min(free, key=lambda pair: pair[1])
    ok = least >= estimate_.needed
    verdict = "fits" if ok else f"will not fit: needs ~{estimate_.needed / GIB:.1f} GiB free"
    return ok, f"peak {estimate_.describe()}; GPU {index} has {least / GIB:.1f} GiB free: {verdict}"


def memory_line(
    config: Path,
    cwd: Path,
    deepspeed: str | None,
    gpus: int,
    nnodes: int = 1,
    devices: str | None = None,
    readings: list[GpuReading] | None = None,
) -> tuple[bool, str]:
    """The estimate for a launch next to what its GPUs have free (`readings`; None: as NVML reports them now), in one
    line, and False when it will not fit; a line saying why when it cannot be estimated."""
    try:
        found = estimate_config(config, cwd, deepspeed, gpus * nnodes)
    except (XtunerError, OSError, UnicodeDecodeError) as exc:
        return True, f"memory: not estimated ({exc})"
    ok, line = fit(found, NvmlBackend().read(with_processes=False)[0] if readings is None else readings, devices, gpus)
    return ok, "memory: " + "; ".join((line, *found.notes))
