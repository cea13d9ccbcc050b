"""The "New fine-tune" screen: XTuner's recipe for a project folder, each step's state read from the files on disk."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Header, Label, OptionList, Static
from textual.widgets.option_list import Option

from tui.cli.common import shell
from tui.terminal_text import printable
from tui.widgets.key_bar import KeyBar
from tui.widgets.path_input import PathInput

CONFIG_MARKS = ("pretrained_model_name_or_path", "llm_name_or_path")  # words only an XTuner config's text holds
CONVERTED = ("hf", "huggingface")  # the recipe's folder names for pth_to_hf's output
MERGED = ("merged", "final_model")  # and for the merged model


class StepState(StrEnum):
    """Where a step of the recipe stands."""

    DONE = "done"
    PENDING = "pending"
    FAILED = "failed"


MARKS = {StepState.DONE: ("✓", "$success"), StepState.PENDING: ("·", "$text-muted"), StepState.FAILED: ("✗", "$error")}


@dataclass(frozen=True, slots=True)
class Step:
    """One step: its key and name, its state with one line of why, and what it found (a file or folder)."""

    key: str
    name: str
    state: StepState
    why: str
    found: Path | None = None


@dataclass(frozen=True, slots=True)
class Recipe:
    """A project's steps in order, and the files they were read from."""

    project: Path
    steps: tuple[Step, ...]
    config: Path | None
    data: Path | None
    work_dir: Path | None
    model: Path | None  # the base model, when the config names a local one


def _rel(path: Path, project: Path) -> str:
    """`path` relative to the project when it lies inside it."""
    return str(path.relative_to(project)) if path.is_relative_to(project) else str(path)


def find_config(project: Path) -> Path | None:
    """The project's XTuner config: a .py file at its top or in config/ that sets a model (newest first)."""
    found = []
    for folder in (project, project / "config", project / "configs"):
        try:
            files = [p for p in folder.iterdir() if p.suffix == ".py" and p.is_file()]
        except OSError:
            continue
        for path in files:
            try:
                head = path.read_text(encoding="utf-8", errors="replace")[:200_000]
            except OSError:
                continue
            if any(mark in head for mark in CONFIG_MARKS):
                found.append(path)
    return max(found, key=lambda p: (p.stat().st_mtime, p.name), default=None)


def _config_files(config: Path) -> list[str]:
    """The data files (or hub ids) the config's datasets name, as written."""
    from engine.xtuner.config_datasets import config_training
    from engine.xtuner.configs import ConfigError

    try:
        return [f for d in config_training(config.read_text(encoding="utf-8")).datasets for f in d.files]
    except (OSError, UnicodeDecodeError, ConfigError):  # the config step says why
        return []


def config_data(config: Path, project: Path) -> Path | None:
    """The local data file the config trains on."""
    from engine.xtuner.config_values import local_path

    paths = [local_path(f, project) for f in _config_files(config)]
    return next((p for p in paths if p is not None and p.suffix in (".json", ".jsonl")), None)


def data_setting(config: Path) -> str | None:
    """The PART 1 setting holding the config's data file path (alpaca_en_path, data_path...), when it has one."""
    from engine.xtuner.configs import ConfigError
    from tui.screens.config_form import DATA, MODELS, form_settings

    try:
        names = form_settings(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ConfigError, SyntaxError):
        return None
    return next((n for n in names if n.endswith("_path") and n not in MODELS and n not in DATA), None)


def find_data(project: Path, config: Path | None) -> Path | None:
    """The dataset: the config's own local file, else the newest .json/.jsonl at the top of the project or in data/."""
    if config is not None and (named := config_data(config, project)) is not None:
        return named
    found = []
    for folder in (project, project / "data"):
        try:
            found += [p for p in folder.iterdir() if p.suffix in (".json", ".jsonl") and p.is_file()]
        except OSError:
            continue
    return max(found, key=lambda p: (p.stat().st_mtime, p.name), default=None)


