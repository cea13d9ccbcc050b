"""The config form: a config's PART 1 settings edited in place (checked, shown as a diff, the rest kept byte for byte),
with the config's advice beside them; the config is read, never run. Also the picker that copies a built-in config."""

from __future__ import annotations

import ast
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Header, Input, Label, OptionList, Select, Static

from engine.xtuner.config_check import MODEL_SETTINGS
from tui.terminal_text import printable
from tui.widgets.key_bar import KeyBar
from tui.widgets.path_input import PathInput

# PART 1 settings the form offers, in its order (each only when the config has it); data paths go after the models.
MODELS = (*MODEL_SETTINGS, "pretrained_pth")
DATA = ("data_root", "image_folder")
TRAINING = (
    "prompt_template", "max_length", "pack_to_max_length", "batch_size", "accumulative_counts", "max_epochs", "lr",
    "save_steps", "save_total_limit", "evaluation_freq", "evaluation_inputs", "SYSTEM",
)  # fmt: skip
CHOICES = {"pack_to_max_length": ("True", "False")}
MAP_FN = "dataset_map_fn"


def form_settings(source: str) -> list[str]:
    """The PART 1 settings of `source` the form shows: model paths, data paths, then the training settings."""
    from engine.xtuner.config_values import part1_settings

    names = [s.name for s in part1_settings(source)]
    data = [n for n in names if n in DATA or n == "data_files" or (n.endswith("_path") and n not in MODELS)]
    return [n for n in MODELS if n in names] + data + [n for n in TRAINING if n in names]


def map_fn_paths(source: str) -> dict[str, str]:
    """The dotted paths (as configs.edit_call takes them) of the dict(...) calls that set dataset_map_fn, with its text."""
    found: dict[str, str] = {}

    def walk(call: ast.Call, path: str) -> None:
        for kw in call.keywords:
            if kw.arg == MAP_FN:
                found[path] = ast.unparse(kw.value)
            elif kw.arg and isinstance(kw.value, ast.Call):
                walk(kw.value, f"{path}.{kw.arg}")

    for node in ast.parse(source).body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        if isinstance(target, ast.Name) and isinstance(node.value, ast.Call):
            walk(node.value, target.id)
    return found


def with_map_fn(source: str, path: str, map_fn: str) -> str:
    """`source` with the dataset at `path` reading through `map_fn`, imported from xtuner when the config lacks it."""
    from engine.xtuner.config_values import top_level_names
    from engine.xtuner.configs import edit_call, insert_after_imports

    if map_fn != "None" and map_fn not in top_level_names(source):
        source = insert_after_imports(source, f"from xtuner.dataset.map_fns import {map_fn}")
    return edit_call(source, path, {MAP_FN: map_fn})


def one_line(text: str) -> str:
    """A value's source text on one line (a list written over several lines, joined), for an Input."""
    if "\n" not in text:
        return text
    try:
        return ast.unparse(ast.parse(text, mode="eval"))
    except SyntaxError:
        return " ".join(text.split())


def _diff_content(diff: str) -> Content:
    """A unified diff, added lines in green and removed ones in red."""
    parts = []
    for line in printable(diff).splitlines():
        style = "$success" if line.startswith("+") else "$error" if line.startswith("-") else "$text-muted"
        parts.append((line + "\n", "bold " + style if line.startswith(("+++", "---")) else style))
    return Content.assemble(*parts)


class DiffScreen(ModalScreen[bool]):
    """The edit as a diff: write it (True) or go back to the form."""

    BINDINGS = [
        Binding("escape", "dismiss(False)", "Back"),
        Binding("y", "dismiss(True)", "Write"),
        Binding("down", "scroll(1)", "Scroll down", show=False),
        Binding("up", "scroll(-1)", "Scroll up", show=False),
        Binding("pagedown", "scroll(10)", "Page down", show=False),
        Binding("pageup", "scroll(-10)", "Page up", show=False),
    ]

    def __init__(self, diff: str, path: Path) -> None:
        super().__init__()
        self.diff, self.path = diff, path

    def compose(self) -> ComposeResult:
        """The diff and the answers."""
        with Vertical(classes="dialog", id="diff-dialog"):
            yield Static(printable(f"Write these changes to {self.path}?", newlines=False), classes="title")
            yield Static(_diff_content(self.diff), id="diff")
            with Horizontal(classes="dialog-buttons"):
                yield Static("y write · esc back", id="diff-keys")
                yield Button("Back", id="back", compact=True)
                yield Button("Write (y)", id="write", variant="primary", compact=True)

    DEFAULT_CSS = """
    DiffScreen #diff-dialog { overflow-y: auto; }
    DiffScreen #diff-dialog .title { dock: top; }
    DiffScreen #diff-dialog .dialog-buttons { dock: bottom; }
    DiffScreen #diff-keys { width: 1fr; color: $text-muted; }
    """

    def on_mount(self) -> None:
        """Writing is one key away."""
        self.query_one("#write", Button).focus()

    def action_scroll(self, lines: int) -> None:
        """Scroll the diff between its title and its buttons, which stay in view."""
        self.query_one("#diff-dialog").scroll_relative(y=lines, animate=False)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        """Answer with the button."""
        self.dismiss(event.button.id == "write")


