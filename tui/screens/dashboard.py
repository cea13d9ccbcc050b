"""The dashboard: the runs list over the GPU and host panel."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Header, Static

from tui.messages import GpuUpdate
from tui.terminal_text import printable
from tui.ticks import PAINT_EVERY_POLLS
from tui.widgets.gpu_panel import GpuPanel
from tui.widgets.key_bar import KeyBar
from tui.widgets.runs_table import RunsTable


class DashboardScreen(Screen):
    """Every run under the watched folders, and the GPUs."""

    BINDINGS = [
        Binding("n", "app.launch", "Launch"),
        Binding("f", "app.new_fine_tune", "New fine-tune"),
        Binding("g", "toggle_gpus", "GPUs", show=False),  # the footer has room for the rest at 80 columns
        Binding("d", "app.doctor", "Doctor", show=False),
        Binding("v", "compare", "Compare"),
    ]

    def compose(self) -> ComposeResult:
        """Header, runs, GPU panel, footer."""
        yield Header()
        yield Static("No runs yet: press n to launch one, or start xtui in a folder with work dirs.", id="no-runs")
        yield RunsTable(id="runs")
        yield GpuPanel(id="gpus")
        yield KeyBar()

    def on_mount(self) -> None:
        """Show what the app already knows (a screen pushed after the first polls); repaint on a beat."""
        self.sub_title = printable(", ".join(str(r) for r in self.app.roots), newlines=False)
        self._shown_gpu: GpuUpdate | None = None
        self._paint()
        self.set_interval(PAINT_EVERY_POLLS * self.app.poll_s, self._paint)
        self.query_one(RunsTable).focus()

    def run_updated(self, rec, events) -> None:
        """A new run or a new status shows at once; new figures wait for the beat."""
        if not self.query_one(RunsTable).shows_state(rec):
            self._show_run(rec)

    def gpu_updated(self, message: GpuUpdate) -> None:
        """The first readings show at once, later ones on the beat."""
        if self._shown_gpu is None:
            self._show_gpu(message)

    def _show_run(self, rec) -> None:
        """Draw one run's line (a no-op when it shows that already)."""
        placeholder = self.query_one("#no-runs")
        if placeholder.display:
            placeholder.display = False
        self.query_one(RunsTable).update_run(rec)

    def _show_gpu(self, message: GpuUpdate) -> None:
        """Draw a GPU snapshot."""
        self._shown_gpu = message
        self.query_one(GpuPanel).show(message.snapshot, message.history, message.run_of_pid)

    def _paint(self) -> None:
        """Draw the app's runs and newest readings together: one frame per beat (nvitop's habit: 2 s); nothing while
        another screen covers this one. Drawn from the app's state, not from the updates told: a screen that missed
        one (not mounted yet when it came) is right again on its next beat."""
        if not self.is_active:  # covered (is_current would be true under a modal dialog too)
            return
        for rec in self.app.runs.values():
            self._show_run(rec)
        if self.app.gpu is not None and self.app.gpu is not self._shown_gpu:
            self._show_gpu(self.app.gpu)

    def on_screen_resume(self) -> None:
        """Back on top: draw what came meanwhile."""
        self._paint()

    def on_runs_table_opened(self, message: RunsTable.Opened) -> None:
        """Open the chosen run."""
        self.app.open_run_screen(message.work_dir)

    def action_toggle_gpus(self) -> None:
        """Hide or show the GPU panel (more room for runs)."""
        panel = self.query_one(GpuPanel)
        panel.display = not panel.display

    def action_compare(self) -> None:
        """Open the marked runs side by side (two at least)."""
        marked = self.query_one(RunsTable).marked
        if len(marked) < 2:
            have = "one run is" if marked else "no runs are"
            self.notify(f"Mark two runs or more with space to compare them ({have} marked).", title="Compare")
            return
        from tui.screens.compare import CompareScreen

        self.app.push_screen(CompareScreen(marked))

    def commands(self):
        """Palette entries of this screen."""
        from textual.app import SystemCommand

        yield SystemCommand("Toggle GPU panel", "Hide or show GPUs and host", self.action_toggle_gpus)
        yield SystemCommand("Compare marked runs", "Their curves and samples side by side", self.action_compare)
