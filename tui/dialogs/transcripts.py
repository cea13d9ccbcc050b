"""The saved transcripts, newest first: pick one to open it again."""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Static

from engine import locations
from engine.chat.transcripts import TranscriptInfo, list_transcripts
from themes.colours import theme_colour


def _clip(text: str, width: int, style: str = "") -> Text:
    """`text` as plain text on one line (control characters blanked), cut to `width` cells with an ellipsis."""
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    clipped = Text(text, style=style, no_wrap=True, end="")
    clipped.truncate(width, overflow="ellipsis")
    return clipped


class TranscriptsScreen(ModalScreen[Path | None]):
    """Pick a saved transcript: Enter dismisses with its path, Esc with None; broken files say why."""

    BINDINGS = [Binding("escape", "close", "Close"), Binding("enter", "open", "Open")]
    DEFAULT_CSS = """
    #transcripts-dialog { height: 90%; }
    #transcripts { height: 1fr; }
    #transcripts-empty { height: 1fr; color: $text-muted; }
    #transcripts-error { height: auto; }
    """

    def __init__(self, folder: Path | None = None) -> None:
        super().__init__()
        self.folder = folder or locations.transcripts_dir()
        self.infos: list[TranscriptInfo] = []

    def compose(self) -> ComposeResult:
        """Table (or the empty state), inline error, buttons."""
        with Vertical(classes="dialog", id="transcripts-dialog") as dialog:
            dialog.border_title = "Saved transcripts"
            yield Static("reading...", id="transcripts-empty")
            yield DataTable(id="transcripts", cursor_type="row", zebra_stripes=True)
            yield Static(id="transcripts-error", classes="error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close (esc)", id="close")
                yield Button("Open (enter)", id="open", variant="primary")

    def on_mount(self) -> None:
        """Read the folder in a worker."""
        self.query_one(DataTable).display = False
        self.read()

    @work(thread=True, exclusive=True, group="transcripts")
    def read(self) -> None:
        """List the folder (reads every file) and hand the result over."""
        self.app.call_from_thread(self.show, list_transcripts(self.folder))

    def show(self, infos: list[TranscriptInfo]) -> None:
        """Fill the table, or say there is nothing yet."""
        if not self.is_attached:  # closed while the folder was read
            return
        self.infos = infos
        table = self.query_one(DataTable)
        empty = self.query_one("#transcripts-empty", Static)
        empty.update(f"no saved transcripts yet in {self.folder}")
        empty.display, table.display = not infos, bool(infos)
        self.query_one("#open", Button).disabled = not infos
        if infos:
            self._fill()
            table.focus()

    def _fill(self) -> None:
        """(Re)build the rows, the text columns sharing the dialog's width."""
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear(columns=True)
        rest = self.query_one("#transcripts-dialog").content_size.width - 16 - 3 - 4 * 2 - 2  # cell padding, scrollbar
        model = max(rest * 2 // 5, 12)
        question = max(rest - model, 12)
        for label, width in (("Saved", 16), ("Model", model), ("#", 3), ("First question", question)):
            table.add_column(Text(label), width=width)  # not markup: user text never is either
        error = theme_colour("error", self.app.theme_variables)
        for index, info in enumerate(self.infos):
            when = Text(time.strftime("%Y-%m-%d %H:%M", time.localtime(info.saved_at)))
            if info.broken:
                cells = (when, _clip(info.label, model), Text(""), _clip(f"✗ broken: {info.error}", question, error))
            else:
                cells = (
                    when,
                    _clip(info.label, model),
                    Text(str(info.exchanges)),
                    _clip(info.first_question, question),
                )
            table.add_row(*cells, key=str(index))
        table.move_cursor(row=row)

    def on_resize(self) -> None:
        """Share the new width out again."""
        if self.infos:
            self.call_after_refresh(self._fill)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row opens it."""
        event.stop()
        self.action_open()

    def on_data_table_row_highlighted(self) -> None:
        """Moving on clears the last error."""
        self.query_one("#transcripts-error", Static).update("")

    @on(Button.Pressed, "#open")
    def action_open(self) -> None:
        """Dismiss with the highlighted transcript's path; a broken one only says why it cannot open."""
        if not self.infos:
            return
        info = self.infos[self.query_one(DataTable).cursor_row]
        if info.broken:
            self.query_one("#transcripts-error", Static).update(f"✗ {info.path.name} cannot be opened: {info.error}")
            return
        self.dismiss(info.path)

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        """Close without opening anything."""
        self.dismiss(None)
