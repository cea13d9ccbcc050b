"""One column of a chat: questions, answers streaming in, and how each answer ended."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from textual.containers import VerticalScroll
from textual.widgets import Static

from engine.chat.generation import StopReason

if TYPE_CHECKING:
    from engine.chat.session import Exchange

ENDINGS = {StopReason.LENGTH: "cut at max new tokens", StopReason.CANCELLED: "cancelled"}  # a stop word says nothing


def ending_text(reason: StopReason | None, tokens: int, tokens_per_s: float | None) -> str:
    """The grey line under an answer: tokens, speed, and why it ended when not at a stop word."""
    parts = [f"{tokens} tokens"]
    if tokens_per_s:
        parts.append(f"{tokens_per_s:.0f} tok/s")
    if reason in ENDINGS:
        parts.append(ENDINGS[reason])
    return " · ".join(parts)


def update_text(static: Static, text: str) -> bool:
    """Replace a Static's text; lay the screen out again (screen-wide) only when its height changes, and say so."""
    static.update(text, layout=False)
    width, height = static.content_size
    if width and static.visual.get_height(static.styles, width) == height:
        return False
    static.refresh(layout=True)
    return True


class ChatColumn(VerticalScroll, can_focus=False):
    """A scrolling transcript for one model (or one variant of it); stays at the bottom while it grows."""

    DEFAULT_CSS = """
    ChatColumn { width: 1fr; height: 1fr; border: round $panel; padding: 0 1; }
    ChatColumn > .question { color: $accent; text-style: bold; margin-top: 1; }
    ChatColumn > .answer { color: $foreground; }
    ChatColumn > .meta { color: $foreground-muted; }
    ChatColumn > .error { color: $error; }
    ChatColumn > .hint { color: $foreground-muted; }
    """

    def __init__(self, title: str, hint: str = "", id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = title
        self.hint = hint
        self._answer: Static | None = None
        self._text = ""

    def on_mount(self) -> None:
        """Say what to do while the column is empty."""
        if self.hint:
            self.mount(Static(self.hint, classes="hint", markup=False))

    def _add(self, text: str, classes: str) -> Static:
        self.query(".hint").remove()
        line = Static(text, classes=classes, markup=False)
        self.mount(line)
        return line

    def _follow(self) -> None:
        """Keep the newest text in view unless the user scrolled up."""
        if self.max_scroll_y - self.scroll_y <= 2:
            self.call_after_refresh(self.scroll_end, animate=False)

    def ask(self, prompt: str, image: str | None = None) -> None:
        """Show a question and open an empty answer under it."""
        follow = self.max_scroll_y - self.scroll_y <= 2
        self._add(f"› {prompt}" + (f"  [image {Path(image).name}]" if image else ""), "question")
        self._text = ""
        self._answer = self._add("", "answer")
        if follow:
            self.call_after_refresh(self.scroll_end, animate=False)

    def extend(self, text: str) -> None:
        """Append streamed text to the open answer."""
        if self._answer is None:
            self._answer = self._add("", "answer")
        self._text += text
        if update_text(self._answer, self._text):
            self._follow()

    @property
    def answer_text(self) -> str:
        """The open (or last) answer's text so far."""
        return self._text

    def finish(self, reason: StopReason | None, tokens: int, tokens_per_s: float | None) -> None:
        """Close the open answer with its ending line."""
        self._add(ending_text(reason, tokens, tokens_per_s), "meta")
        self._answer = None
        self._follow()

    def fail(self, message: str) -> None:
        """Close the open answer with an error."""
        self._add(f"error: {message}", "error")
        self._answer = None
        self._follow()

    def note(self, message: str) -> None:
        """A grey line of information (reset, transcript opened...)."""
        self._add(message, "meta")
        self._follow()

    def show_exchanges(self, exchanges: Iterable[Exchange]) -> None:
        """Replace the column's content with finished exchanges (a reopened transcript)."""
        self.remove_children()
        for exchange in exchanges:
            self.ask(exchange.turn.prompt, exchange.image)
            self.extend(exchange.turn.answer)
            self.finish(exchange.reason, exchange.tokens, exchange.tokens_per_s)
