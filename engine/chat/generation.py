"""One answer generated token by token: incremental detokenisation, stop words, cancel, speed figures."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from enum import StrEnum

from engine.chat.decoding import ContextFull, Sampling, choose


class StopReason(StrEnum):
    """Why an answer ended: a stop word or EOS, the token budget, or the user."""

    STOP = "stop"
    LENGTH = "length"
    CANCELLED = "cancelled"


class TextStream:
    """Turns token ids into text pieces as they come, holding back what could still become a stop word."""

    def __init__(self, tokenizer, stop_words: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stop_words = tuple(w for w in stop_words if w)
        self.ids: list[int] = []
        self.text = ""  # everything emitted so far
        self.stopped = False
        self._prefix = 0
        self._read = 0
        self._pending = ""

    def _decoded(self, token: int) -> str:
        """The new text that `token` completes (empty while a multi-byte character is unfinished)."""
        self.ids.append(token)
        before = self.tokenizer.decode(self.ids[self._prefix : self._read], skip_special_tokens=False)
        after = self.tokenizer.decode(self.ids[self._prefix :], skip_special_tokens=False)
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self.ids)
        return after[len(before) :]

    def push(self, token: int) -> str:
        """Take one token id; the text that can be shown now (empty when held back or after a stop word)."""
        if self.stopped:
            return ""
        self._pending += self._decoded(token)
        hits = [self._pending.find(w) for w in self.stop_words if w in self._pending]
        if hits:
            self.stopped = True
            return self._emit(self._pending[: min(hits)])
        keep = max((n for w in self.stop_words for n in range(1, len(w)) if self._pending.endswith(w[:n])), default=0)
        return self._emit(self._pending[: len(self._pending) - keep], rest=self._pending[len(self._pending) - keep :])

    def flush(self) -> str:
        """The held-back text, at the end of an answer that did not stop on a stop word."""
        return "" if self.stopped else self._emit(self._pending)

    def _emit(self, piece: str, rest: str = "") -> str:
        self._pending = rest
        self.text += piece
        return piece


class Generation:
    """Iterate for the answer's text pieces; `reason`, `tokens` and the timings are set when it ends."""

    def __init__(
        self, decoder, tokenizer, prompt: dict, sampling: Sampling, stop_words: Sequence[str] = (),
        eos_ids: Sequence[int] = (), cancel: threading.Event | None = None,
    ) -> None:  # fmt: skip
        self.decoder = decoder
        self.stream = TextStream(tokenizer, stop_words)
        self.prompt = prompt
        self.sampling = sampling
        self.eos_ids = frozenset(eos_ids)
        self.cancel = cancel or threading.Event()
        self.reason: StopReason | None = None  # set when the answer ends
        self.tokens = 0
        self.first_token_s: float | None = None
        self.started: float | None = None  # perf_counter() when generation began
        self.elapsed_s = 0.0

    @property
    def text(self) -> str:
        """The answer so far."""
        return self.stream.text

    @property
    def tokens_per_s(self) -> float | None:
        """Decoding speed after the first token."""
        decode_s = self.elapsed_s - (self.first_token_s or 0.0)
        return (self.tokens - 1) / decode_s if self.tokens > 1 and decode_s > 0 else None

    def _prompt_length(self) -> int:
        tensor = self.prompt.get("input_ids")
        return (tensor if tensor is not None else self.prompt["inputs_embeds"]).shape[1]

    def _token_ids(self, decoder, budget: int) -> Iterator[int]:
        """Token ids as they are chosen; on a GPU up to `decoder.depth` steps are queued while one is read.

        Greedy decoding without a repetition penalty asks the decoder itself for the argmax (a graph decoder chooses
        inside its captured step); each id reaches the host through pinned memory, read when its step is done.
        """
        import torch

        logits = decoder.prefill(**self.prompt)
        cuda = logits.device.type == "cuda"
        generator = torch.Generator(device=logits.device).manual_seed(self.sampling.seed)
        seen = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
        ids = self.prompt.get("input_ids")
        if ids is not None:
            seen[ids[0][ids[0] >= 0]] = True
        greedy = self.sampling.temperature <= 0 and self.sampling.repetition_penalty == 1.0
        token = choose(logits, seen, self.sampling, generator)
        depth = decoder.depth if cuda else 1
        host = torch.empty(depth, dtype=torch.long, pin_memory=cuda)
        events = [torch.cuda.Event() for _ in range(depth)] if cuda else []
        pending: deque[int] = deque()  # host slots whose copy is queued, oldest first
        for n in range(budget):
            slot = n % depth
            host[slot : slot + 1].copy_(token.view(1), non_blocking=cuda)
            if cuda:
                events[slot].record()
            pending.append(slot)
            if n + 1 < budget:
                if greedy:
                    token = decoder.greedy(token)
                else:
                    seen.index_fill_(0, token.view(1), True)
                    token = choose(decoder.step(token), seen, self.sampling, generator)
            while pending and (len(pending) >= depth or n + 1 == budget or not cuda or events[pending[0]].query()):
                slot = pending.popleft()
                if cuda:
                    events[slot].synchronize()
                yield int(host[slot])

    def __iter__(self) -> Iterator[str]:
        with self.decoder.answering() as decoder:
            yield from self._answer(decoder)

    def _answer(self, decoder) -> Iterator[str]:
        import torch

        length = self._prompt_length()
        budget = min(self.sampling.max_new_tokens, decoder.capacity - length)
        if budget < 1:
            raise ContextFull(
                f"the conversation ({length} tokens) fills the model's {decoder.capacity} positions: "
                "reset the chat to go on"
            )
        start = self.started = time.perf_counter()
        reason = StopReason.LENGTH
        for token_id in torch.inference_mode()(self._token_ids)(decoder, budget):
            self.tokens += 1
            if self.first_token_s is None:
                self.first_token_s = time.perf_counter() - start
            if token_id in self.eos_ids:
                reason = StopReason.STOP
                break
            piece = self.stream.push(token_id)
            if piece:
                yield piece
            if self.stream.stopped:
                reason = StopReason.STOP
                break
            if self.cancel.is_set():
                reason = StopReason.CANCELLED
                break
        self.elapsed_s = time.perf_counter() - start
        tail = self.stream.flush()
        if tail:
            yield tail
        self.reason = reason
