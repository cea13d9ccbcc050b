"""The form that picks what to chat with: base, adapter, merged, checkpoint or LLaVA, and how to load it."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from engine.chat.models import KINDS, LoadOptions, ModelSource
from engine.chat.decoding import DECODERS
from engine.xtuner.templates import templates
from engine.chat.spec import ChatSpec
from tui.widgets.path_input import PathInput

# Which fields each kind uses: (field id, label).
FIELDS = {
    "model": "Model folder (base, merged, or the LLM under the adapter / LLaVA)",
    "adapter": "Adapter folder (a pth_to_hf output)",
    "checkpoint": "Checkpoint (iter_N.pth of a run)",
    "config": "The run's config",
    "llava": "LLaVA folder (projector, adapters)",
    "visual-encoder": "Visual encoder folder (when the LLaVA folder has none)",
    "compare": "A/B: a second adapter folder or checkpoint on the same base (optional)",
}
USES = {
    "base": ("model",),
    "merged": ("model",),
    "adapter": ("model", "adapter", "compare"),
    "checkpoint": ("checkpoint", "config", "compare"),
    "llava": ("model", "llava", "visual-encoder"),
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
            yield Select([(k, k) for k in KINDS], value="base", allow_blank=False, id="kind", compact=True)
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
                    yield Select([(d, d) for d in DECODERS], value="auto", allow_blank=False, id="decoder", compact=True)
                with Vertical(classes="cell"):
                    yield Label("Template")
                    names = [(name, name) for name in templates()]
                    yield Select(names, value="internlm2_chat", prompt="none", id="template", compact=True)
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
        self._show_fields("base")
        self.query_one("#kind", Select).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        """Show the fields the chosen kind needs."""
        if event.select.id == "kind":
            self._show_fields(str(event.value))

    def _show_fields(self, kind: str) -> None:
        for field in self.query(".field"):  # also before all are mounted: Select posts its first change early
            field.display = field.id.removeprefix("field-") in USES[kind]

    def _path(self, field_id: str) -> Path | None:
        from engine.chat.images import expand_user_path

        text = self.query_one(f"#{field_id}", Input).value.strip()
        return expand_user_path(text, self.cwd) if text else None

    def spec(self) -> ChatSpec:
        """The chat the form describes."""
        kind = str(self.query_one("#kind", Select).value)
        p = self._path
        source = ModelSource(
            kind, model=p("model"), adapter=p("adapter"), checkpoint=p("checkpoint"), config=p("config"),
            visual_encoder=p("visual-encoder"), llava=p("llava"),
        )  # fmt: skip
        compare = p("compare") if kind in ("adapter", "checkpoint") else None
        other = None
        if compare is not None:
            other = (
                ModelSource("checkpoint", checkpoint=compare, config=source.config, model=source.model)
                if compare.suffix == ".pth" or compare.name.startswith("iter_")
                else ModelSource("adapter", model=source.model, adapter=compare)
            )
        template = self.query_one("#template", Select).value
        options = LoadOptions(
            device=self.query_one("#device", Input).value.strip() or "auto",
            bits=4 if self.query_one("#bits4", Checkbox).value else None,
            decoder=str(self.query_one("#decoder", Select).value),
        )
        return ChatSpec(source, options, None if template is Select.BLANK else str(template), compare=other)

    def action_chat(self) -> None:
        """Check the paths; dismiss with the spec, or say what is wrong."""
        spec = self.spec()
        problems = spec.source.problems() + (spec.compare.problems() if spec.compare else [])
        device = spec.options.device
        if device not in ("auto", "cpu") and not (device.startswith("cuda:") and device[5:].isdigit()):
            problems.append(f"device must be auto, cpu or cuda:N (not {device!r})")
        if problems:
            self.query_one("#setup-error", Static).update("; ".join(problems))
            return
        self.dismiss(spec)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Chat or cancel."""
        if event.button.id == "chat":
            self.action_chat()
        else:
            self.dismiss(None)
