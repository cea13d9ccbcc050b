"""The launch form: config, work dir, GPUs, DeepSpeed; the exact command is shown before it starts. A work dir that
holds a run already is never launched into: the form offers a free folder beside it, or resuming that run."""

from __future__ import annotations

import shlex
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from engine.runs.launch import LaunchError, LaunchSpec, WorkDirUsed, command, free_sibling, prepare, start
from engine.xtuner.presets import DEEPSPEED_PRESETS
from tui.terminal_text import printable


class LaunchScreen(ModalScreen[None]):
    """Fill in a launch; Ctrl+S (or the button) starts it after the engine's checks."""

    BINDINGS = [Binding("escape", "dismiss", "Cancel"), Binding("ctrl+s", "launch", "Launch")]

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def compose(self) -> ComposeResult:
        """The form: a label and a field a line."""
        demo = next((p for p in (self.root / "xtui-demo" / "config.py", self.root / "config.py") if p.exists()), None)
        with VerticalScroll(classes="dialog", id="launch-form"):
            yield Static("Launch a training run", classes="title")
            with Horizontal(classes="field"):
                yield Label("Config")
                yield Input(str(demo or ""), id="config", placeholder="path/to/config.py", compact=True)
            with Horizontal(classes="field"):
                yield Label("Work dir")
                yield Input(str(free_sibling(self.root / "work")), id="work-dir", compact=True)  # never a used one
            with Horizontal(classes="field"):
                yield Label("GPUs")
                yield Input("1", id="processes", type="integer", compact=True)
                yield Label("CUDA_VISIBLE_DEVICES", classes="inline")
                yield Input("", id="devices", placeholder="all", compact=True)
            with Horizontal(classes="field"):
                yield Label("DeepSpeed")
                yield Select([(name, name) for name in DEEPSPEED_PRESETS], id="deepspeed", prompt="none", compact=True)
            yield Static(id="command", classes="command")
            yield Static(id="launch-error", classes="error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button("Launch (ctrl+s)", id="launch", variant="primary", compact=True)

    def on_mount(self) -> None:
        """Show the command for the defaults; start typing the config."""
        self._show_command()
        self.query_one("#config", Input).focus()

    def spec(self) -> LaunchSpec:
        """The launch the form describes (paths relative to the app's folder)."""
        value = lambda widget_id: self.query_one(f"#{widget_id}", Input).value.strip()  # noqa: E731
        deepspeed = self.query_one("#deepspeed", Select).value
        gpus = value("processes")
        return LaunchSpec(
            config=self.root / value("config"),
            work_dir=self.root / value("work-dir"),
            gpus=int(gpus) if gpus.lstrip("-").isdigit() else 0,
            devices=value("devices") or None,
            deepspeed=deepspeed if isinstance(deepspeed, str) else None,
            cwd=self.root,
        )

    def _show_command(self) -> None:
        """The exact command line, as it will run."""
        self.query_one("#command", Static).update(printable("$ " + shlex.join(command(prepare(self.spec())))))

    def _say(self, text: str, error: bool = True) -> None:
        """Say what stops the launch (or, not an `error`, what the form did), below the form, and bring it into view."""
        message = self.query_one("#launch-error", Static)
        message.update(printable(text))
        message.set_class(error, "error")
        self.call_after_refresh(message.scroll_visible, animate=False)

    def on_input_changed(self) -> None:
        """Keep the command in step with the form."""
        self._show_command()
        self.query_one("#launch-error", Static).update("")

    def on_select_changed(self) -> None:
        """Keep the command in step with the form."""
        self._show_command()

    @on(Button.Pressed, "#launch")
    def _launch_pressed(self) -> None:
        """Launch."""
        self.action_launch()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        """Close the form."""
        self.dismiss()

    def action_launch(self) -> None:
        """Check and start in a worker."""
        for field, what in (("config", "a config file"), ("work-dir", "a work dir")):
            if not self.query_one(f"#{field}", Input).value.strip():
                self._say(f"✗ pick {what} first")
                return
        self._say("checking...", error=False)
        self._launch(prepare(self.spec()))

    @work(thread=True, exclusive=True, group="launch")
    def _launch(self, spec: LaunchSpec) -> None:
        """Start (the engine checks first), open the run; errors stay in the form; a used work dir asks what to do."""
        try:
            launch = start(spec)
        except WorkDirUsed:
            self.app.call_from_thread(self._used, spec.work_dir, free_sibling(spec.work_dir))
            return
        except LaunchError as exc:
            self.app.call_from_thread(self._say, f"✗ {exc}")
            return
        self.app.call_from_thread(self._started, spec.work_dir, launch.pid)

    def _used(self, work_dir: Path, free: Path) -> None:
        """`work_dir` holds a run: ask whether to launch into the free folder `free` instead, or resume that run."""
        self._say(f"✗ {work_dir} already holds a run")

        def chosen(choice: str | None) -> None:
            if choice == "new":
                field = self.query_one("#work-dir", Input)
                with self.prevent(Input.Changed):  # the note below stays
                    field.value = str(free)
                field.focus()
                self._show_command()
                self._say(f"a new folder is filled in: {free}; ctrl+s launches into it", error=False)
            elif choice == "resume":
                from tui.dialogs.confirm import ResumeScreen

                self.dismiss()
                self.app.push_screen(ResumeScreen(work_dir))

        self.app.push_screen(UsedWorkDirScreen(work_dir, free), chosen)

    def _started(self, work_dir: Path, pid: int) -> None:
        """Close the form and show the new run."""
        self.dismiss()
        self.app.notify(f"launched pid {pid}", markup=False)
        self.app.launched(work_dir)
        self.app.open_run_screen(work_dir)


class UsedWorkDirScreen(ModalScreen[str | None]):
    """The work dir picked holds a run: launch into a free folder beside it ("new"), or resume that run ("resume")."""

    BINDINGS = [
        Binding("escape", "dismiss", "Back"),
        Binding("n", "choose('new')", "New folder"),
        Binding("r", "choose('resume')", "Resume it"),
    ]

    def __init__(self, work_dir: Path, free: Path) -> None:
        super().__init__()
        self.work_dir, self.free = work_dir, free

    def compose(self) -> ComposeResult:
        """The question and its answers."""
        text = (
            f"{self.work_dir} already holds a run. Launching into it would mix the two runs' logs and checkpoints.\n\n"
            f"Launch into a new folder, {self.free}, or resume the run that is there?"
        )
        with Vertical(classes="dialog"):
            with VerticalScroll(classes="dialog-text"):
                yield Static(printable(text))
            with Horizontal(classes="dialog-buttons"):
                yield Button("Back", id="back", compact=True)
                yield Button("Resume that run (r)", id="resume", compact=True)
                yield Button("New folder (n)", id="new", variant="primary", compact=True)

    def on_mount(self) -> None:
        """The safe answer is one key away."""
        self.query_one("#new", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        """Answer with the button's choice (Back: none)."""
        self.dismiss(None if event.button.id == "back" else event.button.id)

    def action_choose(self, choice: str) -> None:
        """Answer by key."""
        self.dismiss(choice)
