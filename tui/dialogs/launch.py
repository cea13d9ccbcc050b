"""The launch form: a config from the project folder or XTuner's built-ins, work dir, GPUs, DeepSpeed, and where it runs
(this machine, several nodes, or Slurm where sbatch is on PATH), with the memory it will need; the exact command (each
node's; a Slurm job's sbatch script, shown before it is submitted) is shown before it starts. A work dir that holds a
run already is never launched into: the form offers a free folder beside it, or resuming that run."""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import replace
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from engine.files import read_head
from engine.runs import manifest as mf
from engine.runs.folders import is_run_dir
from engine.runs.launch import (
    TORCH_PORT,
    LaunchError,
    LaunchSpec,
    WorkDirUsed,
    command,
    free_sibling,
    plan,
    prepare,
    slurm_script,
    start,
)
from engine.runs.slurm import SlurmOptions, script_path
from engine.runs.workdir import WorkDir
from engine.xtuner.configs import ConfigError, find_builtin, list_builtin
from engine.xtuner.memory_estimate import memory_line
from engine.xtuner.presets import DEEPSPEED_PRESETS
from tui.terminal_text import printable

HERE, NODES, SLURM = "here", "nodes", "slurm"
CONFIG_MARK = re.compile(rb"^(?:train_cfg|model)\s*=\s*dict\(", re.MULTILINE)  # what an mmengine training config sets
CONFIG_HEAD = 256 << 10
MAX_OPTIONS = 300
SHOWN_NODES = 3  # the commands shown for a run over more nodes: the first ones (and this node's)


def project_configs(root: Path) -> list[Path]:
    """The training configs in `root` and the folders in it (a run's copy of its config left out), relative to it."""
    found = []
    for path in sorted([*root.glob("*.py"), *root.glob("*/*.py")]):
        if path.parent != root and is_run_dir(path.parent):
            continue
        try:
            head = read_head(path, CONFIG_HEAD)
        except OSError:
            continue
        if CONFIG_MARK.search(head):
            found.append(path.relative_to(root))
    return found


def builtin_configs() -> list[str]:
    """XTuner's built-in config names ([] where xtuner is not installed)."""
    try:
        return list_builtin()
    except ConfigError:
        return []


def _whole(text: str) -> int:
    """The whole number typed, 0 when it is none (the launch's checks then say what is wrong)."""
    return int(text) if text.lstrip("-").isdigit() else 0


