"""Runs side by side: their curves on one chart and one prompt's answers from each, for the runs marked on the dashboard."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Header, TabbedContent, TabPane

from tui.terminal_text import printable
from tui.ticks import PAINT_EVERY_POLLS
from tui.widgets.compare_chart import CompareChart
from tui.widgets.compare_samples import CompareSamples
from tui.widgets.compared import ComparedRun
from tui.widgets.key_bar import KeyBar


def short_names(work_dirs: Sequence[Path]) -> list[str]:
    """The shortest names that tell the runs apart: the work dir's name, else parent/name, else the whole path."""
    for name in (lambda p: p.name, lambda p: f"{p.parent.name}/{p.name}", str):
        names = [printable(name(p), newlines=False) for p in work_dirs]
        if len(set(names)) == len(names):
            return names
    return names


class CompareScreen(Screen):
    """The marked runs compared: chart and samples tabs, drawn from the app's records on the paint beat."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("1", "tab('compare-chart')", "Chart", show=False),
        Binding("2", "tab('compare-samples')", "Samples", show=False),
    ]

    def __init__(self, work_dirs: Sequence[Path]) -> None:
        super().__init__()
        self.work_dirs = tuple(work_dirs)
        self.names = short_names(self.work_dirs)
        self._stale = True  # a run changed since the last paint

    def compose(self) -> ComposeResult:
        """Header, the two tabs, footer."""
        yield Header()
        with TabbedContent(initial="compare-chart"):
            with TabPane("Chart", id="compare-chart"):
                yield CompareChart()
            with TabPane("Samples", id="compare-samples"):
                yield CompareSamples(self.names)
        yield KeyBar()

    def on_mount(self) -> None:
        """Draw what the app has read of the runs; repaint on the beat."""
        self.sub_title = f"{len(self.work_dirs)} runs: " + ", ".join(self.names)
        self._paint()
        self.set_interval(PAINT_EVERY_POLLS * self.app.poll_s, self._paint)
        self.query_one(CompareChart).focus()

    def run_updated(self, rec, events) -> None:
        """One of ours changed: draw it on the next beat."""
        if rec.work_dir in self.work_dirs:
            self._stale = True

    def on_screen_resume(self) -> None:
        """Back on top: draw what came meanwhile."""
        self._paint()

    def _paint(self) -> None:
        """Hand the runs as the app holds them now to the chart and the samples (nothing while covered)."""
        if not self._stale or not self.is_active:
            return
        self._stale = False
        runs = []
        for name, work_dir in zip(self.names, self.work_dirs, strict=True):
            rec = self.app.record(work_dir)
            state = rec.state
            runs.append(ComparedRun(name, rec.status.state, state.steps, state.validations, state.branch_samples()))
        self.query_one(CompareChart).show(runs)
        self.query_one(CompareSamples).show(runs)

    def action_tab(self, tab: str) -> None:
        """Switch tab by number key."""
        self.query_one(TabbedContent).active = tab

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        """Focus the tab's content, so that its keys work at once."""
        event.pane.query_one("CompareChart, CompareSamples").focus()

    def commands(self):
        """Palette entries of this screen."""
        yield SystemCommand("Show chart", "The runs' curves on one chart", lambda: self.action_tab("compare-chart"))
        yield SystemCommand(
            "Show samples", "One prompt's answers from each run", lambda: self.action_tab("compare-samples")
        )
