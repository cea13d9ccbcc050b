"""What the compare screen's widgets are given of each run, and the colour each run is drawn in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.runs.events import Sample, TrainStep, Validation

RUN_COLOURS = ("primary", "accent", "success", "error", "secondary", "warning")  # theme variables, run by run


@dataclass(frozen=True, slots=True)
class ComparedRun:
    """One run of those compared: its short name, its status word and what was read of it (lists that only grow)."""

    name: str
    state: str
    steps: Sequence[TrainStep]
    validations: Sequence[Validation]
    samples: Sequence[Sample]


def run_colour(index: int) -> str:
    """The theme variable the `index`-th compared run is drawn in."""
    return RUN_COLOURS[index % len(RUN_COLOURS)]


def no_data(run: ComparedRun) -> str:
    """What stands in the place of a run that has nothing to show: 'no data (damaged)'."""
    return f"no data ({run.state})"