class ConfigFormScreen(Screen):
    """One field a PART 1 setting; each value is checked as it is typed; Ctrl+S shows the diff, then writes."""

    DEFAULT_CSS = """
    ConfigFormScreen #form { height: 1fr; margin: 0 1; }
    ConfigFormScreen .field { height: 1; }
    ConfigFormScreen .field Label { width: 31; color: $text-muted; }
    ConfigFormScreen .field Input, ConfigFormScreen .field Select { width: 1fr; }
    ConfigFormScreen .problem { color: $error; height: auto; padding-left: 31; }
    ConfigFormScreen #form-note { height: auto; margin: 0 1; }
    ConfigFormScreen #advice { height: auto; max-height: 8; margin: 0 1; border-top: solid $primary 40%; }
    ConfigFormScreen .error { color: $error; }
    """

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+r", "advise", "Advice"),
    ]

    def __init__(self, config: Path, project: Path) -> None:
        super().__init__()
        from engine.xtuner.configs import ConfigError

        self.config, self.project = config, project
        try:
            self.source = config.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {config}: {getattr(exc, 'strerror', None) or exc}") from None
        self.names = form_settings(self.source)
        self.map_fn_paths = map_fn_paths(self.source)
        self.shown: dict[str, str] = {}  # each field's value as first shown: a field left so is not edited
        self._warned = False  # Esc with unsaved changes said so once

    def _initial(self, name: str) -> str:
        """What a field shows first: the setting's source text (the template's name for prompt_template)."""
        from engine.xtuner.config_values import part1_settings
        from engine.xtuner.templates import template_of_config

        if name == "prompt_template":
            return template_of_config(self.source) or ""
        if name == MAP_FN:
            return next(iter(self.map_fn_paths.values()))
        return one_line(next(s.text for s in part1_settings(self.source) if s.name == name))

    def _field(self, name: str, value: str):
        """The widget for one setting: a choice for templates, booleans and map_fns, a path field, or text."""
        from engine.data.formats import MAP_FNS
        from engine.xtuner.templates import templates

        options = {
            "prompt_template": tuple(templates()),
            MAP_FN: tuple(dict.fromkeys([*MAP_FNS.values(), value])),
            **CHOICES,
        }.get(name)
        if options is not None:
            return Select(
                [(o, o) for o in options], value=value if value in options else Select.BLANK, id=f"f-{name}",
                prompt=value or "(none)", compact=True,
            )  # fmt: skip
        if name in MODELS or name in DATA or name.endswith("_path"):
            return PathInput(value, id=f"f-{name}", cwd=self.project, compact=True)
        return Input(value, id=f"f-{name}", compact=True)

    def compose(self) -> ComposeResult:
        """The fields, a note, the advice."""
        yield Header()
        with VerticalScroll(id="form"):
            for name in [*self.names, *([MAP_FN] if len(self.map_fn_paths) == 1 else [])]:
                value = self._initial(name)
                self.shown[name] = value
                with Horizontal(classes="field"):
                    yield Label(name)
                    yield self._field(name, value)
                yield Static(id=f"p-{name}", classes="problem")
        yield Static("ctrl+s: the changes as a diff, then written · the config is read, never run", id="form-note")
        yield Static("advice: reading...", id="advice")
        yield KeyBar()

    def on_mount(self) -> None:
        """Title, first field, advice."""
        self.title, self.sub_title = "Config", printable(str(self.config), newlines=False)
        for problem in self.query(".problem"):
            problem.display = False
        fields = self.query("#form Input, #form Select")
        if fields:
            fields.first().focus()
        self.action_advise()

    def _value(self, name: str) -> str:
        """A field's current value as text."""
        widget = self.query_one(f"#f-{name}")
        if isinstance(widget, Select):
            return self.shown[name] if widget.value is Select.BLANK else str(widget.value)
        return widget.value

    def assignments(self) -> list[str]:
        """KEY=VALUE for every changed PART 1 field (dataset_map_fn is edited on its own)."""
        return [f"{n}={self._value(n)}" for n in self.names if self._value(n).strip() != self.shown[n].strip()]

    def _problem(self, name: str, text: str | None) -> None:
        """Show (or clear) what is wrong with a field's value."""
        widget = self.query_one(f"#p-{name}", Static)
        widget.update(printable(f"✗ {text}") if text else "")
        widget.display = bool(text)

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self, event: Input.Changed | Select.Changed) -> None:
        """Check a field's new value with the engine's checks."""
        from engine.errors import XtuiError
        from engine.xtuner.config_edit import plan_edit

        name = (event.control.id or "").removeprefix("f-")
        if name not in self.shown or name == MAP_FN:
            return
        problem = None
        if self._value(name).strip() != self.shown[name].strip():
            try:
                plan_edit(self.config, [f"{name}={self._value(name)}"], self.project)
            except XtuiError as exc:
                problem = str(exc)
        self._problem(name, problem)

    def _edited(self) -> bool:
        """True when a field differs from the file."""
        return bool(self.assignments()) or (MAP_FN in self.shown and self._value(MAP_FN) != self.shown[MAP_FN])

    def action_back(self) -> None:
        """Leave the form; with unsaved changes, only on a second Esc."""
        if self._edited() and not self._warned:
            self._warned = True
            self._note("✗ unsaved changes: ctrl+s saves them, Esc again leaves without", error=True)
            return
        self.app.pop_screen()

    def planned(self):
        """The whole edit the form describes (engine.xtuner.config_edit.ConfigEdit), or XtuiError for a wrong value."""
        from engine.xtuner.config_edit import Change, ConfigEdit, plan_edit

        edit = plan_edit(self.config, self.assignments(), self.project)
        if MAP_FN in self.shown and (fn := self._value(MAP_FN)) != self.shown[MAP_FN]:
            path = next(iter(self.map_fn_paths))
            edited = with_map_fn(edit.edited, path, fn)
            change = Change(f"{path}.{MAP_FN}", self.shown[MAP_FN], fn)
            edit = ConfigEdit(edit.path, edit.source, edited, (*edit.changes, change))
        return edit

    def _note(self, text: str, error: bool = False) -> None:
        """The line under the form."""
        note = self.query_one("#form-note", Static)
        note.update(printable(text))
        note.set_class(error, "error")

    def action_save(self) -> None:
        """Check every change, show the diff, write when asked."""
        from engine.errors import XtuiError

        try:
            edit = self.planned()
        except XtuiError as exc:
            self._note(f"✗ {exc}", error=True)
            return
        if edit.edited == edit.source:
            self._note("nothing to save: no value changed")
            return
        self._note(f"{len(edit.changes)} change(s): write them or go back")
        self.app.push_screen(DiffScreen(edit.diff, self.config), lambda write: write and self._write(edit))

    def _write(self, edit) -> None:
        """Write the edit; the form now shows the file as written."""
        from engine.errors import XtuiError
        from engine.xtuner.config_edit import write_edit

        try:
            write_edit(edit)
        except XtuiError as exc:
            self._note(f"✗ {exc}", error=True)
            return
        self.source = edit.edited
        self.shown = {name: self._value(name) for name in self.shown}
        self._note(f"✓ wrote {self.config}: {', '.join(c.name for c in edit.changes)}")
        self.action_advise()

    def action_advise(self) -> None:
        """Read the advice on the form's values (the file as it would be written), in a worker."""
        from engine.errors import XtuiError

        try:
            edit = self.planned()
        except XtuiError as exc:
            self._advice([("on", "the form's values: one is wrong"), ("problem", str(exc))])
            return
        self.query_one("#advice", Static).update("advice: reading (the tokenizer too, when it is local)...")
        self._advise(self.config, edit.edited if edit.edited != edit.source else None)

    @work(thread=True, exclusive=True, group="config-advice")
    def _advise(self, config: Path, edited: str | None) -> None:
        """engine.xtuner.config_advice.advise off the UI thread, as lines; unsaved edits go in a hidden file beside the
        config (read, never run, then removed)."""
        import tempfile

        from engine.errors import XtuiError
        from engine.xtuner.config_advice import advise
        from tui.cli.config import describe_length

        on = ("on", "the form's values (not saved yet)" if edited is not None else f"{config.name} as saved")
        target = config
        try:
            if edited is not None:
                with tempfile.NamedTemporaryFile(
                    "w", encoding="utf-8", dir=config.parent, prefix=".xtui-advice-", suffix=".py", delete=False
                ) as file:
                    file.write(edited)
                target = Path(file.name)
            found = advise(target, self.project)
            run = describe_length(found.length, target).removeprefix("run: ") if found.length is not None else None
        except (OSError, XtuiError) as exc:
            self.app.call_from_thread(self._advice, [on, ("problem", str(exc).replace(str(target), str(config)))])
            return
        except Exception as exc:  # a bug: its traceback in a file, one line here
            from tui.crash import record

            self.app.call_from_thread(self._advice, [on, ("problem", record(exc))])
            return
        finally:
            if target != config:
                target.unlink(missing_ok=True)
        lines = [(str(a.severity), a.message.replace(str(target), str(config))) for a in found.advice]
        lines = [on, *(lines or [("ok", "nothing found to mend")])]
        if run is not None:
            lines.append(("run", run))
        self.app.call_from_thread(self._advice, lines)

    def _advice(self, lines: list[tuple[str, str]]) -> None:
        """Show the advice, problems in the error colour, warnings in the warning colour."""
        styles = {"problem": "$error", "warning": "$warning", "ok": "$success"}
        parts = []
        for kind, text in lines:
            parts += [(f"{kind}: ", "bold " + styles.get(kind, "$text-muted")), (printable(text) + "\n", "")]
        self.query_one("#advice", Static).update(Content.assemble(*parts))


