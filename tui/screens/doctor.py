"""The environment doctor: what a run needs on this machine, one check each, with what to do about a problem."""

from __future__ import annotations

from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Header, Static

from themes.colours import theme_colour
from tui.terminal_text import printable
from tui.widgets.key_bar import KeyBar

CHECKING = "Checking Python, the GPUs and each package (every import runs in a subprocess: this takes a while)…"
STATUS_VARIABLE = {"ok": "success", "warn": "warning", "fail": "error"}  # a CheckStatus -> its theme colour


def report(checks, variables) -> Group:
    """The checks as a grid: the state word in its colour, the name, what was found with what to do under it (long
    lines wrap inside their column), then a verdict."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=4, no_wrap=True)
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(ratio=1)
    for check in checks:
        state = Text(str(check.status), style=f"bold {theme_colour(STATUS_VARIABLE[check.status], variables)}")
        found = Text(printable(check.found, newlines=False))
        if check.fix:
            found.append(f"\n→ {printable(check.fix, newlines=False)}")
        grid.add_row(state, check.name, found)
    failed = sum(check.status == "fail" for check in checks)
    verdict = f"{failed} check(s) failed: runs that need them will fail." if failed else "All needed checks pass."
    return Group(grid, Text(f"\n{verdict} r checks again.", style="bold"))


class DoctorScreen(Screen):
    """Every check of `xtui doctor`, run in a thread (imports are slow), drawn when they all came."""

    DEFAULT_CSS = "DoctorScreen #doctor { padding: 0 1; }"
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("r", "check", "Check again")]

    def __init__(self, work_dir: Path) -> None:
        super().__init__()
        self.work_dir = work_dir  # its free disk is checked
        self.checks: list | None = None

    def compose(self) -> ComposeResult:
        """The report, scrolling."""
        yield Header()
        with VerticalScroll(id="doctor"):
            yield Static(CHECKING, id="doctor-report")
        yield KeyBar()

    def on_mount(self) -> None:
        """Start the checks."""
        self.sub_title = printable(f"doctor: runs in {self.work_dir}", newlines=False)
        self.query_one("#doctor").focus()
        self.action_check()

    def action_check(self) -> None:
        """Run every check again."""
        self.checks = None
        self.query_one("#doctor-report", Static).update(CHECKING)
        self.run_checks()

    @work(thread=True, exclusive=True, group="doctor")
    def run_checks(self) -> None:
        """The doctor's checks, off the UI thread."""
        from engine.xtuner.doctor import doctor

        try:
            checks = doctor(self.work_dir)
        except Exception as exc:  # a check that breaks is shown, never a crash
            self.app.call_from_thread(self._failed, f"{type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._show, checks)

    def _show(self, checks) -> None:
        """Draw the report."""
        self.checks = checks
        self.query_one("#doctor-report", Static).update(report(checks, self.app.theme_variables))

    def _failed(self, error: str) -> None:
        """The checks themselves could not run."""
        self.query_one("#doctor-report", Static).update(printable(f"the checks could not run: {error}"))

    def commands(self):
        """Palette entries of this screen."""
        yield SystemCommand("Doctor: check again", "Run every check again", self.action_check)