def _data_step(project: Path, data: Path | None) -> Step:
    """Dataset: its records and format, or the first record-precise problem."""
    from engine.data.records import DatasetError
    from engine.data.report import inspect_dataset

    if data is None:
        return Step("1", "Dataset", StepState.PENDING, "no dataset yet: make a self-cognition one")
    if not data.exists():
        return Step("1", "Dataset", StepState.PENDING, f"{_rel(data, project)}: not made yet", data)
    try:
        report = inspect_dataset(data, first_only=True)
    except DatasetError as exc:
        return Step("1", "Dataset", StepState.FAILED, str(exc), data)
    name = _rel(data, project)
    if report.problems:
        return Step("1", "Dataset", StepState.FAILED, f"{name}: {report.problems[0]}", data)
    if not report.records:
        return Step("1", "Dataset", StepState.FAILED, f"{name}: no records", data)
    return Step("1", "Dataset", StepState.DONE, f"{name}: {report.records:,} records, {report.format} format", data)


def _config_step(project: Path, config: Path | None, data: Path | None) -> Step:
    """Config: what a launch would hit at once (missing model or data, bad data), whether it trains on the project's
    dataset, else its model and template."""
    from engine.xtuner.config_check import config_problems
    from engine.xtuner.config_values import config_values
    from engine.xtuner.templates import template_of_config

    if config is None:
        return Step("2", "Config", StepState.PENDING, "no config yet: copy one of XTuner's built-ins")
    name = _rel(config, project)
    try:
        source = config.read_text(encoding="utf-8")
        problems = config_problems(config, project)
    except (OSError, UnicodeDecodeError) as exc:
        return Step("2", "Config", StepState.FAILED, f"{name}: cannot be read ({exc})", config)
    if problems:
        return Step("2", "Config", StepState.FAILED, f"{name}: {problems[0]}", config)
    if data is not None and config_data(config, project) is None:  # the recipe's data is not what it trains on
        trains = ", ".join(_config_files(config)) or "no data file xtui can read"
        why = f"{name} trains on {trains}, not {_rel(data, project)}: set its data path"
        return Step("2", "Config", StepState.PENDING, why, config)
    values = config_values(source)
    model = _named_model(values, project) or "?"
    said = (
        f"{name}: {model}, template {template_of_config(source) or 'none'}, max_length {values.get('max_length', '?')}"
    )
    return Step("2", "Config", StepState.DONE, said, config)


def _named_model(values: dict, project: Path) -> str | None:
    """The base model a config's values name, as the fields show it: a local path relative, else the hub id."""
    from engine.xtuner.config_values import local_path

    model = next((values[n] for n in CONFIG_MARKS if isinstance(values.get(n), str)), None)
    local = local_path(model, project) if model else None
    return _rel(local, project) if local is not None else model


def base_model(config: Path | None, project: Path) -> str | None:
    """The base model a config names (a local path relative to the project, else the hub id), when it can be read."""
    from engine.xtuner.config_values import config_values
    from engine.xtuner.configs import ConfigError

    if config is None:
        return None
    try:
        return _named_model(config_values(config.read_text(encoding="utf-8")), project)
    except (OSError, UnicodeDecodeError, ConfigError):  # the config step says why
        return None


def has_checkpoint(work_dir: Path | None) -> bool:
    """True when the run has saved a checkpoint (iter_N.pth or epoch_N.pth) to convert or chat with."""
    return work_dir is not None and any(next(work_dir.glob(p), None) for p in ("iter_*.pth", "epoch_*.pth"))


def find_run(project: Path) -> Path | None:
    """The project's newest work dir."""
    from engine.runs.folders import discover

    runs = discover([project], depth=3)
    return max(runs, key=lambda p: (p.stat().st_mtime, p.name), default=None)


