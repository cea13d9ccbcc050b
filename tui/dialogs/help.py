"""The help screen: every key binding of the screen below it, and the app's."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Static


class HelpScreen(ModalScreen[None]):
    """A table of keys and what they do, for the screen it was opened from."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, below: Screen) -> None:
        super().__init__()
        self.below = below

    def compose(self) -> ComposeResult:
        """Title and table."""
        with VerticalScroll(classes="dialog"):
            yield Static("Keys  (ctrl+p: command palette with every action)", classes="title")
            yield DataTable(id="keys", cursor_type="none", zebra_stripes=True)

    def on_mount(self) -> None:
        """One row per binding with a description."""
        table = self.query_one(DataTable)
        table.add_columns("Key", "Action", "Where")
        for key, active in self.below.active_bindings.items():
            binding = active.binding
            if binding.description:
                where = type(active.node).__name__.removesuffix("Screen") or "App"
                table.add_row(self.app.get_key_display(binding), binding.description, where)
