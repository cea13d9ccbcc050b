"""A chat session: history, template, system prompt, sampling and images, answering through a loaded model."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.chat.decoding import Sampling, make_decoder
from engine.chat.generation import Generation, StopReason
from engine.chat.models import LoadedModel
from engine.xtuner.templates import Template, Turn, render

IMAGE_TOKEN = "<image>"  # xtuner.utils.DEFAULT_IMAGE_TOKEN
IMAGE_TOKEN_INDEX = -200  # xtuner.utils.IMAGE_TOKEN_INDEX


@dataclass(frozen=True, slots=True)
class Exchange:
    """One finished exchange as shown and saved: the turn, the image attached to it, and how it ended."""

    turn: Turn
    image: str | None = None
    reason: StopReason | None = None
    tokens: int = 0
    tokens_per_s: float | None = None


class ChatSession:
    """Multi-turn chat with one model (and one variant of it: as loaded, base, or a named adapter)."""

    def __init__(
        self, loaded: LoadedModel, template: Template | None, system: str = "", sampling: Sampling | None = None,
        variant: str | None = None,
    ) -> None:  # fmt: skip
        self.loaded = loaded
        self.template = template
        self.system = system
        self.sampling = sampling or Sampling()
        self.variant = variant
        self.exchanges: list[Exchange] = []
        self.image: str | None = None  # attached to the next question (LLaVA)
        self._features: dict[tuple, object] = {}
        self._asked_features: dict[str, object] = {}  # path -> the features it was asked with
        self.last: Generation | None = None
        self._asked: tuple[str, str | None] = ("", None)

    def reset(self) -> None:
        """Forget the history (the model stays loaded)."""
        self.exchanges.clear()

    def stop_words(self) -> tuple[str, ...]:
        """The template's stop words."""
        return self.template.stop_words if self.template else ()

    def _turns(self, prompt: str, image: str | None) -> tuple[list[Turn], str]:
        history = [
            Turn(f"{IMAGE_TOKEN}\n{e.turn.prompt}" if e.image else e.turn.prompt, e.turn.answer) for e in self.exchanges
        ]
        return history, (f"{IMAGE_TOKEN}\n{prompt}" if image else prompt)

    def _image_features(self, path: str, earlier: bool = False):
        """Projected features of an image, cached by path and modification time; an earlier turn's as it was asked."""
        from engine.chat import images, llava

        if earlier and path in self._asked_features:
            return self._asked_features[path]  # the file may have moved or changed since: the history stays as it was
        info = images.check_image(path)
        key = (str(info.path), Path(info.path).stat().st_mtime_ns)
        if key not in self._features:
            self._features[key] = llava.image_features(self.loaded.llava, images.load_rgb(info))
        self._asked_features[path] = self._features[key]
        return self._features[key]

    def _inputs(self, text: str, images_in_order: list[str], earlier: int = 0) -> dict:
        """The prefill inputs: token ids, or embeddings with the images' features spliced in (LLaVA).

        The first `earlier` images belong to earlier turns.
        """
        import torch

        tok = self.loaded.tokenizer
        device = self.loaded.device
        if not images_in_order:
            return {"input_ids": tok(text, return_tensors="pt").input_ids.to(device)}
        from engine.chat import llava

        ids: list[int] = []
        for index, chunk in enumerate(text.split(IMAGE_TOKEN)):
            if index:
                ids.append(IMAGE_TOKEN_INDEX)
            ids.extend(tok.encode(chunk, add_special_tokens=index == 0))
        features = torch.cat([self._image_features(p, n < earlier) for n, p in enumerate(images_in_order)])
        embeds = llava.multimodal_embeds(self.loaded.llava, ids, features)
        return {"inputs_embeds": embeds["inputs_embeds"]}

    def ask(self, prompt: str, cancel: threading.Event | None = None) -> Generation:
        """Start answering `prompt` (with the attached image, if any); iterate the result, then `record` it."""
        image = self.image if self.loaded.llava is not None else None
        history, current = self._turns(prompt, image)
        tok = self.loaded.tokenizer
        text = render(self.template, history, current, self.system, tok.eos_token or "", tok.bos_token or "")
        earlier = [e.image for e in self.exchanges if e.image]
        if self.loaded.decoder is None:
            self.loaded.decoder = make_decoder(self.loaded.model)
        inputs = self._inputs(text, earlier + ([image] if image else []), len(earlier))
        self.last = Generation(
            self.loaded.decoder, self.loaded.tokenizer, inputs, self.sampling, self.stop_words(), self.loaded.eos_ids(),
            cancel,
        )  # fmt: skip
        self._asked = (prompt, image)
        return self.last

    def record(self, generation: Generation) -> Exchange:
        """Keep a finished (or cancelled) answer in the history."""
        prompt, image = self._asked
        exchange = Exchange(
            Turn(prompt, generation.text), image, generation.reason, generation.tokens, generation.tokens_per_s
        )
        self.exchanges.append(exchange)
        if image:
            self.image = None
        return exchange

    def reply(self, prompt: str, cancel: threading.Event | None = None) -> Iterator[str]:
        """Answer `prompt` piece by piece, as this session's variant, and keep it in the history."""
        generation = self.ask(prompt, cancel)
        with self.loaded.variant(self.variant):
            try:
                yield from generation
            finally:
                if generation.reason is not None:
                    self.record(generation)