def _train_step(project: Path, work_dir: Path | None) -> Step:
    """Train: the newest run's status and how far it got."""
    from engine.errors import XtuiError
    from engine.runs.watch import Run

    if work_dir is None:
        return Step("3", "Train", StepState.PENDING, "no run yet: launch the config")
    name = _rel(work_dir, project)
    try:
        run = Run(work_dir)
        run.poll()
        status = run.status()
    except XtuiError as exc:
        return Step("3", "Train", StepState.FAILED, f"{name}: {exc}", work_dir)
    return train_step_of(name, work_dir, status, run.state)


def train_step_of(name: str, work_dir: Path, status, run_state) -> Step:
    """The Train step from a run's status and folded state (engine.runs.watch Status and RunState)."""
    from engine.runs.watch import RunStatus

    state, done, total = status.state, run_state.done_iter, run_state.max_iters
    if state == RunStatus.FINISHED:
        return Step("3", "Train", StepState.DONE, f"{name}: finished at iter {done}", work_dir)
    where = f"iter {done}/{total}" if total else f"iter {done}"
    if state in (RunStatus.FAILED, RunStatus.DAMAGED):
        return Step(
            "3", "Train", StepState.FAILED, f"{name}: {state} at {where}: {status.cause or ''}".rstrip(": "), work_dir
        )
    return Step("3", "Train", StepState.PENDING, f"{name}: {state} at {where}", work_dir)


def _model_folder(folder: Path, *files: str) -> bool:
    """True when `folder` holds any of `files`."""
    return any((folder / f).is_file() for f in files)


def find_converted(project: Path, work_dir: Path | None) -> Path | None:
    """pth_to_hf's output: hf/ or huggingface/ in the project, or an iter_N_hf folder of the run."""
    places = [project / name for name in CONVERTED]
    if work_dir is not None:
        places += sorted(work_dir.glob("*_hf"), key=lambda p: p.stat().st_mtime, reverse=True)
    return next((p for p in places if _model_folder(p, "adapter_config.json", "config.json")), None)


def find_merged(project: Path, work_dir: Path | None = None) -> Path | None:
    """The merged model: merged/ or final_model/ in the project, or the newest merge or export of the run (the run
    view's jobs write iter_N_merged and iter_N_export), with its config and weights."""
    places = [project / name for name in MERGED]
    if work_dir is not None:
        made = [*work_dir.glob("*_merged"), *work_dir.glob("*_export")]
        places += sorted(made, key=lambda p: p.stat().st_mtime, reverse=True)
    return next((p for p in places if _model_folder(p, "config.json") and any(p.glob("*.safetensors"))), None)


def _model_of(config: Path | None, project: Path) -> Path | None:
    """The base model a config names, when it is local."""
    from engine.xtuner.config_values import config_values, local_path
    from engine.xtuner.configs import ConfigError

    if config is None:
        return None
    try:
        values = config_values(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ConfigError):  # the config step says why
        return None
    return next((p for n in CONFIG_MARKS if (p := local_path(values.get(n), project)) is not None), None)


