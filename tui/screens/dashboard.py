"""The dashboard: the runs list over the GPU and host panel."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from tui.messages import GpuUpdate
from tui.widgets.gpu_panel import GpuPanel
from tui.widgets.runs_table import RunsTable


class DashboardScreen(Screen):
    """Every run under the watched folders, and the GPUs."""

    BINDINGS = [
        Binding("n", "app.launch", "Launch"),
        Binding("g", "toggle_gpus", "GPUs"),
    ]

    def compose(self) -> ComposeResult:
        """Header, runs, GPU panel, footer."""
        yield Header()
        yield Static("No runs yet: press n to launch one, or start xtui in a folder with work dirs.", id="no-runs")
        yield RunsTable(id="runs")
        yield GpuPanel(id="gpus")
        yield Footer()

    def on_mount(self) -> None:
        """Show what the app already knows (a screen pushed after the first polls)."""
        self.sub_title = ", ".join(str(r) for r in self.app.roots)
        for rec in self.app.runs.values():
            self.run_updated(rec, [])
        if self.app.gpu:
            self.gpu_updated(self.app.gpu)
        self.query_one(RunsTable).focus()

    def run_updated(self, rec, events) -> None:
        """Refresh the run's row."""
        self.query_one("#no-runs").display = False
        self.query_one(RunsTable).update_run(rec)

    def gpu_updated(self, message: GpuUpdate) -> None:
        """Refresh the GPU panel."""
        self.query_one(GpuPanel).show(message.snapshot, message.history, message.run_of_pid)

    def on_runs_table_opened(self, message: RunsTable.Opened) -> None:
        """Open the chosen run."""
        self.app.open_run_screen(message.work_dir)

    def action_toggle_gpus(self) -> None:
        """Hide or show the GPU panel (more room for runs)."""
        panel = self.query_one(GpuPanel)
        panel.display = not panel.display

    def commands(self):
        """Palette entries of this screen."""
        from textual.app import SystemCommand

        yield SystemCommand("Toggle GPU panel", "Hide or show GPUs and host", self.action_toggle_gpus)