class CopyConfigScreen(ModalScreen[Path | None]):
    """Pick one of XTuner's built-in configs (type to filter) and copy it into the project, as copy-cfg does."""

    DEFAULT_CSS = "CopyConfigScreen #builtins { height: 12; } CopyConfigScreen #filter { margin: 1 0; }"
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("down", "move(1)", "Next", show=False),  # from the filter: the list's own keys when it has focus
        Binding("up", "move(-1)", "Previous", show=False),
    ]

    def __init__(self, project: Path) -> None:
        super().__init__()
        self.project = project

    def action_move(self, step: int) -> None:
        """Move the highlight while typing in the filter."""
        listing = self.query_one("#builtins", OptionList)
        if listing.option_count:
            listing.highlighted = ((listing.highlighted or 0) + step) % listing.option_count

    def compose(self) -> ComposeResult:
        """Filter, list, note."""
        with Vertical(classes="dialog"):
            yield Static("Copy a built-in config into the project", classes="title")
            yield Input(id="filter", placeholder="type part of a name, e.g. internlm2_chat_1_8b_qlora", compact=True)
            yield OptionList(id="builtins")
            yield Static(printable(f"Enter copies it into {self.project} as NAME_copy.py"), id="copy-note")

    def on_mount(self) -> None:
        """Every built-in, filtered as typed."""
        self._filter("")
        self.query_one("#filter", Input).focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        """Filter the list."""
        self._filter(event.value)

    def _filter(self, pattern: str) -> None:
        """Show the built-ins whose name contains `pattern`."""
        from engine.xtuner.configs import list_builtin

        names = list_builtin(pattern.strip())
        listing = self.query_one("#builtins", OptionList)
        listing.clear_options()
        listing.add_options(names)
        if names:
            listing.highlighted = 0

    @on(Input.Submitted, "#filter")
    def _submitted(self) -> None:
        """Enter in the filter copies the highlighted one."""
        listing = self.query_one("#builtins", OptionList)
        if listing.highlighted is not None:
            self._copy(str(listing.get_option_at_index(listing.highlighted).prompt))

    @on(OptionList.OptionSelected, "#builtins")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        """Copy the chosen one."""
        self._copy(str(event.option.prompt))

    def _copy(self, name: str) -> None:
        """Copy it (never over an existing file) and hand its path back."""
        from engine.errors import XtuiError
        from engine.xtuner.configs import copy_builtin

        try:
            target = copy_builtin(name, self.project)
        except XtuiError as exc:
            self.query_one("#copy-note", Static).update(printable(f"✗ {exc}"))
            return
        self.dismiss(target)
