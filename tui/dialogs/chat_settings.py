"""The chat settings dialog: prompt template, system prompt and sampling, checked before they apply."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static, TextArea

from engine.chat.decoding import Sampling
from engine.xtuner.templates import TemplateError, templates

# (field of Sampling, label, its name in a sentence, Input type)
FIELDS = [
    ("temperature", "Temp. (0 = greedy)", "temperature", "number"),
    ("top_p", "Top-p", "top-p", "number"),
    ("top_k", "Top-k (0 = off)", "top-k", "integer"),
    ("max_new_tokens", "Max new tokens", "max new tokens", "integer"),
    ("repetition_penalty", "Repetition penalty", "repetition penalty", "number"),
    ("seed", "Seed", "seed", "integer"),
]


@dataclass(frozen=True, slots=True)
class ChatSettings:
    """How a chat prompts and samples: template name (None: raw text), system prompt, sampling."""

    template: str | None = None
    system: str = ""
    sampling: Sampling = field(default_factory=Sampling)


class ChatSettingsScreen(ModalScreen[ChatSettings | None]):
    """Edit chat settings; Ctrl+S applies them when they are valid (dismissed with them), Esc cancels (None)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "apply", "Apply")]
    DEFAULT_CSS = """
    #chat-settings-form Label { margin-top: 1; color: $text-muted; }
    #chat-settings-form #template-label { margin-top: 0; }
    #chat-settings-form .row { height: auto; }
    #chat-settings-form .cell { width: 1fr; height: auto; margin-right: 2; }
    #chat-settings-form #system { height: 3; }
    #chat-settings-error { width: 1fr; height: auto; }
    """

    def __init__(self, settings: ChatSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or ChatSettings()

    def compose(self) -> ComposeResult:
        """The form."""
        try:
            names, problem = list(templates()), ""
        except TemplateError as exc:
            names, problem = [], f"✗ {exc}"
        if self.settings.template and self.settings.template not in names:
            names.append(self.settings.template)
        with VerticalScroll(classes="dialog", id="chat-settings-form") as form:
            form.border_title = "Chat settings"
            yield Label("Prompt template", id="template-label")
            yield Select(
                [(name, name) for name in names], id="template", prompt="none", compact=True,
                value=self.settings.template or Select.BLANK,
            )  # fmt: skip
            yield Label("System prompt")
            yield TextArea(self.settings.system, id="system", compact=True, soft_wrap=True)
            for row in (FIELDS[:3], FIELDS[3:]):
                with Horizontal(classes="row"):
                    for name, label, _, kind in row:
                        with Vertical(classes="cell"):
                            yield Label(label)
                            yield Input(str(getattr(self.settings.sampling, name)), id=name, type=kind, compact=True)
            with Horizontal(classes="dialog-buttons"):
                yield Static(problem, id="chat-settings-error", classes="error")
                yield Button("Cancel (esc)", id="cancel")
                yield Button("Apply (ctrl+s)", id="apply", variant="primary")

    def on_mount(self) -> None:
        """Start at the template."""
        self.query_one("#template", Select).focus()

    def read(self) -> tuple[ChatSettings | None, list[str]]:
        """The settings the form describes, or None and what is wrong with them."""
        values, problems = {}, []
        for name, _, words, kind in FIELDS:
            text = self.query_one(f"#{name}", Input).value.strip()
            try:
                values[name] = int(text) if kind == "integer" else float(text)
            except ValueError:
                problems.append(f"{words} must be a {'whole ' if kind == 'integer' else ''}number")
        if problems:
            return None, problems
        sampling = Sampling(**values)
        if problems := sampling.problems():
            return None, problems
        template = self.query_one("#template", Select).value
        system = self.query_one("#system", TextArea).text
        return ChatSettings(template if isinstance(template, str) else None, system, sampling), []

    def on_input_changed(self) -> None:
        """A fresh edit clears the last verdict."""
        self.query_one("#chat-settings-error", Static).update("")

    @on(Button.Pressed, "#apply")
    def action_apply(self) -> None:
        """Close with the new settings, or say inline what is wrong with them."""
        settings, problems = self.read()
        if settings is None:
            self.query_one("#chat-settings-error", Static).update("\n".join(f"✗ {p}" for p in problems))
            return
        self.dismiss(settings)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Close without changing anything."""
        self.dismiss(None)
