"""Messages the watcher workers post to the app; handlers on the UI thread own all state."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:  # the engine loads in the watcher threads, after the first frame
    from engine.runs.checkpoints import Checkpoint
    from engine.runs.events import Event
    from engine.gpu import GpuReading, Snapshot
    from engine.runs.watch import Status


class RunUpdate(Message, bubble=False):
    """New events of one run (all of them on the first poll), its status and checkpoints."""

    def __init__(self, work_dir: Path, events: list[Event], status: Status, checkpoints: list[Checkpoint]) -> None:
        super().__init__()
        self.work_dir = work_dir
        self.events = events
        self.status = status
        self.checkpoints = checkpoints


class GpuUpdate(Message, bubble=False):
    """A GPU/host snapshot; a newer one replaces one still queued."""

    def __init__(
        self, snapshot: Snapshot, history: dict[int, Sequence[GpuReading]], run_of_pid: dict[int, str]
    ) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.history = history
        self.run_of_pid = run_of_pid

    def can_replace(self, message: Message) -> bool:
        """Only the newest snapshot matters."""
        return isinstance(message, GpuUpdate)
