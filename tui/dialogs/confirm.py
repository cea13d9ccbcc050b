"""Modal confirmations that act on a run: stop (asks first) and resume (shows the pre-flight first)."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from engine.runs.launch import LaunchError, stop
from engine.runs.resume import preflight, resume


class _RunAction(ModalScreen[None]):
    """A dialog with a message, Cancel and one action button; the action runs in a worker."""

    BINDINGS = [Binding("escape", "dismiss", "Cancel"), Binding("y", "confirm", "Yes")]
    ACTION_LABEL = "OK"

    def __init__(self, work_dir: Path) -> None:
        super().__init__()
        self.work_dir = work_dir

    def compose(self) -> ComposeResult:
        """Message and buttons."""
        with Vertical(classes="dialog"):
            yield Static(id="dialog-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button(self.ACTION_LABEL, id="confirm", variant="primary")

    @on(Button.Pressed, "#confirm")
    def _confirm_pressed(self) -> None:
        """Go."""
        self.action_confirm()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        """Close without acting."""
        self.dismiss()

    def action_confirm(self) -> None:
        """Run the action unless the button is disabled."""
        if not self.query_one("#confirm", Button).disabled:
            self.query_one("#confirm", Button).disabled = True
            self.act()

    def act(self) -> None:
        """The action itself (a worker)."""
        raise NotImplementedError

    def finish(self, text: str, severity: str = "information") -> None:
        """Close and report (from a worker thread)."""
        self.app.call_from_thread(self.app.notify, text, severity=severity)
        self.app.call_from_thread(self.dismiss)


class StopScreen(_RunAction):
    """Stop a run: TERM the process group, KILL what is left."""

    ACTION_LABEL = "Stop (y)"

    def on_mount(self) -> None:
        """Say what stopping does."""
        self.query_one("#dialog-text", Static).update(
            f"Stop the run in {self.work_dir}?\n\nxtui sends TERM to the whole process group, then KILL after 15 s. "
            "Resume later from its last checkpoint."
        )

    @work(thread=True, exclusive=True, group="run-action")
    def act(self) -> None:
        """Stop and report."""
        try:
            gone = stop(self.work_dir)
        except LaunchError as exc:
            self.finish(str(exc), "error")
            return
        self.finish("run stopped" if gone else "some processes could not be stopped", "information" if gone else "error")


class ResumeScreen(_RunAction):
    """Resume a run after showing the pre-flight verdict."""

    ACTION_LABEL = "Resume (y)"

    def __init__(self, work_dir: Path, checkpoint: Path | None) -> None:
        super().__init__(work_dir)
        self.checkpoint = checkpoint

    def on_mount(self) -> None:
        """Run the pre-flight in a worker."""
        self.query_one("#dialog-text", Static).update("checking the resume...")
        self.query_one("#confirm", Button).disabled = True
        self.check()

    @work(thread=True, exclusive=True, group="run-action")
    def check(self) -> None:
        """Pre-flight, shown in the dialog."""
        result = preflight(self.work_dir, self.checkpoint)
        lines = []
        if result.checkpoint:
            lines.append(f"from {result.checkpoint.path.name}: iteration {result.checkpoint.iter} of {result.max_iters or '?'}")
        lines += [f"✗ {p}" for p in result.problems] + [f"• {n}" for n in result.notes]
        lines.append("" if result.ok else "\nThis resume would not work: fix the problems above first.")
        self.app.call_from_thread(self._show, "\n".join(lines), result.ok)

    def _show(self, text: str, ok: bool) -> None:
        """Verdict in; the button only when the resume would work."""
        self.query_one("#dialog-text", Static).update(text)
        self.query_one("#confirm", Button).disabled = not ok

    @work(thread=True, exclusive=True, group="run-action")
    def act(self) -> None:
        """Resume and report."""
        try:
            launch, _ = resume(self.work_dir, self.checkpoint)
        except LaunchError as exc:
            self.finish(str(exc), "error")
            return
        self.finish(f"resumed (pid {launch.pid})")
