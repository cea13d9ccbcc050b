"""Training curves: one metric at a time over iterations, with a summary line of its last and best values."""

from __future__ import annotations

import math
from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.color import Color
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static
from textual_plotext import PlotextPlot

from engine.runs.events import TrainStep

METRICS = {  # TrainStep field: (label, value format)
    "loss": ("loss", "{:.4f}"),
    "lr": ("lr", "{:.3g}"),
    "grad_norm": ("grad norm", "{:.4g}"),
    "tokens_per_sec": ("tokens/s", "{:,.0f}"),
}
TICKS = 5  # per axis
MAX_POINTS = 2000  # more than a wide terminal has braille dots across; beyond it each bucket keeps its min and max
MUTED = "$foreground-muted"  # $text-muted does not resolve inside Content
NOT_FINITE = "bold $text-error"


class Curves(Vertical, can_focus=True):
    """A focusable plot of loss, lr, grad norm or tokens/s against iteration; `m` cycles the metric, `l` toggles log y."""

    BINDINGS = [
        Binding("m", "cycle_metric", "Metric"),
        Binding("l", "toggle_log", "Log scale"),
    ]

    DEFAULT_CSS = """
    Curves {
        height: 1fr;
    }
    Curves > #curves-summary {
        height: 1;
        padding: 0 1;
    }
    Curves:focus > #curves-summary {
        background: $primary-muted;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._steps: dict[int, TrainStep] = {}  # by iteration: a resume logs some iterations again
        self._present: set[str] = set()
        self._peak_memory: float | None = None
        self.metric: str | None = None
        self.log_scale = False
        self._stale = False  # steps arrived while the plot was off screen

    def compose(self) -> ComposeResult:
        """Summary line above the plot."""
        yield Static(id="curves-summary", markup=False)
        yield PlotextPlot(id="curves-plot")

    def on_mount(self) -> None:
        """Draw the empty state; redraw in the new colours when the theme changes."""
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._replot())
        self._replot()

    @property
    def metrics(self) -> list[str]:
        """The metrics that have at least one value, in display order."""
        return [m for m in METRICS if m in self._present]

    def add_steps(self, steps: Sequence[TrainStep]) -> None:
        """Take new training steps in log order and redraw once. A step at or before the newest one held starts a
        new branch (a resume from an older checkpoint): the steps from its iteration on are the old branch's, and go."""
        if not steps:
            return
        for step in steps:
            if self._steps and step.iter <= next(reversed(self._steps)):
                self._steps = {it: kept for it, kept in self._steps.items() if it < step.iter}
                self._recount()
            self._steps[step.iter] = step  # the dict stays in iteration order
            self._count(step)
        if self.is_mounted:
            self._replot_when_seen()

    def _count(self, step: TrainStep) -> None:
        """Note the metrics and the memory of one step held."""
        self._present.update(m for m in METRICS if getattr(step, m) is not None)
        if step.memory is not None and math.isfinite(step.memory):
            self._peak_memory = max(step.memory, self._peak_memory or 0.0)

    def _recount(self) -> None:
        """The metrics and the peak memory of the steps held, again (some were dropped)."""
        self._present.clear()
        self._peak_memory = None
        for step in self._steps.values():
            self._count(step)

    def on_show(self) -> None:
        """Draw what arrived while another tab was showing."""
        if self._stale:
            self._replot()

    def _replot_when_seen(self) -> None:
        """Replot now if the plot is on screen, else when it next shows: plotting a hidden tab is wasted work."""
        if self.is_on_screen:
            self._replot()
        else:
            self._stale = True

    def clear(self) -> None:
        """Forget every step."""
        self._steps.clear()
        self._present.clear()
        self._peak_memory = None
        self.metric = None
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

    def _points(self, metric: str) -> tuple[list[int], list[float]]:
        """Iterations and values of `metric`, in iteration order."""
        xs: list[int] = []
        ys: list[float] = []
        for it, step in self._steps.items():
            value = getattr(step, metric)
            if value is not None:
                xs.append(it)
                ys.append(value)
        return xs, ys

    def _replot(self) -> None:
        """Rebuild the plot data and the summary for the current metric and scale."""
        self._stale = False
        present = self.metrics
        if self.metric not in present:
            self.metric = present[0] if present else None
        plot = self.query_one(PlotextPlot)
        plt = plot.plt
        plt.clear_figure()  # data, scale and the ticks set for the previous metric
        summary = self.query_one("#curves-summary", Static)
        if self.metric is None:
            summary.update(Content.styled("No training steps yet.", MUTED), layout=False)
            plot.refresh()
            return
        xs, ys = self._points(self.metric)
        finite = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]  # a NaN or inf loss is named, not drawn
        shown = [(x, y) for x, y in finite if y > 0 or not self.log_scale]
        if shown:  # plotext fails to build a log axis without data
            plt.yscale("log" if self.log_scale else "linear")
            colour = Color.parse(self.app.theme_variables.get("primary", "#5f87d7")).rgb
            drawn = _thinned(shown)
            plt.plot([x for x, _ in drawn], [y for _, y in drawn], marker="braille", color=colour)
            plt.xticks(_spread(shown[0][0], shown[-1][0], log=False, whole=True))
            values = [y for _, y in shown]
            y_ticks = _spread(min(values), max(values), log=self.log_scale)
            plt.yticks(y_ticks, _labels(y_ticks))
        summary.update(self._summary(present, xs, ys, hidden=len(finite) - len(shown)), layout=False)  # one line always
        plot.refresh()

    def _summary(self, present: list[str], xs: list[int], ys: list[float], hidden: int) -> Content:
        """'loss 1/3  last …  min … @ iter  peak memory … MiB  log scale' for the current metric; a NaN or infinite
        value is shown as such, in the error colour, with how many are not drawn."""
        label, fmt = METRICS[self.metric]
        parts: list[str | tuple[str, str]] = [
            (label, "bold $text-primary"),
            (f" {present.index(self.metric) + 1}/{len(present)}", MUTED),
        ]
        if ys:
            parts += [("  last ", MUTED), (fmt.format(ys[-1]), "" if math.isfinite(ys[-1]) else NOT_FINITE)]
        finite = [i for i, y in enumerate(ys) if math.isfinite(y)]
        if finite:
            low = min(finite, key=ys.__getitem__)
            parts += [("  min ", MUTED), fmt.format(ys[low]), (f" @ {xs[low]}", MUTED)]
        if len(finite) < len(ys):
            first = next(x for x, y in zip(xs, ys) if not math.isfinite(y))
            parts.append((f"  {len(ys) - len(finite)} not finite, from iter {first}", NOT_FINITE))
        if self._peak_memory is not None:
            parts += [("  peak memory ", MUTED), f"{self._peak_memory:.0f} MiB"]
        if self.log_scale:
            parts.append(("  log scale" + (f" ({hidden} ≤ 0 not shown)" if hidden else ""), "$text-accent"))
        return Content.assemble(*parts)


def _thinned(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """At most about MAX_POINTS points: each bucket of neighbours keeps its lowest and highest, so spikes survive."""
    size = -(-len(points) // (MAX_POINTS // 2))
    if size <= 1:
        return points
    out: list[tuple[int, float]] = []
    for start in range(0, len(points), size):
        bucket = points[start : start + size]
        low, high = min(bucket, key=lambda p: p[1]), max(bucket, key=lambda p: p[1])
        out.extend(sorted({low, high}))
    return out


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
