"""What a chat talks to (base, adapter, merged, checkpoint, LLaVA) and loading it once, in memory."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from engine import locations
from engine.chat.decoding import DECODERS
from engine.errors import ChatError
from engine.xtuner import convert
from engine.xtuner.compat import TRUST_NOTE, importing_transformers

BASE = "base"  # the variant name for the base model under an adapter (adapter disabled)
DTYPES = ("auto", "float16", "bfloat16", "float32")
DEVICE = re.compile(r"auto|cpu|cuda:\d+")


class SourceKind(StrEnum):
    """What a chat model is: a base model, one with a LoRA adapter, a merged one, a run's checkpoint, LLaVA."""

    BASE = "base"
    ADAPTER = "adapter"
    MERGED = "merged"
    CHECKPOINT = "checkpoint"
    LLAVA = "llava"


class ModelError(ChatError):
    """A model source that cannot be loaded, with the reason in words."""


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where a chat model comes from; which paths matter depends on `kind` (a name is taken for its SourceKind)."""

    kind: SourceKind
    model: Path | None = None  # base, merged, or the LLM under an adapter / LLaVA
    adapter: Path | None = None
    checkpoint: Path | None = None  # iter_N.pth of a run (a checkpoint source)
    config: Path | None = None  # the run's config, to convert the checkpoint
    visual_encoder: Path | None = None
    llava: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", SourceKind(self.kind))

    @property
    def label(self) -> str:
        """A short name for titles and transcripts."""
        part = {SourceKind.ADAPTER: self.adapter, SourceKind.CHECKPOINT: self.checkpoint, SourceKind.LLAVA: self.llava}
        return f"{self.kind}: {Path(part.get(self.kind) or self.model or '?').name}"

    def problems(self) -> list[str]:
        """What is missing or wrong, as sentences (empty when it can be loaded)."""
        found = []
        if self.kind is SourceKind.CHECKPOINT:
            if self.checkpoint is None or not self.checkpoint.exists():
                found.append(f"checkpoint not found: {self.checkpoint}")
            if self.config is None or not self.config.is_file():
                found.append(f"the run's config not found: {self.config}")
            return found
        if self.model is None or not (self.model / "config.json").is_file():
            found.append(f"not a model folder (no config.json): {self.model}")
        if self.kind is SourceKind.ADAPTER and (self.adapter is None or not convert.is_adapter(self.adapter)):
            found.append(f"not an adapter folder (no adapter_config.json): {self.adapter}")
        if self.kind is SourceKind.LLAVA:
            if self.llava is None or not (self.llava / "projector").is_dir():
                found.append(f"not a LLaVA folder (no projector/): {self.llava}")
            elif self.visual_encoder is None and not (self.llava / "visual_encoder").is_dir():
                found.append("a visual encoder folder is needed (the LLaVA folder has none)")
        return found


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """How to load: device ("auto", "cpu", "cuda:N"), dtype ("auto", "float16", "bfloat16", "float32"), 4-bit, decoder."""

    device: str = "auto"
    dtype: str = "auto"
    bits: int | None = None
    decoder: str = "auto"  # engine.chat.decoding.DECODERS

    def problems(self) -> list[str]:
        """What is not one of the choices, as sentences (empty when all is well)."""
        found = []
        if not DEVICE.fullmatch(self.device):
            found.append(f"device must be auto, cpu or cuda:N (not {self.device!r})")
        if self.dtype not in DTYPES:
            found.append(f"dtype must be one of {', '.join(DTYPES)} (not {self.dtype!r})")
        if self.bits not in (None, 4):
            found.append(f"bits must be 4 or none (not {self.bits!r})")
        if self.decoder not in DECODERS:
            found.append(f"decoder must be one of {', '.join(DECODERS)} (not {self.decoder!r})")
        return found


@dataclass
class LoadedModel:
    """A model in memory with its tokenizer; `adapters` are the names that can be switched on (A/B)."""

    model: object
    tokenizer: object
    source: ModelSource
    device: str
    adapters: list[str] = field(default_factory=list)
    llava: object | None = None  # engine.chat.llava.LlavaParts when the kind is LLaVA
    decoder: object | None = None

    def eos_ids(self) -> list[int]:
        """Token ids that end an answer: the tokenizer's EOS and the generation config's."""
        found = {self.tokenizer.eos_token_id}
        configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        found.update(configured if isinstance(configured, list) else [configured])
        return sorted(i for i in found if i is not None)

    @contextlib.contextmanager
    def variant(self, name: str | None) -> Iterator[None]:
        """Answer as `name`: BASE disables the adapters, an adapter name switches to it, None keeps as loaded."""
        if self.decoder is not None:
            self.decoder.key = name  # a captured CUDA graph holds one variant's kernels
        if name is None or not self.adapters:
            yield
        elif name == BASE:
            with self.model.disable_adapter():
                yield
        else:
            if name not in self.adapters:
                raise ModelError(f"no adapter {name!r} loaded (have: {', '.join(self.adapters)})")
            previous = self.model.active_adapter
            self.model.set_adapter(name)
            try:
                yield
            finally:
                self.model.set_adapter(previous)  # None ("as loaded") must not answer with the last one switched to

    def add_adapter(self, name: str, folder: Path) -> None:
        """Load another adapter onto the same base weights (two checkpoints side by side)."""
        if not convert.is_adapter(folder):
            raise ModelError(f"not an adapter folder (no adapter_config.json): {folder}")
        if not self.adapters:
            raise ModelError("this model has no adapter: a second one needs the same base (load an adapter first)")
        if name not in self.adapters:
            self.model.load_adapter(str(folder), adapter_name=name)
            self.adapters.append(name)

    def add_compare(self, other: ModelSource, say: Callable[[str], None] = lambda _: None) -> None:
        """Load `other` (an adapter, or a run checkpoint converted first) beside this adapter, for A/B."""
        say(f"loading {other.label} for A/B")
        folder = (checkpoint_source(other) if other.kind is SourceKind.CHECKPOINT else other).adapter
        if folder is None:
            raise ModelError(f"A/B takes two LoRA adapters; {other.label} is a whole model")
        self.add_adapter(re.sub(r"\W", "_", Path(other.checkpoint or folder).stem), folder)


def resolve_device(options: LoadOptions) -> str:
    """The concrete device: "auto" is the first GPU when torch sees one, else the CPU."""
    import torch

    if options.device != "auto":
        if options.device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError("no CUDA device is visible to torch: load on the CPU")
        return options.device
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def _dtype(options: LoadOptions, device: str):
    import torch

    name = options.dtype if options.dtype != "auto" else ("float16" if device.startswith("cuda") else "float32")
    return getattr(torch, name)


def _base_of(adapter: Path) -> Path | None:
    """The base model an adapter was made from, as its adapter_config.json says."""
    try:
        base = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
    except (OSError, ValueError):
        return None
    return Path(base) if base else None


def checkpoint_source(source: ModelSource) -> ModelSource:
    """A run checkpoint converted (once, cached) to an adapter on its base, or to a whole model."""
    hf = convert.checkpoint_hf(source.config, source.checkpoint)
    if not convert.is_adapter(hf):
        return ModelSource(SourceKind.MERGED, model=hf)
    base = source.model or _base_of(hf)
    if base is None or not (base / "config.json").is_file():
        raise ModelError(f"the base model of {source.checkpoint.name} is not here: {base}")
    return ModelSource(SourceKind.ADAPTER, model=base, adapter=hf)


def load(
    source: ModelSource, options: LoadOptions = LoadOptions(), say: Callable[[str], None] = lambda _: None
) -> LoadedModel:
    """Load `source` (converting a checkpoint first); `say` hears each step, for a progress line."""
    problems = source.problems()
    if problems:
        raise ModelError("; ".join(problems))
    if source.kind is SourceKind.CHECKPOINT:
        say(
            f"converting {source.checkpoint.name} with its run's config, once (cached in {locations.cache_dir()}); {TRUST_NOTE}"
        )
        loaded = load(checkpoint_source(source), options, say)
        loaded.source = source
        return loaded
    import torch

    with importing_transformers():
        from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(options)
    kwargs: dict = {"torch_dtype": _dtype(options, device), "trust_remote_code": True}
    if options.bits == 4:
        if not device.startswith("cuda"):
            raise ModelError("4-bit loading needs a GPU")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_compute_dtype=torch.float16, bnb_4bit_use_double_quant=True,
            bnb_4bit_quant_type="nf4",
        )  # fmt: skip
    if device.startswith("cuda"):
        kwargs["device_map"] = {"": device}
    say(f"loading {source.model} on {device}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source.model), trust_remote_code=True)
        model = AutoModelForCausalLM.from_pretrained(str(source.model), **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load {source.model}: {exc}") from exc
    loaded = LoadedModel(model, tokenizer, source, device)
    if source.kind is SourceKind.ADAPTER:
        with importing_transformers():
            from peft import PeftModel

        say(f"loading adapter {source.adapter}")
        loaded.model = PeftModel.from_pretrained(model, str(source.adapter), adapter_name="adapter")
        loaded.adapters.append("adapter")
    if source.kind is SourceKind.LLAVA:
        from engine.chat import llava

        say(f"loading LLaVA parts from {source.llava}")
        loaded.llava = llava.load_llava(model, source.visual_encoder, source.llava, kwargs["torch_dtype"], device)
        loaded.model = loaded.llava.llm
    loaded.model.eval()
    loaded.decoder = ready_decoder(loaded.model, options.decoder, say)
    return loaded


def ready_decoder(model, mode: str, say: Callable[[str], None]):
    """The decoder, warmed up; when torch.compile fails here (no compiler, no triton), CUDA graphs instead."""
    from engine.chat import decoding

    decoder = decoding.make_decoder(model, mode)
    if getattr(decoder, "mode", "eager") == "compile":
        say("compiling the decoder for speed (once per load; about 30 s on an H200)")
    try:
        decoding.warm_up(decoder)
    except Exception as exc:  # inductor/triton errors have no common base class
        if getattr(decoder, "mode", None) != "compile":
            raise
        say(f"torch.compile failed ({type(exc).__name__}: {str(exc)[:120]}); using CUDA graphs")
        decoder = decoding.make_decoder(model, "graph")
        decoding.warm_up(decoder)
    return decoder