def read_recipe(project: Path) -> Recipe:
    """Every step of the recipe in `project`, as its files say (slow: it reads the data and the logs)."""
    config = find_config(project)
    data = find_data(project, config)
    work_dir = find_run(project)
    model = _model_of(config, project)
    converted, merged = find_converted(project, work_dir), find_merged(project, work_dir)
    run = _rel(work_dir, project) if work_dir else "WORK_DIR"
    if converted is not None:
        convert = Step(
            "4", "Convert", StepState.DONE, f"{_rel(converted, project)}: converted to Hugging Face", converted
        )
    elif has_checkpoint(work_dir):
        convert = Step(
            "4", "Convert", StepState.PENDING, f"no hf/ folder yet: {shell('xtui', 'convert', run, '--out', 'hf')}"
        )
    else:
        why = f"{run}: no checkpoint yet to convert" if work_dir else "nothing to convert yet: train first"
        convert = Step("4", "Convert", StepState.PENDING, why)
    if merged is not None:
        merge = Step("5", "Merge", StepState.DONE, f"{_rel(merged, project)}: a merged model", merged)
    else:
        base = _rel(model, project) if model else "BASE"
        adapter = _rel(converted, project) if converted else "hf"
        merge = Step(
            "5",
            "Merge",
            StepState.PENDING,
            f"no merged/ yet: {shell('xtui', 'merge', base, adapter, '--out', 'merged')}",
        )
    target = merged or converted or (work_dir if has_checkpoint(work_dir) else None)
    if target is not None:
        chat = Step("6", "Chat", StepState.PENDING, f"ready: chat with {_rel(target, project)}", target)
    elif work_dir is not None:
        chat = Step("6", "Chat", StepState.PENDING, f"{run}: no checkpoint yet (the base model can chat)")
    else:
        chat = Step("6", "Chat", StepState.PENDING, "nothing to chat with yet: train first")
    steps = (
        _data_step(project, data),
        _config_step(project, config, data),
        _train_step(project, work_dir),
        convert,
        merge,
        chat,
    )
    inside = f"{project}/"  # the project's own paths, as the fields show them: relative
    steps = tuple(Step(s.key, s.name, s.state, s.why.replace(inside, ""), s.found) for s in steps)
    return Recipe(project, steps, config, data, work_dir, model)


def step_hint(step: Step, recipe: Recipe) -> str:
    """What opening the step does: its screen, or the command line that does it (xtui has no screen for it yet)."""
    config = _rel(recipe.config, recipe.project) if recipe.config else None
    hints = {
        "1": "check the dataset (against the config) or make a self-cognition one",
        "2": f"edit {config}'s PART 1: checked, a diff before saving"
        if config
        else "copy one of XTuner's built-in configs here",
        "3": f"the launch form with {config}" if config else "the launch form (no config here yet)",
        "6": _chat_hint(step, recipe),
    }
    if step.key in hints:
        return f"Enter: {hints[step.key]}"
    command = step.why.partition(": ")[2] if step.state != StepState.DONE else ""
    return f"in a shell: {command}" if command.startswith("xtui ") else step.why


def _chat_hint(step: Step, recipe: Recipe) -> str:
    """What the chat step opens: the form filled with what the recipe made, else with the config's base model."""
    if step.found is not None and step.found != recipe.work_dir:
        return f"the chat form, filled with {_rel(step.found, recipe.project)}"
    if step.found is None and (model := base_model(recipe.config, recipe.project)):
        return f"the chat form, filled with the base model {model}"
    return "pick what to chat with: base, adapter, merged, checkpoint"


def step_prompt(step: Step) -> Content:
    """A step as one option: key, mark, name, why."""
    mark, style = MARKS[step.state]
    return Content.assemble(
        (f"{step.key} ", "bold"), (f"{mark} ", style), (f"{step.name:<8}", "bold"), printable(step.why)
    )


