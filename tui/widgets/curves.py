"""Training curves: one metric at a time over iterations (train steps' and validations'), with a summary line of its
last and best values; the series and the drawing are shared with the runs-compared chart."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.binding import Binding
from textual.color import Color
from textual.containers import Vertical
from textual.content import Content
from textual.geometry import Region
from textual.timer import Timer
from textual.widgets import Static
from textual_plotext import PlotextPlot

from engine.runs.events import TrainStep, Validation

METRICS = {  # TrainStep field: (label, value format)
    "loss": ("loss", "{:.4f}"),
    "lr": ("lr", "{:.3g}"),
    "grad_norm": ("grad norm", "{:.4g}"),
    "tokens_per_sec": ("tokens/s", "{:,.0f}"),
}
VAL = "val:"  # prefix of a validation metric's key ("val:accuracy/top1"): its names may be a train field's too
NOT_PLOTTED = {"time", "data_time", "eta"}  # a validation record's timings, not a metric of the model
TICKS = 5  # per axis
MUTED = "$foreground-muted"  # $text-muted does not resolve inside Content
NOT_FINITE = "bold $text-error"

Points = tuple[list[int], list[float]]


def metric_label(metric: str) -> str:
    """The words a metric is shown with: 'loss', 'accuracy/top1 (val)'."""
    return f"{metric.removeprefix(VAL)} (val)" if metric.startswith(VAL) else METRICS[metric][0]


def metric_value(metric: str, value: float) -> str:
    """A value of `metric` as shown."""
    return (METRICS[metric][1] if metric in METRICS else "{:.4g}").format(value)


class RunSeries:
    """One run's metrics by iteration on its current branch: its train steps' fields and its validations' metrics."""

    def __init__(self) -> None:
        self.steps: dict[int, TrainStep] = {}  # by iteration: a resume logs some iterations again
        self.validations: dict[int, dict[str, float]] = {}
        self._present: set[str] = set()
        self._val_names: dict[str, None] = {}  # validation metric keys in the order they first came
        self.peak_memory: float | None = None
        self._columns: dict[str, Points] = {}  # a train field's points, kept as steps come (built when first asked)

    @property
    def metrics(self) -> list[str]:
        """The metrics that have at least one value: train fields in display order, then validation metrics."""
        return [m for m in METRICS if m in self._present] + list(self._val_names)

    def add_steps(self, steps: Sequence[TrainStep]) -> None:
        """Take new training steps in log order. A step at or before the newest one held starts a new branch (a resume
        from an older checkpoint): the steps and validations from its iteration on are the old branch's, and go."""
        for step in steps:
            if self.steps and step.iter <= next(reversed(self.steps)):
                self.steps = {it: kept for it, kept in self.steps.items() if it < step.iter}
                self.validations = {it: kept for it, kept in self.validations.items() if it < step.iter}
                self._recount()
                self._columns.clear()
            self.steps[step.iter] = step  # the dict stays in iteration order
            self._count(step)
            for metric, (xs, ys) in self._columns.items():
                if (value := getattr(step, metric)) is not None:
                    xs.append(step.iter)
                    ys.append(value)

    def add_validations(self, validations: Sequence[Validation]) -> None:
        """Take new validation results; one without an iteration cannot be placed on the axis and is left out."""
        for validation in validations:
            if validation.iter is None:
                continue
            metrics = {k: v for k, v in validation.metrics.items() if k not in NOT_PLOTTED}
            self.validations.setdefault(validation.iter, {}).update(metrics)
            self._val_names.update((VAL + name, None) for name in metrics)

    def _count(self, step: TrainStep) -> None:
        """Note the metrics and the memory of one step held."""
        self._present.update(m for m in METRICS if getattr(step, m) is not None)
        if step.memory is not None and math.isfinite(step.memory):
            self.peak_memory = max(step.memory, self.peak_memory or 0.0)

    def _recount(self) -> None:
        """The metrics and the peak memory of what is held, again (some was dropped)."""
        self._present.clear()
        self.peak_memory = None
        for step in self.steps.values():
            self._count(step)
        self._val_names = {VAL + n: None for m in self.validations.values() for n in m}

    def points(self, metric: str) -> Points:
        """Iterations and values of `metric`, in iteration order (a train field's are the lists kept: not to be changed)."""
        if metric.startswith(VAL):
            name = metric.removeprefix(VAL)
            pairs = sorted((it, m[name]) for it, m in self.validations.items() if name in m)
            return [x for x, _ in pairs], [y for _, y in pairs]
        if metric not in self._columns:
            pairs = [(it, getattr(s, metric)) for it, s in self.steps.items() if getattr(s, metric) is not None]
            self._columns[metric] = ([x for x, _ in pairs], [y for _, y in pairs])
        return self._columns[metric]


