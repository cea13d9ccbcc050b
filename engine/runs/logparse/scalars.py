"""`vis_data/scalars.json`: one JSON object per logged train iteration, and one per validation without `iter`."""

from __future__ import annotations

import contextlib
import json

from engine.runs.events import Event, TrainStep, Validation
from engine.runs.logparse.lines import LineSplitter
from engine.runs.logparse.steps import FLOAT_KEYS

_COUNTERS = ("iter", "step", "epoch")


def _numbers(record: dict) -> dict[str, float]:
    """The record's numeric values other than its counters."""
    values: dict[str, float] = {}
    for key, value in record.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in _COUNTERS:
            with contextlib.suppress(OverflowError):  # an int too large for a float
                values[key] = float(value)
    return values


def _whole(value: object) -> int | None:
    """The value when it is an int (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class ScalarsParser:
    """Parser of `vis_data/scalars.json` text into TrainSteps and Validations."""

    def __init__(self) -> None:
        self._lines = LineSplitter()
        self._last: TrainStep | None = None  # the newest train record

    def feed(self, text: str) -> list[Event]:
        """Events of every line completed by `text`."""
        return [event for line in self._lines.feed(text) if (event := self._event(line)) is not None]

    def flush(self) -> list[Event]:
        """The last line when it lacks its newline."""
        return [event for line in self._lines.flush() if (event := self._event(line)) is not None]

    def _event(self, line: str) -> Event | None:
        """A TrainStep (a record with `iter`), a Validation (`step` but no `iter`), or None."""
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            return None
        if not isinstance(record, dict):
            return None
        values = _numbers(record)
        it, step, epoch = (_whole(record.get(key)) for key in _COUNTERS)
        if it is not None:
            fields = {k: v for k, v in values.items() if k in FLOAT_KEYS}
            extra = {k: v for k, v in values.items() if k not in FLOAT_KEYS}
            self._last = TrainStep(it, extra=extra, epoch=epoch, **fields)
            return self._last
        if step is None or not values:
            return None
        return self._validation(step, values)

    def _validation(self, step: int, metrics: dict[str, float]) -> Validation:
        """A validation record: its `step` is an epoch when the train records count epochs and it is theirs, else an iteration."""
        last = self._last
        if last is not None and last.epoch is not None and step == last.epoch:
            return Validation(last.iter, metrics, step)
        return Validation(step, metrics, last.epoch if last is not None else None)
