"""The run view's curves fed from step columns (RunState.steps): numpy over arrays, no TrainStep object per step."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.runs.events import TrainStep, TrainSteps
from engine.runs.logparse.columns import BIT, StepColumns
from tui.widgets.curves import METRICS, VAL, Curves, Points, RunSeries


class ColumnSeries(RunSeries):
    """A RunSeries that keeps its train steps as a StepColumns of its own: a batch is copied array by array, and a
    field's points are the columns' curve (the same branch rule: a step at or before the one before it starts a new
    branch, the steps and validations from its iteration on go)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows = StepColumns()
        self.steps: dict[int, None] = {}  # the current branch's iterations, in order (Curves.iterations)

    def add_steps(self, steps: Sequence[TrainStep]) -> None:
        """Take new steps in log order: a TrainSteps batch of a StepColumns as arrays, anything else one by one."""
        first = len(self.rows)
        if isinstance(steps, TrainSteps) and isinstance(steps.columns, StepColumns):
            self.rows.extend(steps.columns, steps.start, steps.stop)
        else:
            for step in steps:
                self.rows.append(step)
        if len(self.rows) > first:
            self._took(first)

    def _took(self, first: int) -> None:
        """Note rows `first:` (their iterations, metrics and memory; a branch drops what it left)."""
        held, cut = self.steps, None
        last = next(reversed(held)) if held else None
        for it in self.rows.iters[first:]:
            if last is not None and it <= last:
                held = {kept: None for kept in held if kept < it}
                cut = it if cut is None else min(cut, it)
            held[it] = None
            last = it
        self.steps = held
        if cut is not None:
            self.validations = {it: kept for it, kept in self.validations.items() if it < cut}
            self._val_names = {VAL + n: None for m in self.validations.values() for n in m}
            self._columns.clear()  # the points are the columns' curve again when next asked
            self._present = {m for m in METRICS if len(self.rows.curve(m)[0])}
            self.peak_memory = _peak(self.rows.curve("memory")[1], None)
            return
        bits = np.frombuffer(self.rows.present, np.uint16)[first:]
        iters = np.frombuffer(self.rows.iters, np.int64)[first:]
        seen = int(np.bitwise_or.reduce(bits))
        self._present.update(m for m in METRICS if seen & BIT[m])
        memory = np.frombuffer(self.rows.floats["memory"], np.float64)[first:]
        self.peak_memory = _peak(memory[(bits & BIT["memory"]) != 0], self.peak_memory)
        for metric, (xs, ys) in self._columns.items():  # the lists Curves holds grow in place
            has = (bits & BIT[metric]) != 0
            xs.extend(iters[has].tolist())
            ys.extend(np.frombuffer(self.rows.floats[metric], np.float64)[first:][has].tolist())

    def points(self, metric: str) -> Points:
        """Iterations and values of `metric` in iteration order (a train field's lists are kept: not to be changed)."""
        if metric.startswith(VAL):
            return super().points(metric)
        if metric not in self._columns:
            xs, ys = self.rows.curve(metric)
            self._columns[metric] = (xs.tolist(), ys.tolist())
        return self._columns[metric]


def _peak(memory: np.ndarray, peak: float | None) -> float | None:
    """The highest finite value of `memory` and `peak` (at least 0, as RunSeries counts it), None if there is none."""
    finite = memory[np.isfinite(memory)]
    return max(float(finite.max()), peak or 0.0) if len(finite) else peak


class RunCurves(Curves):
    """The run view's curves: the series kept in columns."""

    SERIES = ColumnSeries