def draw(plt, lines: Sequence[tuple[Points, tuple[int, int, int]]], log_scale: bool, columns: int) -> int:
    """Plot each line (points, colour) on one pair of axes with shared ticks, thinned to about two points per one of
    `columns` dot columns; NaN and infinite values are not drawn, nor values <= 0 on a log scale. Returns how many
    finite values the log scale hid."""
    plt.clear_figure()  # data, scale and the ticks set before
    drawn = []
    hidden = 0
    for (xs, ys), colour in lines:
        finite = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]  # a NaN or inf loss is named, not drawn
        shown = [(x, y) for x, y in finite if y > 0 or not log_scale]
        hidden += len(finite) - len(shown)
        if shown:
            drawn.append((shown, colour))
    if not drawn:  # plotext fails to build a log axis without data
        return hidden
    plt.yscale("log" if log_scale else "linear")
    for shown, colour in drawn:
        points = _thinned(shown, columns)
        marker = "braille" if len(points) > 1 else "dot"  # one point alone as a braille dot is hard to see
        plt.plot([x for x, _ in points], [y for _, y in points], marker=marker, color=colour)
    xs = [x for shown, _ in drawn for x, _ in shown]
    values = [y for shown, _ in drawn for _, y in shown]
    plt.xticks(_spread(min(xs), max(xs), log=False, whole=True))
    y_ticks = _spread(min(values), max(values), log=log_scale)
    plt.yticks(y_ticks, _labels(y_ticks))
    return hidden


def rgb(app, variable: str) -> tuple[int, int, int]:
    """A theme variable's colour as plotext takes it."""
    return Color.parse(app.theme_variables.get(variable, "#5f87d7")).rgb


class SummaryLine(Static):
    """A one-line Static whose update repaints only the cells from the first that changed to the last: a beat changes
    a number or two of the summary, not the line."""

    auto_links = False  # it holds none: styling links is a fifth of each beat's render of the line

    _shown: Content | None = None
    _span: Region | None = None  # what the update in progress repaints

    def update(self, content: Content, *, layout: bool = True) -> None:  # type: ignore[override]
        """Show `content`, repainting only what changed (nothing when nothing did)."""
        if self._shown is not None and (content.plain, content.spans) == (self._shown.plain, self._shown.spans):
            return
        old, self._shown = self._shown, content
        self._span = _changed_cells(old.plain, content.plain) if old is not None else None
        try:
            super().update(content, layout=layout)
        finally:
            self._span = None

    def refresh(self, *regions: Region, **kwargs) -> SummaryLine:
        """The cells the update in progress changed (all of them when only styles did), else as asked."""
        return super().refresh(*(regions or ([self._span] if self._span else [])), **kwargs)


class ChartBox(Vertical):
    """The plot's own box, blank behind it: Textual's compositor renders every widget whose parent's region meets the
    area a frame repaints, so inside Curves itself the plot would be rendered again on each beat for the summary
    line above it."""

    BLANK = True  # what it would draw is under the plot


