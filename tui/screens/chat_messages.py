"""Messages the chat screen's workers post: loading steps, the loaded model, streamed text, the end of answers."""

from __future__ import annotations

from textual.message import Message

from engine.chat.session import Exchange
from engine.chat.models import LoadedModel


class ChatStatus(Message, bubble=False):
    """A line for the status bar (loading steps, errors)."""

    def __init__(self, text: str, error: bool = False) -> None:
        super().__init__()
        self.text = text
        self.error = error


class ModelReady(Message, bubble=False):
    """The model is loaded."""

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        self.loaded = loaded


class NeedsDevice(Message, bubble=False):
    """The chosen GPU lacks memory: the plan says why and what else could work."""

    def __init__(self, plan) -> None:
        super().__init__()
        self.plan = plan


class ChatDelta(Message, bubble=False):
    """New answer text for one column, with the token count so far."""

    def __init__(self, column: int, text: str, tokens: int, elapsed_s: float) -> None:
        super().__init__()
        self.column = column
        self.text = text
        self.tokens = tokens
        self.elapsed_s = elapsed_s


class ChatDone(Message, bubble=False):
    """One column's answer ended (`exchange`) or failed (`error`)."""

    def __init__(self, column: int, exchange: Exchange | None, error: str | None = None) -> None:
        super().__init__()
        self.column = column
        self.exchange = exchange
        self.error = error


class ChatIdle(Message, bubble=False):
    """Every column has answered: the prompt is free again."""
