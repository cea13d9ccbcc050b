"""What the app asks of its screens, as protocols it checks with isinstance: new run figures, GPU readings, palette entries."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from textual.app import SystemCommand

    from engine.runs.events import Event
    from tui.app import RunRecord
    from tui.messages import GpuUpdate


@runtime_checkable
class RunWatcher(Protocol):
    """A screen that shows runs: told of each run's new events and status."""

    def run_updated(self, rec: RunRecord, events: Sequence[Event]) -> None:
        """`rec` changed; `events` are its new events (already folded into `rec.state`)."""


@runtime_checkable
class GpuWatcher(Protocol):
    """A screen that shows GPUs: told of each new snapshot."""

    def gpu_updated(self, message: GpuUpdate) -> None:
        """A new GPU/host snapshot."""


@runtime_checkable
class HasCommands(Protocol):
    """A screen with its own command palette entries."""

    def commands(self) -> Iterable[SystemCommand]:
        """The screen's palette entries."""
