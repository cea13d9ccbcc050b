"""The form that picks what to chat with: base, adapter, merged, checkpoint or LLaVA, and how to load it."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from engine.chat.decoding import DECODERS
from engine.chat.models import LoadOptions, SourceKind
from engine.chat.spec import DEFAULT_TEMPLATE, KIND_PATHS, NO_TEMPLATE, ChatSpec, SpecError, build_spec
from engine.xtuner.templates import templates
from tui.widgets.path_input import PathInput

# The path fields, by their build_spec argument; each kind shows those of KIND_PATHS.
FIELDS = {
    "model": "Model folder (base, merged, or the LLM under the adapter / LLaVA)",
    "adapter": "Adapter folder (a pth_to_hf output)",
    "checkpoint": "Checkpoint (iter_N.pth of a run)",
    "config": "The run's config (default: the one in the checkpoint's work dir)",
    "llava": "LLaVA folder (projector, adapters)",
    "visual_encoder": "Visual encoder folder (when the LLaVA folder has none)",
    "compare": "A/B: a second adapter folder or checkpoint on the same base (optional)",
}


class ChatSetupScreen(ModalScreen[ChatSpec | None]):
    """Fill in the source; Ctrl+S (or Chat) dismisses with a ChatSpec once the paths check out."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"), Binding("ctrl+s", "chat", "Chat")]

    def __init__(self, cwd: Path) -> None:
        super().__init__()
        self.cwd = cwd

    def compose(self) -> ComposeResult:
        """The form."""
        with VerticalScroll(classes="dialog", id="chat-setup"):
            yield Static("Chat with a model", classes="title")
            yield Select(
                [(k, k) for k in SourceKind], value=SourceKind.BASE, allow_blank=False, id="kind", compact=True
            )
            for field_id, label in FIELDS.items():
                with Vertical(id=f"field-{field_id}", classes="field"):
                    yield Label(label)
                    yield PathInput(id=field_id, cwd=self.cwd, compact=True)
            with Horizontal(classes="row"):
                with Vertical(classes="cell"):
                    yield Label("Device")
                    yield Input("auto", id="device", placeholder="auto, cpu, cuda:0", compact=True)
                with Vertical(classes="cell"):
                    yield Label("Decoder")
                    yield Select(
                        [(d, d) for d in DECODERS], value="auto", allow_blank=False, id="decoder", compact=True
                    )
                with Vertical(classes="cell"):
                    yield Label("Template")
                    names = [(name, name) for name in templates()]
                    yield Select(names, value=DEFAULT_TEMPLATE, prompt="none", id="template", compact=True)
            yield Checkbox("4-bit (bitsandbytes, GPU only)", id="bits4", compact=True)
            yield Static(
                "Decoder auto: torch.compile on a GPU (fastest, ~30 s to warm up), eager on the CPU; graph: quick start",
                classes="hint", markup=False,
            )  # fmt: skip
            yield Static(id="setup-error", classes="error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Chat (ctrl+s)", id="chat", variant="primary")

    def on_mount(self) -> None:
        """Show the fields of the default kind."""
        self._show_fields(SourceKind.BASE)
        self.query_one("#kind", Select).focus()

    @on(Select.Changed, "#kind")
    def kind_changed(self, event: Select.Changed) -> None:
        """Show the fields the chosen kind needs."""
        self._show_fields(SourceKind(event.value))

    def _show_fields(self, kind: SourceKind) -> None:
        for field in self.query(".field"):  # also before all are mounted: Select posts its first change early
            field.display = field.id.removeprefix("field-") in KIND_PATHS[kind]

    def _path(self, field_id: str) -> Path | None:
        from engine.chat.images import expand_user_path

        text = self.query_one(f"#{field_id}", Input).value.strip()
        return expand_user_path(text, self.cwd) if text else None

    def spec(self) -> ChatSpec:
        """The chat the form describes, by engine.chat.spec's rules; SpecError says what is wrong."""
        kind = SourceKind(self.query_one("#kind", Select).value)
        paths = {name: self._path(name) for name in KIND_PATHS[kind] if name in FIELDS}
        template = self.query_one("#template", Select).value
        options = LoadOptions(
            device=self.query_one("#device", Input).value.strip() or "auto",
            bits=4 if self.query_one("#bits4", Checkbox).value else None,
            decoder=str(self.query_one("#decoder", Select).value),
        )
        return build_spec(
            kind, **paths, template=NO_TEMPLATE if template is Select.BLANK else str(template), options=options
        )

    @on(Button.Pressed, "#chat")
    def action_chat(self) -> None:
        """Dismiss with the spec, or say what is wrong."""
        try:
            spec = self.spec()
        except SpecError as exc:
            self.query_one("#setup-error", Static).update(str(exc))
            return
        self.dismiss(spec)

    @on(Button.Pressed, "#cancel")
    def cancel(self) -> None:
        """Close without a chat."""
        self.dismiss(None)
