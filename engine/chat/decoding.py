"""Token-by-token decoding of a Hugging Face causal LM: an eager loop, and a static-cache compiled one for CUDA."""

from __future__ import annotations

from dataclasses import dataclass

from engine.chat import kv_cache
from engine.errors import ChatError

# Positions the static cache holds: 4096 is ~400 MB for a 1.8B model with 8 KV heads in fp16.
STATIC_CAPACITY = 4096


class ContextFull(ChatError):
    """The prompt and the answer would not fit in the model's context."""


@dataclass(frozen=True, slots=True)
class Sampling:
    """Sampling settings, with `xtuner chat`'s defaults; temperature 0 means greedy."""

    temperature: float = 0.1
    top_p: float = 0.75
    top_k: int = 40
    max_new_tokens: int = 512
    repetition_penalty: float = 1.0
    seed: int = 0

    def problems(self) -> list[str]:
        """What is out of range, as sentences (empty when all is well)."""
        found = []
        if not 0 <= self.temperature <= 100:
            found.append("temperature must be between 0 and 100")
        if not 0 < self.top_p <= 1:
            found.append("top-p must be above 0 and at most 1")
        if self.top_k < 0:
            found.append("top-k must be 0 (off) or more")
        if self.max_new_tokens < 1:
            found.append("max new tokens must be at least 1")
        if self.repetition_penalty <= 0:
            found.append("repetition penalty must be above 0")
        return found


def choose(logits, seen, sampling: Sampling, generator):
    """The next token id (a 1-element tensor) from last-position `logits` of shape (1, vocab)."""
    import torch

    logits = logits.float()
    if sampling.repetition_penalty != 1.0:
        penalised = torch.where(logits > 0, logits / sampling.repetition_penalty, logits * sampling.repetition_penalty)
        logits = torch.where(seen, penalised, logits)
    if sampling.temperature <= 0:
        return logits.argmax(-1)
    logits = logits / sampling.temperature
    if 0 < sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        ordered, order = logits.sort(descending=True)
        probs = ordered.softmax(-1)
        drop = probs.cumsum(-1) - probs > sampling.top_p
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[..., 0]


def context_length(model) -> int:
    """How many positions the model takes (its config's max_position_embeddings), 4096 when unknown."""
    return int(getattr(model.config, "max_position_embeddings", 0) or 4096)


class EagerDecoder:
    """Plain forward calls with a growing KV cache: what HF `generate` does, with fewer copies per token (kv_cache)."""

    def __init__(self, model) -> None:
        kv_cache.use_grouped_attention(model)
        self.model = model
        self.capacity = context_length(model)
        self.key: str | None = None  # unused here: every call runs the model as it is
        self._cache = None
        self._length = 0

    def prefill(self, input_ids=None, inputs_embeds=None):
        """Run the prompt; the last position's logits."""
        self._cache = kv_cache.growing_cache()
        out = self.model(
            input_ids=input_ids, inputs_embeds=inputs_embeds, past_key_values=self._cache, use_cache=True,
            num_logits_to_keep=1,
        )  # fmt: skip
        self._length = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        return out.logits[:, -1]

    def step(self, token):
        """Feed one token id; the logits for the one after it."""
        out = self.model(input_ids=token.view(1, 1), past_key_values=self._cache, use_cache=True)
        self._length += 1
        return out.logits[:, -1]


class StaticDecoder:
    """A fixed-size KV cache and a one-token step replayed as a CUDA graph: the fast path on a GPU.

    mode "graph" captures the eager step once per variant (`key`: an adapter switched on or off changes the
    kernels); mode "compile" hands it to torch.compile's reduce-overhead mode instead.
    """

    def __init__(self, model, mode: str = "graph", capacity: int | None = None) -> None:
        import torch
        from transformers import StaticCache

        self.model = model
        self.mode = mode
        self.capacity = min(capacity or STATIC_CAPACITY, context_length(model))
        weights = next(model.parameters())
        self._cache = StaticCache(
            config=model.config, max_batch_size=1, max_cache_len=self.capacity, device=weights.device,
            dtype=weights.dtype,
        )  # fmt: skip
        self._device = weights.device
        self._token = torch.zeros((1, 1), dtype=torch.long, device=self._device)
        self._position = torch.zeros(1, dtype=torch.long, device=self._device)
        self._graphs: dict = {}  # key -> (CUDAGraph, its output logits)
        self.key: str | None = None
        if mode == "compile":
            self._compiled = torch.compile(self._forward_one, mode="reduce-overhead", fullgraph=True)

    def _forward_one(self, token, position):
        return self.model(input_ids=token, past_key_values=self._cache, cache_position=position, use_cache=True).logits[
            :, -1
        ]

    def prefill(self, input_ids=None, inputs_embeds=None):
        """Run the prompt eagerly into the reset cache; the last position's logits."""
        import torch

        length = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        self._cache.reset()
        out = self.model(
            input_ids=input_ids, inputs_embeds=inputs_embeds, past_key_values=self._cache, use_cache=True,
            cache_position=torch.arange(length, device=self._device), num_logits_to_keep=1,
        )  # fmt: skip
        self._position.fill_(length)
        return out.logits[:, -1]

    def _graph(self):
        """The captured step for the current key (captured on first use: warm-up on a side stream, then record)."""
        import torch

        if self.key not in self._graphs:
            saved = self._position.clone()
            side = torch.cuda.Stream(self._device)
            side.wait_stream(torch.cuda.current_stream(self._device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._forward_one(self._token, self._position)
            torch.cuda.current_stream(self._device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                logits = self._forward_one(self._token, self._position)
            self._graphs[self.key] = (graph, logits)
            self._position.copy_(saved)
        return self._graphs[self.key]

    def step(self, token):
        """Feed one token id (a GPU tensor, no sync); the logits for the one after it."""
        import torch

        self._token.copy_(token.view(1, 1))
        if self.mode == "compile":
            torch.compiler.cudagraph_mark_step_begin()
            logits = self._compiled(self._token, self._position).clone()
        else:
            graph, output = self._graph()
            graph.replay()
            logits = output
        self._position.add_(1)
        return logits


DECODERS = ("auto", "eager", "graph", "compile")


def make_decoder(model, mode: str = "auto"):
    """The decoder for `mode`; "auto" is torch.compile on CUDA (fastest once warm), eager elsewhere."""
    if mode not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)} (not {mode!r})")
    if mode == "auto":
        mode = "compile" if next(model.parameters()).device.type == "cuda" else "eager"
    return EagerDecoder(model) if mode == "eager" else StaticDecoder(model, mode)


def warm_up(decoder, steps: int = 4) -> None:
    """Run a few steps so that compiling or graph capture happens now, not in the first answer."""
    import torch

    if isinstance(decoder, EagerDecoder):
        return
    with torch.inference_mode():
        logits = decoder.prefill(input_ids=torch.zeros((1, 1), dtype=torch.long, device=decoder._device))
        for _ in range(steps):
            logits = decoder.step(logits.argmax(-1))
