"""Messages the worker threads post to the UI thread, whose handlers own all state: runs, GPUs, a run's log, chat."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:  # the engine loads in the worker threads, after the first frame
    from engine.chat.device import DevicePlan
    from engine.chat.models import LoadedModel
    from engine.chat.session import Exchange
    from engine.gpu import GpuReading, Snapshot
    from engine.runs.checkpoints import Checkpoint
    from engine.runs.events import Event
    from engine.runs.watch import Status


@dataclass
class RunUpdate(Message, bubble=False):
    """New events of one run (all of them on the first poll; train steps in TrainSteps batches), its status and
    checkpoints."""

    work_dir: Path
    events: list[Event]
    status: Status
    checkpoints: list[Checkpoint]


@dataclass
class GpuUpdate(Message, bubble=False):
    """A GPU/host snapshot; a newer one replaces one still queued."""

    snapshot: Snapshot
    history: dict[int, Sequence[GpuReading]]
    run_of_pid: dict[int, str]

    def can_replace(self, message: Message) -> bool:
        """Only the newest snapshot matters."""
        return isinstance(message, GpuUpdate)


@dataclass
class LogText(Message, bubble=False):
    """New text of a run's log file (every piece counts: none replaces another)."""

    text: str


@dataclass
class ChatStatus(Message, bubble=False):
    """A line for the chat's status bar (loading steps, errors)."""

    text: str
    error: bool = False


@dataclass
class ModelReady(Message, bubble=False):
    """The chat's model is loaded."""

    loaded: LoadedModel


@dataclass
class NeedsDevice(Message, bubble=False):
    """The chosen GPU lacks memory: the plan says why and what else could work."""

    plan: DevicePlan


@dataclass
class ChatDelta(Message, bubble=False):
    """New answer text for one column, with the token count so far (the text adds up: none replaces another)."""

    column: int
    text: str
    tokens: int
    elapsed_s: float


@dataclass
class ChatDone(Message, bubble=False):
    """One column's answer ended (`exchange`) or failed (`error`)."""

    column: int
    exchange: Exchange | None
    error: str | None = None


@dataclass
class ChatIdle(Message, bubble=False):
    """Every column has answered: the prompt is free again."""