class LaunchScreen(ModalScreen[None]):
    """Fill in a launch; Ctrl+S (or the button) starts it after the engine's checks (a Slurm job: after its script)."""

    BINDINGS = [Binding("escape", "dismiss", "Cancel"), Binding("ctrl+s", "launch", "Launch")]
    DEFAULT_CSS = """
    #launch-form .field { height: 1; }
    #launch-form .field Label { width: 12; color: $text-muted; }
    #launch-form .field Label.inline { width: auto; margin: 0 1 0 2; }
    #launch-form .field Input { width: 1fr; height: 1; }
    #launch-form .field Input.short { width: 7; }
    #launch-form #time { width: 10; }
    #launch-form #nodes-fields, #launch-form #slurm-fields { height: auto; }
    #launch-form #deepspeed { width: 26; }
    #launch-form #where { width: 1fr; }
    #launch-form #configs { height: auto; max-height: 3; margin-left: 12; }
    #launch-form #config-found { margin-left: 12; color: $text-muted; }
    #launch-form #memory { color: $text-muted; }
    #launch-form #launch-keys { width: 1fr; color: $text-muted; }
    #launch-form #memory.error { color: $error; }
    #launch-form #command { margin-top: 1; }
    """

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.sbatch = shutil.which("sbatch") is not None  # the Slurm choice only where its client commands are
        self.choices: list[tuple[str, str]] = []  # (value to fill in, how it is listed): project configs, built-ins
        self.builtins: dict[str, Path | None] = {}  # XTuner's built-in names, with their files once looked up

    def compose(self) -> ComposeResult:
        """The form: a label and a field a line, the configs that match under the config; then where it runs."""
        demo = next((p for p in (self.root / "xtui-demo" / "config.py", self.root / "config.py") if p.exists()), None)
        where = [("this machine", HERE), ("several nodes", NODES)] + [("Slurm (sbatch)", SLURM)] * self.sbatch
        with VerticalScroll(classes="dialog", id="launch-form"):
            yield Static("Launch a training run", classes="title")
            with Horizontal(classes="field"):
                yield Label("Config")
                typed = str(demo.relative_to(self.root)) if demo else ""
                yield Input(
                    typed,
                    id="config",
                    placeholder="a .py file, or part of a built-in's name; tab: list",
                    compact=True,
                )
            yield OptionList(id="configs", markup=False, compact=True)
            yield Static(id="config-found", markup=False)
            with Horizontal(classes="field"):
                yield Label("Work dir")
                yield Input(str(free_sibling(self.root / "work")), id="work-dir", compact=True)  # never a used one
            with Horizontal(classes="field"):
                yield Label("GPUs", id="gpus-label")
                yield Input("1", id="processes", type="integer", classes="short", compact=True)
                yield Label("CUDA_VISIBLE_DEVICES", classes="inline")
                yield Input("", id="devices", placeholder="all", compact=True)
            with Horizontal(classes="field"):
                yield Label("DeepSpeed")
                yield Select([(name, name) for name in DEEPSPEED_PRESETS], id="deepspeed", prompt="none", compact=True)
                yield Label("on", classes="inline")
                yield Select(where, value=HERE, allow_blank=False, id="where", compact=True)
            with Vertical(id="nodes-fields"):
                with Horizontal(classes="field"):
                    yield Label("Nodes")
                    yield Input("2", id="nnodes", type="integer", classes="short", compact=True)
                    yield Label("this node's rank", classes="inline")
                    yield Input("0", id="node-rank", type="integer", classes="short", compact=True)
                    yield Label("port", classes="inline")
                    yield Input(str(TORCH_PORT), id="master-port", type="integer", classes="short", compact=True)
                with Horizontal(classes="field"):
                    yield Label("Node 0 at")
                    yield Input("", id="master-addr", placeholder="an address every node reaches", compact=True)
            with Vertical(id="slurm-fields"):
                with Horizontal(classes="field"):
                    yield Label("Partition")
                    yield Input("", id="partition", placeholder="the default", compact=True)
                    yield Label("nodes", classes="inline")
                    yield Input("1", id="slurm-nodes", type="integer", classes="short", compact=True)
                    yield Label("time", classes="inline")
                    yield Input("", id="time", placeholder="4:00:00", compact=True)
                with Horizontal(classes="field"):
                    yield Label("sbatch args")
                    yield Input("", id="sbatch-args", placeholder="--mem=64G --account=NAME", compact=True)
            yield Static(id="memory", markup=False)
            yield Static(id="command", classes="command", markup=False)
            yield Static(id="launch-error", classes="error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Static("f1 help · esc cancel", id="launch-keys")
                yield Button("Cancel", id="cancel", compact=True)
                yield Button("Launch (ctrl+s)", id="launch", variant="primary", compact=True)

    def on_mount(self) -> None:
        """Show the fields and the command for the defaults, find the configs to offer; start typing the config."""
        self._show_where()
        self._changed()
        self._find_configs()
        self.query_one("#config", Input).focus()

    def _value(self, widget_id: str) -> str:
        """The text in a field, stripped."""
        return self.query_one(f"#{widget_id}", Input).value.strip()

    @property
    def where(self) -> str:
        """Where the run goes: this machine, several nodes, Slurm."""
        return str(self.query_one("#where", Select).value)

    def config_path(self) -> Path:
        """The config typed: a file of the project folder, else a built-in by name (as `xtui train NAME` takes it)."""
        typed = self._value("config")
        local = self.root / typed
        if local.is_file() or typed not in self.builtins:
            return local  # when it is not there either, the launch's check says so
        if self.builtins[typed] is None:
            self.builtins[typed] = find_builtin(typed)  # once: it walks XTuner's configs folder
        return self.builtins[typed]

    def spec(self) -> LaunchSpec:
        """The launch the form describes (paths relative to the app's folder)."""
        deepspeed = self.query_one("#deepspeed", Select).value
        spec = LaunchSpec(
            config=self.config_path(), work_dir=self.root / self._value("work-dir"), gpus=_whole(self._value("processes")),
            devices=self._value("devices") or None, deepspeed=deepspeed if isinstance(deepspeed, str) else None,
            cwd=self.root,
        )  # fmt: skip
        if self.where == NODES:
            return replace(
                spec, nnodes=_whole(self._value("nnodes")), node_rank=_whole(self._value("node-rank")),
                master_addr=self._value("master-addr") or None, master_port=_whole(self._value("master-port")),
            )  # fmt: skip
        if self.where == SLURM:
            args = self._value("sbatch-args")
            try:
                extra = tuple(shlex.split(args))
            except ValueError:  # an open quote: sbatch would take it as it is, and refuse it
                extra = (args,)
            options = SlurmOptions(self._value("partition") or None, spec.gpus, self._value("time") or None, extra)
            return replace(spec, nnodes=_whole(self._value("slurm-nodes")), slurm=options)
        return spec

    @work(thread=True, exclusive=True, group="configs")
    def _find_configs(self) -> None:
        """The project's configs and XTuner's built-ins, read once, then offered as the config is typed."""
        names = builtin_configs()
        choices = [(str(p), f"project   {p}") for p in project_configs(self.root)]
        choices += [(name, f"built-in  {name}") for name in names]
        self.app.call_from_thread(self._found_configs, choices, names)

    def _found_configs(self, choices: list[tuple[str, str]], builtins: list[str]) -> None:
        """Offer the configs found."""
        self.choices, self.builtins = choices, dict.fromkeys(builtins)
        self._offer()
        self._changed()

    def _offer(self) -> None:
        """List the configs whose name holds what is typed (none once it names one exactly: the form fits 80x24)."""
        typed = self._value("config")
        exact = any(value == typed for value, _ in self.choices)
        shown = [(v, label) for v, label in self.choices if not exact and typed.lower() in v.lower()][:MAX_OPTIONS]
        options = self.query_one("#configs", OptionList)
        options.clear_options()
        options.add_options([Option(label, id=value) for value, label in shown])
        options.highlighted = 0 if shown else None
        options.display = bool(shown)

    @on(OptionList.OptionSelected, "#configs")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        """Fill in the config picked; on to the work dir."""
        self.query_one("#config", Input).value = event.option.id or ""
        self.query_one("#work-dir", Input).focus()

    def _show_where(self) -> None:
        """Show the fields of the place the run goes."""
        self.query_one("#nodes-fields").display = self.where == NODES
        self.query_one("#slurm-fields").display = self.where == SLURM
        self.query_one("#gpus-label", Label).update("GPUs/node" if self.where != HERE else "GPUs")

    def _changed(self) -> None:
        """Keep what the form shows in step with it: the config found, the commands, the memory estimate."""
        path, typed = self.config_path(), self._value("config")
        found = self.query_one("#config-found", Static)
        matches = self.query_one("#configs", OptionList).option_count
        if path.is_file() and path.is_relative_to(self.root):
            found.update("a config of the project folder")
        elif path.is_file():
            found.update(printable(f"XTuner's built-in: {path}"))
        elif typed and not matches:
            found.update("✗ no such file, and no built-in of that name")
        found.display = path.is_file() or (bool(typed) and not matches)  # the list says the rest
        self._show_command()
        self._estimate(self.spec(), self._readings())

    def _readings(self) -> list:
        """The GPUs of this machine as the app's monitor last read them ([] for a Slurm job: its GPUs are elsewhere)."""
        snapshot = self.app.gpu.snapshot if getattr(self.app, "gpu", None) else None
        return list(snapshot.gpus) if snapshot is not None and self.where != SLURM else []

    @work(thread=True, exclusive=True, group="estimate")
    def _estimate(self, spec: LaunchSpec, readings: list) -> None:
        """Work out the memory the run needs against what its GPUs have free (reads the config and the model's config.json)."""
        if not spec.config.is_file():
            fits, line = True, ""
        else:
            fits, line = memory_line(
                spec.config, self.root, spec.deepspeed, max(spec.gpus, 1), max(spec.nnodes, 1), spec.devices, readings
            )
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show_memory, line if fits else f"⚠ {line}", fits)

    def _show_memory(self, text: str, fits: bool) -> None:
        """The estimate's line, red when the run will not fit."""
        memory = self.query_one("#memory", Static)
        memory.update(printable(text))
        memory.set_class(not fits, "error")
        memory.display = bool(text)

    def _show_command(self) -> None:
        """The exact command line, as it will run; each node's for several nodes; for Slurm, what the job runs."""
        if not self._value("config"):  # else the command would name the project folder as its config
            self.query_one("#command", Static).update("the command shows once a config is picked")
            return
        spec = prepare(self.spec())
        if self.where == NODES and spec.nnodes > 1:
            spec = replace(spec, master_addr=spec.master_addr or "NODE0_ADDRESS")  # to fill in, not "None"
            ranks = sorted({*range(min(spec.nnodes, SHOWN_NODES)), spec.node_rank} & set(range(spec.nnodes)))
            lines = [
                f"node {rank}{' (this one)' if rank == spec.node_rank else ', to run there'}: "
                f"$ {shlex.join(command(replace(spec, node_rank=rank)))}"
                for rank in ranks
            ]
            lines += [f"... and so on to node {spec.nnodes - 1}"] if spec.nnodes > len(ranks) else []
        elif self.where == SLURM:
            lines = [f"sbatch (its script is shown first) runs: $ {shlex.join(command(spec))}"]
        else:
            lines = [f"$ {shlex.join(command(spec))}"]
        self.query_one("#command", Static).update(printable("\n".join(lines)))

    def _say(self, text: str, error: bool = True) -> None:
        """Say what stops the launch (or, not an `error`, what the form did), below the form, and bring it into view."""
        message = self.query_one("#launch-error", Static)
        message.update(printable(text))
        message.set_class(error, "error")
        self.call_after_refresh(message.scroll_visible, animate=False)

    def on_input_changed(self, event: Input.Changed) -> None:
        """Keep the form in step; typing a config narrows the list of configs."""
        if event.input.id == "config":
            self._offer()
        self._changed()
        self.query_one("#launch-error", Static).update("")

    def on_select_changed(self, event: Select.Changed) -> None:
        """Keep the form in step; the place it runs shows its own fields."""
        if event.select.id == "where":
            self._show_where()
        self._changed()

    @on(Button.Pressed, "#launch")
    def _launch_pressed(self) -> None:
        """Launch."""
        self.action_launch()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        """Close the form."""
        self.dismiss()

    def action_launch(self) -> None:
        """Check and start in a worker; a Slurm job's script is shown first."""
        for field, what in (("config", "a config file"), ("work-dir", "a work dir")):
            if not self._value(field):
                self._say(f"✗ pick {what} first")
                return
        self._say("checking...", error=False)
        if self.where == SLURM:
            self._script(self.spec())
        else:
            self._launch(prepare(self.spec()))

    @work(thread=True, exclusive=True, group="launch")
    def _script(self, spec: LaunchSpec) -> None:
        """Make every check a launch makes, then show the sbatch script that would be submitted."""
        try:
            spec = plan(spec)
        except WorkDirUsed:
            self.app.call_from_thread(self._used, spec.work_dir.resolve(), free_sibling(spec.work_dir.resolve()))
            return
        except LaunchError as exc:
            self.app.call_from_thread(self._say, f"✗ {exc}")
            return
        opened = WorkDir.open(spec.work_dir)
        path = script_path(spec.work_dir, len(opened.manifest.launches) if opened.manifest else 0)
        self.app.call_from_thread(self._confirm_script, spec, slurm_script(spec, opened), path)

    def _confirm_script(self, spec: LaunchSpec, script: str, path: Path) -> None:
        """Ask before submitting the script."""
        self._say("")

        def chosen(submit: bool | None) -> None:
            if submit:
                self._say("submitting...", error=False)
                self._launch(spec)

        self.app.push_screen(ScriptScreen(script, path), chosen)

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
        self.app.call_from_thread(self._started, spec.work_dir, launch)

    def _used(self, work_dir: Path, free: Path) -> None:
        """`work_dir` holds a run: ask whether to launch into the free folder `free` instead, or resume that run."""
        self._say(f"✗ {work_dir} already holds a run")

        def chosen(choice: str | None) -> None:
            if choice == "new":
                field = self.query_one("#work-dir", Input)
                with self.prevent(Input.Changed):  # the note below stays
                    field.value = str(free)
                field.focus()
                self._changed()
                self._say(f"a new folder is filled in: {free}; ctrl+s launches into it", error=False)
            elif choice == "resume":
                from tui.dialogs.confirm import ResumeScreen

                self.dismiss()
                self.app.push_screen(ResumeScreen(work_dir))

        self.app.push_screen(UsedWorkDirScreen(work_dir, free), chosen)

    def _started(self, work_dir: Path, launch: mf.Launch) -> None:
        """Close the form and show the new run."""
        self.dismiss()
        node = f" (node {launch.node_rank} of {launch.nnodes})" if launch.nnodes > 1 else ""
        self.app.notify(
            f"submitted Slurm job {launch.slurm_job}" if launch.slurm_job else f"launched pid {launch.pid}{node}"
        )
        self.app.launched(work_dir)
        self.app.open_run_screen(work_dir)


class ScriptScreen(ModalScreen[bool]):
    """The sbatch script a Slurm launch writes into the work dir: submit it (True), or back to the form."""

    BINDINGS = [Binding("escape", "dismiss(False)", "Back"), Binding("y", "dismiss(True)", "Submit")]
    DEFAULT_CSS = "ScriptScreen #script { height: auto; max-height: 55vh; }"

    def __init__(self, script: str, path: Path) -> None:
        super().__init__()
        self.script, self.path = script, path

    def compose(self) -> ComposeResult:
        """The script and the two answers."""
        with Vertical(classes="dialog"):
            yield Static(
                printable(f"Submit with sbatch? Submitting writes it to {self.path}:"), classes="title", markup=False
            )
            with VerticalScroll(id="script"):
                yield Static(printable(self.script), classes="command", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Back", id="back", compact=True)
                yield Button("Submit (y)", id="submit", variant="primary", compact=True)

    def on_mount(self) -> None:
        """Submitting is one key away, going back another."""
        self.query_one("#submit", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        """Answer with the button."""
        self.dismiss(event.button.id == "submit")


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