class RecipeScreen(Screen):
    """The recipe's steps for one project folder; a key opens each, in any order."""

    DEFAULT_CSS = """
    RecipeScreen #project-row { height: 1; margin: 1 1 0 1; }
    RecipeScreen #project-row Label { width: auto; margin-right: 1; color: $text-muted; }
    RecipeScreen #project { width: 1fr; }
    RecipeScreen #steps { height: auto; margin: 1 1 0 1; }
    RecipeScreen #recipe-note { height: auto; margin: 1 2; color: $text-muted; }
    """

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("1", "open('1')", "Dataset", show=False),
        Binding("2", "open('2')", "Config", show=False),
        Binding("3", "open('3')", "Train", show=False),
        Binding("4", "open('4')", "Convert", show=False),
        Binding("5", "open('5')", "Merge", show=False),
        Binding("6", "open('6')", "Chat", show=False),
        Binding("r", "reread", "Re-read"),
        Binding("p", "focus_project", "Folder"),
    ]

    def __init__(self, project: Path | None = None) -> None:
        super().__init__()
        self.project = (project or Path.cwd()).resolve()
        self.recipe: Recipe | None = None

    def compose(self) -> ComposeResult:
        """Folder, steps, a note."""
        yield Header()
        with Horizontal(id="project-row"):
            yield Label("Project folder")
            yield PathInput(str(self.project), id="project", cwd=self.project, compact=True)
        yield OptionList(id="steps")
        yield Static("reading...", id="recipe-note")
        yield KeyBar()

    def on_mount(self) -> None:
        """Read the folder's steps."""
        self.title, self.sub_title = "New fine-tune", "XTuner's recipe, step by step"
        self.query_one("#steps", OptionList).focus()
        self.action_reread()

    def on_screen_resume(self) -> None:
        """Back from a step: its files may have changed."""
        self.action_reread()

    @on(PathInput.Submitted, "#project")
    def _project_given(self, event: PathInput.Submitted) -> None:
        """Another project folder."""
        path = Path(event.value.strip() or ".").expanduser()
        path = (path if path.is_absolute() else self.project / path).resolve()
        if not path.is_dir():
            self._note(f"✗ no such folder: {path}")
            return
        self.project = path
        self.query_one("#project", PathInput).cwd = path
        self.query_one("#steps", OptionList).focus()
        self.action_reread()

    def action_focus_project(self) -> None:
        """Type another project folder."""
        self.query_one("#project", PathInput).focus()

    def action_reread(self) -> None:
        """Read the steps again, in a worker."""
        self._note("reading...")
        self._read(self.project)

    @work(thread=True, exclusive=True, group="recipe")
    def _read(self, project: Path) -> None:
        """Read the steps off the UI thread."""
        from engine.errors import XtuiError

        try:
            recipe = read_recipe(project)
        except XtuiError as exc:
            self.app.call_from_thread(self._note, f"✗ {exc}")
            return
        except Exception as exc:  # a bug: its traceback in a file, one line here
            from tui.crash import record

            self.app.call_from_thread(self._note, f"✗ {record(exc)}")
            return
        self.app.call_from_thread(self._show, recipe)

    def run_updated(self, rec, events) -> None:
        """The app's beat: the Train step follows the project's run as it trains (the other steps on r)."""
        from dataclasses import replace

        recipe = self.recipe
        if recipe is None or recipe.work_dir is None or rec.work_dir.resolve() != recipe.work_dir.resolve():
            return
        step = train_step_of(_rel(recipe.work_dir, recipe.project), recipe.work_dir, rec.status, rec.state)
        if step != recipe.steps[2]:
            self._show(replace(recipe, steps=(*recipe.steps[:2], step, *recipe.steps[3:])))

    def _show(self, recipe: Recipe) -> None:
        """Show the steps read (unless the folder changed meanwhile); the app watches the run from now on."""
        if recipe.project != self.project:
            return
        if recipe.work_dir is not None and recipe.work_dir != getattr(self.recipe, "work_dir", None):
            self.app.watch_dir(recipe.work_dir)
        self.recipe = recipe
        steps = self.query_one("#steps", OptionList)
        highlighted = steps.highlighted
        steps.clear_options()
        steps.add_options([Option(step_prompt(s), id=s.key) for s in recipe.steps])
        nxt = next((i for i, s in enumerate(recipe.steps) if s.state != StepState.DONE), 0)
        steps.highlighted = highlighted if highlighted is not None else nxt
        self._hint()

    @on(OptionList.OptionHighlighted, "#steps")
    def _hint(self) -> None:
        """Under the steps: what the highlighted one opens, and the keys."""
        steps = self.query_one("#steps", OptionList)
        if self.recipe is None or steps.highlighted is None:
            return
        step = self.recipe.steps[steps.highlighted]
        keys = "1-6 open a step, in any order · r re-reads · p another folder"
        self._note(f"{step.key} {step.name}: {step_hint(step, self.recipe)}\n{keys}")

    def _note(self, text: str) -> None:
        """The line under the steps."""
        self.query_one("#recipe-note", Static).update(printable(text))

    @on(OptionList.OptionSelected, "#steps")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        """Open the step picked with Enter or a click."""
        self.action_open(event.option.id)

    def action_open(self, key: str) -> None:
        """Open step `key`: its screen, or the command that does it when xtui has no screen for it yet."""
        if self.recipe is None:
            return
        step = next(s for s in self.recipe.steps if s.key == key)
        recipe, project = self.recipe, self.project
        if key == "1":
            from tui.screens.data_check import DataScreen

            self.app.push_screen(DataScreen(project, recipe.data, recipe.config))
        elif key == "2":
            from tui.screens.config_form import CopyConfigScreen

            if recipe.config is None:
                self.app.push_screen(CopyConfigScreen(project), lambda copied: copied and self._edit(copied))
            else:
                self._edit(recipe.config)
        elif key == "3":
            self._launch(recipe.config)
        elif key == "6":
            self._chat(recipe)
        else:  # convert and merge: the command line does them
            self._note(f"{step.key} {step.name}: {step_hint(step, recipe)}")

    def _edit(self, config: Path) -> None:
        """Open the form on a config (one that cannot be read says why here)."""
        from engine.errors import XtuiError
        from tui.screens.config_form import ConfigFormScreen

        try:
            form = ConfigFormScreen(config, self.project)
        except XtuiError as exc:
            self._note(f"✗ {exc}")
            return
        self.app.push_screen(form)

    def _launch(self, config: Path | None) -> None:
        """The launch form in the project, with its config filled in."""
        from textual.widgets import Input

        from tui.dialogs.launch import LaunchScreen

        form = LaunchScreen(self.project)

        def fill() -> None:
            if config is not None and form.query("#config"):
                form.query_one("#config", Input).value = _rel(config, self.project)

        self.app.push_screen(form)
        self.app.call_after_refresh(fill)

    def _chat(self, recipe: Recipe) -> None:
        """The chat form filled with what the recipe made: the merged model, else the adapter on its base model."""
        from textual.widgets import Input, Select

        from engine.chat.models import SourceKind
        from tui.dialogs.chat_setup import ChatSetupScreen

        converted, merged, chat = recipe.steps[3], recipe.steps[4], recipe.steps[5]
        kind, paths = None, {}
        if merged.state == StepState.DONE:
            kind, paths = SourceKind.MERGED, {"model": merged.found}
        elif converted.state == StepState.DONE and (converted.found / "adapter_config.json").is_file():
            kind, paths = SourceKind.ADAPTER, {"model": recipe.model, "adapter": converted.found}
        elif chat.found is None and (model := base_model(recipe.config, self.project)):  # nothing made yet
            kind, paths = SourceKind.BASE, {"model": model}
        template = _template_of(recipe.config)
        form = ChatSetupScreen(self.project)

        def fill() -> None:
            if kind is not None:
                form.query_one("#kind", Select).value = kind
            for name, path in paths.items():
                if path is not None:
                    form.query_one(f"#{name}", Input).value = (
                        path if isinstance(path, str) else _rel(path, self.project)
                    )
            if template is not None:
                form.query_one("#template", Select).value = template

        self.app.push_screen(form, lambda spec: spec and self.app.open_chat(spec))
        self.app.call_after_refresh(fill)


def _template_of(config: Path | None) -> str | None:
    """The prompt template a config trains with, when it can be read."""
    from engine.xtuner.configs import ConfigError
    from engine.xtuner.templates import template_of_config

    if config is None:
        return None
    try:
        return template_of_config(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ConfigError):
        return None
