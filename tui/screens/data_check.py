"""The dataset screen: make the recipe's self-cognition dataset, and check a dataset against a config, as `xtui data` does."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Header, Input, Label, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from tui.terminal_text import printable
from tui.widgets.key_bar import KeyBar
from tui.widgets.path_input import PathInput

DATA_SUFFIXES = (".json", ".jsonl")
DEFAULT_REPEAT = 100
PROBLEM_WORDS = ("problem", "  record ", "does not read it", "tokens: not counted", "  (reading stopped")


def _styled(lines: list[str]) -> Content:
    """The check's lines, problems in the error colour, histogram bars and ⟦trained⟧ text in the accent colour."""
    parts: list[tuple[str, str]] = []
    for line in lines:
        line = printable(line)
        style = "$error" if line.startswith(PROBLEM_WORDS) and "as trained" not in line else ""
        style = style or ("$accent" if "█" in line or "▏" in line else "")
        style = style or ("bold" if not line.startswith(" ") else "")
        parts.append((line + "\n", style))
    return Content.assemble(*parts)


class ReplaceScreen(ModalScreen[bool]):
    """The dataset file exists: replace it (True) or keep it."""

    BINDINGS = [Binding("escape", "dismiss(False)", "Keep it"), Binding("y", "dismiss(True)", "Replace")]

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def compose(self) -> ComposeResult:
        """The question and its answers."""
        with Vertical(classes="dialog"):
            yield Static(printable(f"{self.path} already exists. Replace it with the new dataset?"))
            with Horizontal(classes="dialog-buttons"):
                yield Button("Keep it", id="keep", variant="primary", compact=True)
                yield Button("Replace (y)", id="replace", compact=True)

    def on_mount(self) -> None:
        """Keeping is one key away."""
        self.query_one("#keep", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        """Answer with the button."""
        self.dismiss(event.button.id == "replace")


class DataScreen(Screen):
    """Two tabs: check a dataset (against a config), and write a self-cognition one."""

    DEFAULT_CSS = """
    DataScreen .field { height: 1; margin: 1 1 0 1; }
    DataScreen .field Label { width: 14; color: $text-muted; }
    DataScreen .field Input { width: 1fr; }
    DataScreen .field .short { width: 10; }
    DataScreen .field Label.inline { width: auto; margin: 0 1 0 2; }
    DataScreen #check-result { height: 1fr; margin: 1 1 0 1; }
    DataScreen #new-note, DataScreen #check-note { height: auto; margin: 1 1 0 1; color: $text-muted; }
    DataScreen #answer { height: auto; margin: 1 1 0 1; }
    DataScreen .error { color: $error; }
    """

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+r", "check", "Check"),
        Binding("ctrl+s", "write", "Write dataset"),
        Binding("ctrl+g", "use_data", "Train on it"),
    ]

    def __init__(self, project: Path, data: Path | None = None, config: Path | None = None) -> None:
        from tui.screens.recipe import base_model

        super().__init__()
        self.project = project
        self.data, self.config = data, config
        self.model = base_model(config, project) or ""  # the answer names InternLM2-1.8B only for that model
        self.offered: Path | None = None  # a data file the config does not train on: ctrl+g sets its data path

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """ctrl+g only while a file the config does not train on is offered."""
        return self.offered is not None if action == "use_data" else True

    def _shown(self, path: Path | None) -> str:
        """A path as the fields show it: relative to the project when inside it."""
        if path is None:
            return ""
        return str(path.relative_to(self.project)) if path.is_relative_to(self.project) else str(path)

    def compose(self) -> ComposeResult:
        """Check tab first when there is data to check, else the new-dataset tab."""
        yield Header()
        start = "check" if self.data is not None and self.data.exists() else "new"
        with TabbedContent(initial=start):
            with TabPane("Check a dataset", id="check"):
                with Horizontal(classes="field"):
                    yield Label("Dataset")
                    yield PathInput(
                        self._shown(self.data), id="data", cwd=self.project, suffixes=DATA_SUFFIXES, compact=True
                    )
                with Horizontal(classes="field"):
                    yield Label("Config")
                    yield PathInput(
                        self._shown(self.config), id="config", cwd=self.project, suffixes=(".py",),
                        placeholder="optional: map_fn, token lengths, previews", compact=True,
                    )  # fmt: skip
                with Horizontal(classes="field"):
                    yield Label("Images")
                    yield PathInput(
                        id="images", cwd=self.project, compact=True,
                        placeholder="LLaVA: the images' folder (default: the config's, or the data's)",
                    )  # fmt: skip
                yield Static("ctrl+r (or Enter) checks every record", id="check-note")
                with VerticalScroll(id="check-result"):
                    yield Static(id="check-text")
            with TabPane("New self-cognition data", id="new"):
                with Horizontal(classes="field"):
                    yield Label("Write to")
                    out = self.data if self.data is not None and not self.data.exists() else self.project / "data.json"
                    yield PathInput(self._shown(out), id="out", cwd=self.project, suffixes=DATA_SUFFIXES, compact=True)
                with Horizontal(classes="field"):
                    yield Label("Name")
                    yield Input(id="name", placeholder="the assistant's name", compact=True)
                with Horizontal(classes="field"):
                    yield Label("Owner")
                    yield Input(id="owner", placeholder="optional: whose assistant it is", compact=True)
                with Horizontal(classes="field"):
                    yield Label("Repeat")
                    yield Input(str(DEFAULT_REPEAT), id="repeat", type="integer", classes="short", compact=True)
                with Horizontal(classes="field"):
                    yield Label("Mix in")
                    yield PathInput(
                        id="mix", cwd=self.project, suffixes=DATA_SUFFIXES, compact=True,
                        placeholder="optional: general data, against forgetting",
                    )  # fmt: skip
                    yield Label("ratio", classes="inline")
                    yield Input(id="ratio", type="number", placeholder="1", classes="short", compact=True)
                yield Static(id="answer")
                yield Static("ctrl+s writes it; an existing file is replaced only if you say so", id="new-note")
        yield KeyBar()

    def on_mount(self) -> None:
        """Check at once when there is something to check."""
        self.title, self.sub_title = "Dataset", printable(str(self.project), newlines=False)
        if self.data is not None and self.data.exists():
            self.query_one("#data", PathInput).focus()
            self.action_check()
        else:
            self.query_one("#name", Input).focus()

    @on(Input.Changed, "#name, #owner, #repeat")
    def _answer(self) -> None:
        """The answer the dataset will teach, as typed so far (or why there is none)."""
        from engine.data.selfcognition import QUESTIONS, SelfCognitionError, answer

        value = lambda field: self.query_one(f"#{field}", Input).value.strip()  # noqa: E731
        try:
            taught = answer(value("name"), value("owner"), model=self.model)
        except SelfCognitionError as exc:
            taught = f"({exc})"
        said = f"{len(QUESTIONS)} questions x {value('repeat') or DEFAULT_REPEAT}, each answered: {taught}"
        self.query_one("#answer", Static).update(printable(said))

    def _path(self, field: str) -> Path | None:
        """A path field's value, relative to the project; None when empty."""
        text = self.query_one(f"#{field}", Input).value.strip()
        if not text:
            return None
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.project / path

    @on(Input.Submitted, "#data, #config, #images")
    def _check_submitted(self) -> None:
        """Enter in a check field checks."""
        self.action_check()

    def action_check(self) -> None:
        """Check the dataset in a worker."""
        self.query_one(TabbedContent).active = "check"
        data = self._path("data")
        if data is None:
            self._check_note("✗ name a dataset file first", error=True)
            return
        config = self._path("config")
        self._check_note(f"checking every record of {data.name}" + (" and counting tokens..." if config else "..."))
        self.query_one("#check-text", Static).update("")
        self._check(data, config, self._path("images"))

    def _check_note(self, text: str, error: bool = False) -> None:
        """The line above the result."""
        note = self.query_one("#check-note", Static)
        note.update(printable(text))
        note.set_class(error, "error")

    @work(thread=True, exclusive=True, group="data-check")
    def _check(self, data: Path, config: Path | None, images: Path | None) -> None:
        """check_data off the UI thread; its lines (as `xtui data check` prints them) or why it could not run."""
        from engine.errors import XtuiError
        from engine.xtuner.data_check import check_data
        from tui.cli.data import describe_check

        worker = get_current_worker()

        def show(*args) -> None:
            """Post to the UI unless a newer check replaced this one (a thread cannot be stopped mid-check)."""
            if not worker.is_cancelled:
                self.app.call_from_thread(*args)

        try:
            found = check_data(data, self.project, config, images)
        except XtuiError as exc:
            show(self._check_note, f"✗ {exc}", True)
            return
        except Exception as exc:  # a bug: its traceback in a file, one line here
            from tui.crash import record

            show(self._check_note, f"✗ {record(exc)}", True)
            return
        show(self._checked, found, describe_check(found))

    def _checked(self, found, lines: list[str]) -> None:
        """Show what the check found."""
        self.last_check = found
        verdict = "✓ fine" if found.ok else "✗ has problems"
        self._check_note(f"{verdict}: {found.report.path}{self._offer(found.report.path)}", error=not found.ok)
        self.query_one("#check-text", Static).update(_styled(lines))

    def _offer(self, data: Path) -> str:
        """When the config trains on another file: that said, and ctrl+g offered to set its data path to `data`."""
        from tui.screens.recipe import config_data, data_setting

        config = self._path("config") or self.config
        trains = config_data(config, self.project) if config is not None and config.is_file() else None
        setting = data_setting(config) if trains is not None else None
        self.offered = data if setting and trains.resolve() != data.resolve() else None
        self.refresh_bindings()
        if self.offered is None:
            return ""
        return f"\nthe config trains on {self._shown(trains)}, not this file: ctrl+g sets its {setting} to it"

    def action_use_data(self) -> None:
        """Set the config's data path to the offered file: the edit shown as a diff first, as the config form does."""
        from engine.errors import XtuiError
        from engine.xtuner.config_edit import plan_edit, write_edit
        from engine.xtuner.config_values import config_values
        from tui.screens.config_form import DiffScreen
        from tui.screens.recipe import data_setting

        config, data = self._path("config") or self.config, self.offered
        if config is None or data is None:
            return
        setting = data_setting(config)
        try:
            now = config_values(config.read_text(encoding="utf-8")).get(setting)
            value = str(data) if isinstance(now, str) and Path(now).is_absolute() else self._shown(data)  # its style
            edit = plan_edit(config, [f"{setting}={value!r}"], self.project)
        except (OSError, UnicodeDecodeError, XtuiError) as exc:
            self._note_here(f"✗ {exc}", error=True)
            return

        def write(yes: bool) -> None:
            if not yes:
                return
            try:
                write_edit(edit)
            except XtuiError as exc:
                self._note_here(f"✗ {exc}", error=True)
                return
            self.offered = None
            self.refresh_bindings()
            self._note_here(f"✓ wrote {config}: it trains on {self._shown(data)} now")

        self.app.push_screen(DiffScreen(edit.diff, config), write)

    def _note_here(self, text: str, error: bool = False) -> None:
        """The note of the tab showing."""
        (self._check_note if self.query_one(TabbedContent).active == "check" else self._new_note)(text, error)

    def action_write(self) -> None:
        """Check the form, ask first when the file exists, then write the self-cognition dataset in a worker."""
        from engine.data.selfcognition import SelfCognitionError, answer

        self.query_one(TabbedContent).active = "new"
        value = lambda field: self.query_one(f"#{field}", Input).value.strip()  # noqa: E731
        out, mix, ratio = self._path("out"), self._path("mix"), value("ratio")
        if out is None:
            self._new_note("✗ name the file to write", error=True)
            return
        try:
            repeat = int(value("repeat") or DEFAULT_REPEAT)
            ratio_value = float(ratio) if ratio else (1.0 if mix else 0.0)
            answer(value("name"), value("owner"))  # a missing name is said before any question about the file
        except ValueError:
            self._new_note("✗ repeat is a whole number and ratio a number", error=True)
            return
        except SelfCognitionError as exc:
            self._new_note(f"✗ {exc}", error=True)
            return

        def write(replace: bool) -> None:
            self._new_note(f"writing {out}...")
            self._write_file(out, value("name"), repeat, value("owner"), mix, ratio_value, replace)

        if out.exists():
            self.app.push_screen(ReplaceScreen(out), lambda replace: replace and write(True))
            return
        write(False)

    def _new_note(self, text: str, error: bool = False) -> None:
        """The line under the new-dataset form."""
        note = self.query_one("#new-note", Static)
        note.update(printable(text))
        note.set_class(error, "error")

    @work(thread=True, exclusive=True, group="data-new")
    def _write_file(
        self, out: Path, name: str, repeat: int, owner: str, mix: Path | None, ratio: float, replace: bool
    ) -> None:
        """write_self_cognition off the UI thread, then say what was written."""
        from engine.data.selfcognition import write_self_cognition
        from engine.errors import XtuiError

        try:
            written = write_self_cognition(out, name, repeat, owner, "", mix, ratio, replace, self.model)
        except XtuiError as exc:
            self.app.call_from_thread(self._new_note, f"✗ {exc}", True)
            return
        self.app.call_from_thread(self._written, written)

    def _written(self, written) -> None:
        """Say what was written and put it in the check tab's dataset field."""
        general = f" + {len(written.general.rows)} general" if written.general else ""
        self._new_note(
            f"✓ wrote {written.path}: {written.records} records ({written.self_cognition} self-cognition{general}); "
            f"ctrl+r checks it{self._offer(written.path)}"
        )
        self.query_one("#data", Input).value = self._shown(written.path)
