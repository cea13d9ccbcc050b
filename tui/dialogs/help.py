"""The help screen: every key binding of the screen below it and the app's, the screen's own first, Textual's generic
ones (scrolling, focus, copying) last."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Static


def _from_textual(node: DOMNode, binding: Binding) -> bool:
    """Whether `binding` of `node` is one Textual itself defines (in a class of its own package), not xtui."""
    for cls in type(node).__mro__:
        for entry in cls.__dict__.get("BINDINGS", ()):
            entry = Binding(*entry) if isinstance(entry, tuple) else entry
            if entry.action == binding.action and binding.key in entry.key.split(","):
                return cls.__module__.split(".")[0] == "textual"
    return False


class KeysTable(DataTable):
    """The table of keys, where Home and End go to its top and bottom (a DataTable's go to its first and last column)."""

    BINDINGS = [
        Binding("home", "scroll_top", "Top", show=False),
        Binding("end", "scroll_bottom", "Bottom", show=False),
    ]


class HelpScreen(ModalScreen[None]):
    """A table of keys and what they do, for the screen it was opened from; it scrolls (PageDown, End) at once."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, below: Screen) -> None:
        super().__init__()
        self.below = below

    def compose(self) -> ComposeResult:
        """Title and table."""
        with Vertical(classes="dialog", id="help"):
            yield Static("Keys  (PgDn, End: scroll; ctrl+p: every action by name)", classes="title")
            yield KeysTable(id="keys", cursor_type="none", zebra_stripes=True)

    def on_mount(self) -> None:
        """One row per binding with a description: the screen's, the focused widget's, the app's, then Textual's."""
        rows = []
        for active in self.below.active_bindings.values():
            binding, node = active.binding, active.node
            if not binding.description:
                continue
            group = 3 if _from_textual(node, binding) else 0 if node is self.below else 2 if node is self.app else 1
            where = "App" if node is self.app else type(node).__name__.removesuffix("Screen")
            rows.append((group, self.app.get_key_display(binding), binding.description, where))
        table = self.query_one(KeysTable)
        table.add_columns("Key", "Action", "Where")
        for _, *cells in sorted(rows, key=lambda row: row[0]):  # stable: each group keeps its order
            table.add_row(*cells)
        table.focus()
