"""The runs list: every run with status, progress, last loss and ETA; Enter opens one."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from tui.format import eta_text, status_text

COLUMNS = (("status", "Status", 10), ("progress", "Progress", 11), ("loss", "Loss", 8), ("eta", "ETA", 8), ("run", "Run", 40))


class RunsTable(DataTable):
    """A DataTable of runs keyed by work dir; `update_run` adds or refreshes one row."""

    BINDINGS = [Binding("enter", "select_cursor", "Open run")]

    class Opened(Message):
        """The user picked a run."""

        def __init__(self, work_dir: Path) -> None:
            super().__init__()
            self.work_dir = work_dir

    def on_mount(self) -> None:
        """Columns, row cursor."""
        self.cursor_type = "row"
        self.zebra_stripes = True
        for key, label, width in COLUMNS:
            self.add_column(Text(label), key=key, width=width)  # not markup: no emoji table to load

    def update_run(self, rec) -> None:
        """Add the run's row or update its cells in place."""
        last = rec.state.last
        cells = {
            "status": status_text(rec.status.state, self.app.theme_variables),
            "progress": f"{rec.state.done_iter}/{rec.state.max_iters or '?'}" if last else "-",
            "loss": f"{last.loss:.4f}" if last and last.loss is not None else "-",
            "eta": eta_text(last.eta) if last and rec.status.state == "running" else "",
            "run": str(rec.work_dir),
        }
        key = str(rec.work_dir)
        if key in self.rows:
            for column, value in cells.items():
                if not _same(self.get_cell(key, column), value):  # an update repaints the whole table
                    self.update_cell(key, column, value)
        else:
            self.add_row(*cells.values(), key=key)

    def shows_state(self, rec) -> bool:
        """The run has a row, and it shows the run's current status."""
        key = str(rec.work_dir)
        return key in self.rows and self.get_cell(key, "status").plain == rec.status.state

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Tell the screen which run to open."""
        event.stop()
        self.post_message(self.Opened(Path(event.row_key.value)))


def _same(old: object, new: object) -> bool:
    """Equal cell values; rich's Text == ignores the base style (the status colour), so compare it too."""
    return old == new and getattr(old, "style", None) == getattr(new, "style", None)
