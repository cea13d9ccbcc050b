"""Several runs' curves on one chart: one colour per run, aligned by global iteration, with a legend of their names."""

from __future__ import annotations

import math
from collections.abc import Sequence

from textual.app import ComposeResult
from textual.content import Content
from textual.widgets import Static
from textual_plotext import PlotextPlot

from engine.runs.watch import RunStatus
from tui.widgets.compared import ComparedRun, no_data, run_colour
from tui.widgets.curves import METRICS, MUTED, NOT_FINITE, Curves, RunSeries, metric_label, metric_value, rgb


class CompareChart(Curves):
    """The runs' values of one metric (any a run has: train fields, validation metrics); `m` cycles it, `l` log y."""

    EMPTY = "No training steps in these runs yet."
    DEFAULT_CSS = """
    CompareChart > #compare-legend {
        height: auto;
        max-height: 5;  # then eight runs' names still show at 80 columns
        padding: 0 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._runs: list[ComparedRun] = []
        self._each: list[RunSeries] = []
        self._fed: list[tuple[int, int]] = []  # steps and validations of each run taken so far

    def compose(self) -> ComposeResult:
        """Summary line, legend, plot."""
        yield Static(id="curves-summary", markup=False)
        yield Static(id="compare-legend", markup=False)
        yield PlotextPlot(id="curves-plot")

    def show(self, runs: Sequence[ComparedRun]) -> None:
        """Take what is new in each run (the same runs, in the same order, each time) and redraw once if any."""
        changed = [(r.name, r.state) for r in runs] != [(r.name, r.state) for r in self._runs]
        for index, run in enumerate(runs):
            if index == len(self._each):
                self._each.append(RunSeries())
                self._fed.append((0, 0))
            steps, validations = self._fed[index]
            new_steps, new_validations = run.steps[steps:], run.validations[validations:]
            self._each[index].add_steps(new_steps)
            self._each[index].add_validations(new_validations)
            self._fed[index] = (len(run.steps), len(run.validations))
            changed = changed or bool(new_steps or new_validations)
        self._runs = list(runs)
        if changed:
            self._data_came()

    @property
    def metrics(self) -> list[str]:
        """Every metric some run has: train fields in display order, then validation metrics as they came."""
        names = dict.fromkeys(m for series in self._each for m in series.metrics)
        return [m for m in METRICS if m in names] + [m for m in names if m not in METRICS]

    def _lines(self, metric: str):
        """Each run's points of `metric`, in its colour."""
        return [(series.points(metric), rgb(self.app, run_colour(i))) for i, series in enumerate(self._each)]

    def _replot(self) -> None:
        """The plot and summary, and the legend under them."""
        super()._replot()
        lines = self._lines(self.metric) if self.metric else [(([], []), None)] * len(self._runs)
        self.query_one("#compare-legend", Static).update(self._legend(lines))

    def _summary(self, present: list[str], lines, hidden: int) -> Content:
        """'loss 1/3  log scale': each run's figures are in the legend."""
        return Content.assemble(*self._head(present), ("  by iteration", MUTED), *self._scale_note(hidden))

    def _legend(self, lines) -> Content:
        """'■ name 1.2345' per run in its colour: its last value of the metric (and its state unless finished: a curve
        that stops early is a failed or stopped run, a running one grows), or why it has none."""
        parts: list[str | tuple[str, str]] = []
        for index, (run, ((_, ys), _)) in enumerate(zip(self._runs, lines)):
            parts += ["  " if parts else "", ("■ ", f"${run_colour(index)}"), (run.name, "bold")]
            if ys:
                parts.append((f" {metric_value(self.metric, ys[-1])}", "" if math.isfinite(ys[-1]) else NOT_FINITE))
                parts += [(f" {run.state}", MUTED)] if run.state != RunStatus.FINISHED else []
            elif run.steps or run.validations:
                parts.append((f" no {metric_label(self.metric)}" if self.metric else " no steps yet", MUTED))
            else:
                parts.append((f" {no_data(run)}", MUTED))
        return Content.assemble(*parts)
