"""Modal confirmations that act on a run: stop (asks first) and resume (a checkpoint picked from a list, its
pre-flight shown first)."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, OptionList, Static
from textual.widgets.option_list import Option

from engine.runs.checkpoints import Checkpoint, latest_good, list_checkpoints
from engine.runs.launch import LaunchError, stop
from engine.runs.resume import preflight, resume
from tui.terminal_text import printable


class _RunAction(ModalScreen[None]):
    """A dialog with a message, Cancel and one action button; the action runs in a worker. The message scrolls
    between what comes above it and the buttons, which are always in view."""

    BINDINGS = [Binding("escape", "dismiss", "Cancel"), Binding("y", "confirm", "Yes")]
    ACTION_LABEL = "OK"

    def __init__(self, work_dir: Path) -> None:
        super().__init__()
        self.work_dir = work_dir

    def compose(self) -> ComposeResult:
        """What comes above the message, the message, and the buttons."""
        with Vertical(classes="dialog"):
            yield from self.choices()
            with VerticalScroll(classes="dialog-text"):
                yield Static(id="dialog-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button(self.ACTION_LABEL, id="confirm", variant="primary", compact=True)

    def choices(self) -> ComposeResult:
        """Widgets above the message (none)."""
        yield from ()

    def say(self, text: str) -> None:
        """Show `text` (made printable: it may quote a log) as the message."""
        self.query_one("#dialog-text", Static).update(printable(text))

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
        self.app.call_from_thread(self.app.notify, printable(text), severity=severity, markup=False)
        self.app.call_from_thread(self.dismiss)


class StopScreen(_RunAction):
    """Stop a run: TERM the process group, KILL what is left."""

    ACTION_LABEL = "Stop (y)"

    def on_mount(self) -> None:
        """Say what stopping does (a queued run: what cancelling does)."""
        rec = self.app.runs.get(self.work_dir.resolve())
        if rec is not None and rec.status.state == "queued":
            self.say(f"Cancel the queued run in {self.work_dir}?\n\nIt has not started: its waiter ends, nothing runs.")
        else:
            self.say(
                f"Stop the run in {self.work_dir}?\n\nxtui sends TERM to the whole process group, then KILL after "
                "15 s. Resume later from its last checkpoint."
            )
        self.query_one("#cancel", Button).focus()  # Enter keeps the run; y (or Tab, Enter) stops it

    @work(thread=True, exclusive=True, group="run-action")
    def act(self) -> None:
        """Stop and report."""
        try:
            gone = stop(self.work_dir)
        except LaunchError as exc:
            self.finish(str(exc), "error")
            return
        self.finish(
            "run stopped" if gone else "some processes could not be stopped", "information" if gone else "error"
        )


class ReplaceScreen(_RunAction):
    """Ask before a job replaces an output folder that exists (deleted first); the answer is True to replace."""

    ACTION_LABEL = "Replace (y)"

    def __init__(self, folder: Path, what: str) -> None:
        super().__init__(folder)
        self.what = what

    def on_mount(self) -> None:
        """Say what replacing does; Enter keeps the folder."""
        self.say(
            f"{self.work_dir} already exists.\n\nReplace it with the output of {self.what}? Its files are deleted first."
        )
        self.query_one("#cancel", Button).focus()

    def act(self) -> None:
        """Replace."""
        self.dismiss(True)


def _label(ckpt: Checkpoint) -> str:
    """One line for a checkpoint in the list: its file, iteration and state."""
    where = f"iteration {ckpt.iter}" if ckpt.iter is not None else "iteration ?"
    state = "ok" if ckpt.ok else f"✗ {ckpt.problem}"
    return printable(
        f"{ckpt.path.name}  {where}  {state}" + ("  (last_checkpoint)" if ckpt.latest else ""), newlines=False
    )


class ResumeScreen(_RunAction):
    """Resume a run from the checkpoint picked in the list (the newest good one to start with), after showing the
    pre-flight verdict for it."""

    ACTION_LABEL = "Resume (y)"

    def __init__(self, work_dir: Path) -> None:
        super().__init__(work_dir)
        self.checkpoints: list[Checkpoint] = []  # newest first, as listed
        self.chosen: Checkpoint | None = None

    def choices(self) -> ComposeResult:
        """The checkpoints to pick from."""
        yield Static("Resume from (↑↓ to pick, Tab to the buttons)", classes="label")
        yield OptionList(id="checkpoints", compact=True)

    def on_mount(self) -> None:
        """List the checkpoints in a worker."""
        self.say("reading the checkpoints...")
        self.query_one("#confirm", Button).disabled = True
        self.query_one(OptionList).focus()
        self.load()

    @work(thread=True, exclusive=True, group="run-action")
    def load(self) -> None:
        """Find and check the checkpoints on disk."""
        found = list_checkpoints(self.work_dir)  # oldest first, as latest_good takes them
        self.app.call_from_thread(self._list, found[::-1], latest_good(found))

    def _list(self, found: list[Checkpoint], best: Checkpoint | None) -> None:
        """Fill the list, highlight `best` (its pre-flight follows from the highlight)."""
        self.checkpoints = found
        options = self.query_one(OptionList)
        options.add_options([Option(_label(c)) for c in found])
        if best is None:
            self.chosen = None
            self.check(None)
        else:
            options.highlighted = found.index(best)

    @on(OptionList.OptionHighlighted)
    def _picked(self, event: OptionList.OptionHighlighted) -> None:
        """A new checkpoint picked: its pre-flight."""
        self.chosen = self.checkpoints[event.option_index]
        self.query_one("#confirm", Button).disabled = True
        self.say(f"checking the resume from {self.chosen.path.name}...")
        self.check(self.chosen.path)

    @on(OptionList.OptionSelected)
    def _selected(self) -> None:
        """Enter on a checkpoint: to the button (the verdict decides whether it works)."""
        self.query_one("#confirm", Button).focus()

    @work(thread=True, exclusive=True, group="resume-check")
    def check(self, checkpoint: Path | None) -> None:
        """Pre-flight of a resume from `checkpoint` (None: there is none to pick), shown in the dialog."""
        result = preflight(self.work_dir, checkpoint)
        lines = []
        if result.checkpoint:
            lines.append(
                f"from {result.checkpoint.path.name}: iteration {result.checkpoint.iter} of {result.max_iters or '?'}"
            )
        lines += [f"✗ {p}" for p in result.problems] + [f"• {n}" for n in result.notes]
        lines.append("" if result.ok else "\nThis resume would not work: fix the problems above first.")
        self.app.call_from_thread(self._show, checkpoint, "\n".join(lines), result.ok)

    def _show(self, checkpoint: Path | None, text: str, ok: bool) -> None:
        """The verdict for `checkpoint`, if it is still the one picked; the button only when the resume would work."""
        if checkpoint != (self.chosen.path if self.chosen else None):
            return
        self.say(text)
        self.query_one("#confirm", Button).disabled = not ok

    @work(thread=True, exclusive=True, group="run-action")
    def act(self) -> None:
        """Resume from the checkpoint picked and report."""
        assert self.chosen is not None
        try:
            launch, _ = resume(self.work_dir, self.chosen.path)
        except LaunchError as exc:
            self.finish(str(exc), "error")
            return
        self.app.call_from_thread(self.app.launched, self.work_dir)
        self.finish(f"resumed from {self.chosen.path.name} (pid {launch.pid})")
