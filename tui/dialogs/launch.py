"""The launch form: config, work dir, GPUs, DeepSpeed; the exact command is shown before it starts."""

from __future__ import annotations

import shlex
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from engine.runs.launch import LaunchError, LaunchSpec, command, prepare, start
from engine.xtuner.presets import DEEPSPEED_PRESETS


class LaunchScreen(ModalScreen[None]):
    """Fill in a launch; Ctrl+S (or the button) starts it after the engine's checks."""

    BINDINGS = [Binding("escape", "dismiss", "Cancel"), Binding("ctrl+s", "launch", "Launch")]

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def compose(self) -> ComposeResult:
        """The form."""
        demo = next((p for p in (self.root / "xtui-demo" / "config.py", self.root / "config.py") if p.exists()), Path())
        with VerticalScroll(classes="dialog", id="launch-form"):
            yield Static("Launch a training run", classes="title")
            yield Label("Config file")
            yield Input(str(demo) if demo.name else "", id="config", placeholder="path/to/config.py", compact=True)
            yield Label("Work dir")
            yield Input(str(self.root / "work"), id="work-dir", compact=True)
            with Horizontal(classes="row"):
                with Vertical(classes="cell"):
                    yield Label("GPUs (processes)")
                    yield Input("1", id="gpus", type="integer", compact=True)
                with Vertical(classes="cell"):
                    yield Label("CUDA_VISIBLE_DEVICES")
                    yield Input("", id="devices", placeholder="all", compact=True)
            yield Label("DeepSpeed")
            yield Select([(name, name) for name in DEEPSPEED_PRESETS], id="deepspeed", prompt="none", compact=True)
            yield Static(id="command", classes="command")
            yield Static(id="launch-error", classes="error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Launch (ctrl+s)", id="launch", variant="primary")

    def on_mount(self) -> None:
        """Show the command for the defaults; start typing the config."""
        self._show_command()
        self.query_one("#config", Input).focus()

    def spec(self) -> LaunchSpec:
        """The launch the form describes (paths relative to the app's folder)."""
        value = lambda widget_id: self.query_one(f"#{widget_id}", Input).value.strip()  # noqa: E731
        deepspeed = self.query_one("#deepspeed", Select).value
        gpus = value("gpus")
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
        self.query_one("#command", Static).update("$ " + shlex.join(command(prepare(self.spec()))))

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
                self.query_one("#launch-error", Static).update(f"✗ pick {what} first")
                return
        self.query_one("#launch-error", Static).update("checking...")
        self._launch(prepare(self.spec()))

    @work(thread=True, exclusive=True, group="launch")
    def _launch(self, spec: LaunchSpec) -> None:
        """Start (the engine checks first), open the run; errors stay in the form."""
        try:
            launch = start(spec)
        except LaunchError as exc:
            self.app.call_from_thread(self.query_one("#launch-error", Static).update, f"✗ {exc}")
            return
        self.app.call_from_thread(self._started, spec.work_dir, launch.pid)

    def _started(self, work_dir: Path, pid: int) -> None:
        """Close the form and show the new run."""
        self.dismiss()
        self.app.notify(f"launched pid {pid}")
        self.app.open_run_screen(work_dir)