class Curves(Vertical, can_focus=True):
    """A focusable plot of loss, lr, grad norm, tokens/s or a validation metric against iteration; `m` cycles the
    metric, `l` toggles log y. While data streams the chart is redrawn at most every REPLOT_S seconds (a full chart
    is ~8 kB to the terminal), the summary line each time; a metric, a line or a branch that is new is drawn at once."""

    REPLOT_S = 60.0
    SERIES = RunSeries
    BLANK = True  # its children cover it: a beat's frame, which renders it whole, has nothing of it to draw  # what holds the points (the run view's keeps them in columns: tui.widgets.column_series)

    BINDINGS = [
        Binding("m", "cycle_metric", "Metric"),
        Binding("l", "toggle_log", "Log scale"),
    ]

    EMPTY = "No training steps yet."
    DEFAULT_CSS = """
    Curves {
        height: 1fr;
    }
    Curves > #curves-summary {
        height: 1;
        padding: 0 1;
    }
    Curves > ChartBox {
        height: 1fr;
    }
    Curves:focus > #curves-summary {
        background: $primary-muted;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._series = self.SERIES()
        self.metric: str | None = None
        self.log_scale = False
        self._stale = False  # data arrived while the plot was off screen
        self._drawn: object = None  # what the chart was last built from: scale, theme, width, the points plotted
        self._drawn_at = -math.inf  # when a chart with points was last drawn (monotonic)
        self._tails: list[tuple[int, int, float] | None] | None = None  # each line's count and last point, drawn
        self._hidden = 0  # the finite values the log scale hid, drawn
        self._later: Timer | None = None  # the drawing put off while data streams
        self._streaming = False  # a drawing was put off: the summary says how often the chart is redrawn
        self._scanned: tuple = (None, 0, None, 0, None)  # the summary's list of values, counted: see _scan

    def compose(self) -> ComposeResult:
        """Summary line above the plot."""
        yield SummaryLine(id="curves-summary", markup=False)
        with ChartBox():
            yield PlotextPlot(id="curves-plot")

    def on_mount(self) -> None:
        """Draw the empty state; redraw in the new colours when the theme changes."""
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._replot())
        self._replot()

    @property
    def metrics(self) -> list[str]:
        """The metrics that have at least one value, in display order (validation metrics last)."""
        return self._series.metrics

    @property
    def iterations(self) -> list[int]:
        """The iterations of the train steps held (the current branch's), in order."""
        return list(self._series.steps)

    def add_steps(self, steps: Sequence[TrainStep]) -> None:
        """Take new training steps in log order and redraw once (a resume from an older checkpoint drops the branch
        it left, see RunSeries.add_steps)."""
        if steps:
            self._series.add_steps(steps)
            self._data_came()

    def add_validations(self, validations: Sequence[Validation]) -> None:
        """Take new validation results and redraw once: each metric is a curve of its own."""
        if validations:
            self._series.add_validations(validations)
            self._data_came()

    def _data_came(self) -> None:
        """Replot now if the plot is on screen, else when it next shows: plotting a hidden tab is wasted work."""
        if not self.is_mounted:
            return
        if not self.is_on_screen:
            self._stale = True
            return
        wait = self._drawn_at + self.REPLOT_S - time.monotonic()
        if wait <= 0 or self.metric not in self.metrics or not self._grows(self._lines(self.metric)):
            self._replot()
            return
        self._streaming = True
        self._show_summary()
        if self._later is None:
            self._later = self.set_timer(wait, self._later_came)

    def _later_came(self) -> None:
        """The drawing put off: draw it now if the plot is still on screen."""
        self._later = None
        self._data_came()

    def _grows(self, lines) -> bool:
        """Whether each line drawn with points only has new points after them, and none was empty: a stream."""
        if self._tails is None or len(lines) != len(self._tails):
            return False
        for ((xs, ys), _), tail in zip(lines, self._tails):
            # the same value object: a resume logging the last iteration again has another, a NaN is itself
            if tail is None or len(xs) < tail[0] or xs[tail[0] - 1] != tail[1] or ys[tail[0] - 1] is not tail[2]:
                return False
        return True

    def on_resize(self) -> None:
        """Thin the points again for the new width."""
        if self.is_mounted:
            self._replot()

    def on_show(self) -> None:
        """Draw what arrived while another tab was showing."""
        if self._stale:
            self._replot()

    def clear(self) -> None:
        """Forget every step and validation."""
        self._series = self.SERIES()
        self.metric = None
        self._streaming = False
        if self.is_mounted:
            self._replot()

    def action_cycle_metric(self) -> None:
        """Show the next metric that has data."""
        present = self.metrics
        if present:
            index = present.index(self.metric) + 1 if self.metric in present else 0
            self.metric = present[index % len(present)]
            self._replot()

    def action_toggle_log(self) -> None:
        """Switch the y axis between linear and log scale."""
        self.log_scale = not self.log_scale
        self._replot()

    def _replot(self) -> None:
        """Rebuild the plot data and the summary for the current metric and scale; the plot repaints only if what it
        plots (thinned to its width) changed."""
        self._stale = False
        if self._later is not None:
            self._later.stop()
            self._later = None
        present = self.metrics
        if self.metric not in present:
            self.metric = present[0] if present else None
        plot = self.query_one(PlotextPlot)
        summary = self.query_one("#curves-summary", Static)
        if self.metric is None:
            plot.plt.clear_figure()
            summary.update(Content.styled(self.EMPTY, MUTED), layout=False)
            self._tails, self._drawn_at, drawn = None, -math.inf, None
        else:
            lines = self._lines(self.metric)
            self._hidden = draw(plot.plt, lines, self.log_scale, plot.size.width or 80)
            summary.update(self._summary(present, lines, self._hidden), layout=False)  # one line always
            self._tails = [(len(xs), xs[-1], ys[-1]) if xs else None for (xs, ys), _ in lines]
            self._drawn_at = time.monotonic()
            monitor = plot.plt.monitor
            drawn = (self.log_scale, self.app.theme, plot.size, monitor.x, monitor.y, [c for _, c in lines])
        if drawn != self._drawn or drawn is None:
            self._drawn = drawn
            plot.refresh()

    def _show_summary(self) -> None:
        """The summary line alone, for the newest data (the chart is drawn later)."""
        summary = self.query_one("#curves-summary", Static)
        summary.update(self._summary(self.metrics, self._lines(self.metric), self._hidden), layout=False)

    def _lines(self, metric: str) -> list[tuple[Points, tuple[int, int, int]]]:
        """What to plot for `metric`: the run's points, in the theme's primary colour."""
        return [(self._series.points(metric), rgb(self.app, "primary"))]

    def _head(self, present: list[str]) -> list[str | tuple[str, str]]:
        """'loss 1/3': the metric shown, of how many."""
        return [
            (metric_label(self.metric), "bold $text-primary"),
            (f" {present.index(self.metric) + 1}/{len(present)}", MUTED),
        ]

    def _scale_note(self, hidden: int) -> list[str | tuple[str, str]]:
        """'log scale (n ≤ 0 not shown)' when the y axis is logarithmic."""
        if not self.log_scale:
            return []
        return [("  log scale" + (f" ({hidden} ≤ 0 not shown)" if hidden else ""), "$text-accent")]

    def _summary(self, present: list[str], lines, hidden: int) -> Content:
        """'loss 1/3  last …  min … @ iter  peak memory … MiB  log scale' for the current metric; a NaN or infinite
        value is shown as such, in the error colour, with how many are not drawn."""
        metric = self.metric
        (xs, ys), _ = lines[0]
        parts = self._head(present)
        if ys:
            parts += [("  last ", MUTED), (metric_value(metric, ys[-1]), "" if math.isfinite(ys[-1]) else NOT_FINITE)]
        low, finite, first = self._scan(ys)
        if low is not None:
            parts += [("  min ", MUTED), metric_value(metric, ys[low]), (f" @ {xs[low]}", MUTED)]
        if first is not None:
            parts.append((f"  {len(ys) - finite} not finite, from iter {xs[first]}", NOT_FINITE))
        if self._series.peak_memory is not None:
            parts += [("  peak memory ", MUTED), f"{self._series.peak_memory:.0f} MiB"]
        return Content.assemble(*parts, *self._scale_note(hidden), *self._lag_note())

    def _scan(self, ys: list[float]) -> tuple[int | None, int, int | None]:
        """The index of the first lowest finite value of `ys`, how many are finite and the index of the first that is
        not; counted on from where the last call stopped when `ys` is the same list, grown (a stream's)."""
        seen, counted, low, finite, first = self._scanned
        if seen is not ys or len(ys) < counted:
            counted, low, finite, first = 0, None, 0, None
        for index in range(counted, len(ys)):
            if math.isfinite(ys[index]):
                finite += 1
                low = index if low is None or ys[index] < ys[low] else low
            elif first is None:
                first = index
        self._scanned = (ys, len(ys), low, finite, first)
        return low, finite, first

    def _lag_note(self) -> list[str | tuple[str, str]]:
        """'↻ 60 s' (the chart's redraw interval) once a drawing was put off while data streams."""
        return [(f"  ↻ {self.REPLOT_S:.0f} s", MUTED)] if self._streaming else []


def _thinned(points: list[tuple[int, float]], columns: int) -> list[tuple[int, float]]:
    """At most about 2 * `columns` points (what `columns` dot columns can show): each bucket of neighbours keeps its
    lowest and highest, so spikes survive, and the last point is kept as it is."""
    size = -(-len(points) // max(1, columns))
    if size <= 1:
        return points
    out: list[tuple[int, float]] = []
    for start in range(0, len(points), size):
        bucket = points[start : start + size]
        low, high = min(bucket, key=lambda p: p[1]), max(bucket, key=lambda p: p[1])
        out.extend(sorted({low, high}))
    if out[-1] != points[-1]:
        out.append(points[-1])
    return out


def _changed_cells(old: str, new: str) -> Region:
    """The cells of a line from the first that differs between `old` and `new` to the last (to the end when the lengths
    differ: the rest moved); empty when the text is the same."""
    start = len(os.path.commonprefix([old, new]))
    if len(old) == len(new):
        end = cell_len(new[: len(new) - len(os.path.commonprefix([old[::-1], new[::-1]]))])
    else:
        end = max(cell_len(old), cell_len(new))
    return Region(cell_len(new[:start]), 0, max(0, end - cell_len(new[:start])), 1)


def _spread(low: float, high: float, log: bool, whole: bool = False) -> list[float]:
    """TICKS values from `low` to `high`, evenly or (log) geometrically spaced; `whole` rounds them to integers."""
    if high <= low:
        return [low]
    steps = range(TICKS)
    values = [low * (high / low) ** (i / (TICKS - 1)) if log else low + (high - low) * i / (TICKS - 1) for i in steps]
    return sorted({round(v) for v in values}) if whole else values


def _labels(values: list[float]) -> list[str]:
    """The shortest labels that still tell the values apart."""
    fixed = all(abs(v) >= 1 for v in values)
    for digits in range(0 if fixed else 2, 8):
        labels = [f"{v:.{digits}f}" if fixed else f"{v:.{digits}g}" for v in values]
        if len(set(labels)) == len(labels):
            return labels
    return labels
