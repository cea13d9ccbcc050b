"""Where to load a chat model when the chosen GPU lacks memory: another GPU, 4-bit, or the CPU."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from engine.chat.device import FOUR_BIT, DevicePlan

LABELS = {FOUR_BIT: "4-bit on this GPU", "cpu": "CPU (slow)"}


class DeviceChoiceScreen(ModalScreen[str | None]):
    """The plan's message and one button per alternative; dismisses with "cuda:N", FOUR_BIT, "cpu" or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, plan: DevicePlan) -> None:
        super().__init__()
        self.plan = plan

    def compose(self) -> ComposeResult:
        """Message and buttons."""
        with Vertical(classes="dialog"):
            yield Static("Not enough GPU memory", classes="title")
            yield Static(self.plan.message, markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                for index, choice in enumerate(self.plan.alternatives):
                    label = LABELS.get(choice, choice.replace("cuda:", "GPU "))
                    variant = "primary" if index == 0 else "default"
                    yield Button(label, id=f"choice-{index}", name=choice, classes="choice", variant=variant)

    def on_mount(self) -> None:
        """The best alternative has the focus."""
        if self.plan.alternatives:
            self.query_one("#choice-0", Button).focus()

    @on(Button.Pressed, "#cancel")
    def cancel(self) -> None:
        """Dismiss with no device."""
        self.dismiss(None)

    @on(Button.Pressed, ".choice")
    def choose(self, event: Button.Pressed) -> None:
        """Dismiss with the pressed alternative (the button's name)."""
        self.dismiss(event.button.name)
