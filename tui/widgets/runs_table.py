"""The runs list: every run with status, progress, last loss and ETA; Enter opens one, space marks some to compare."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from themes.colours import state_colour
from tui.format import eta_text
from tui.terminal_text import printable
from tui.widgets.line_view import resize_virtual

COLUMNS = (("Status", 10), ("Progress", 11), ("Loss", 8), ("ETA", 8), ("Run", 0))  # 0: the rest of the width
STRIP_CACHE = 256
MARK = "✓"  # before a marked run's status, in the line's first cell of padding

Cells = tuple[str, ...]


class RunsTable(ScrollView, can_focus=True, inherit_bindings=False):
    """Runs keyed by work dir, a line each under a fixed header. A run whose figures change repaints its own
    line only (a DataTable re-renders the whole table for one changed cell: 5-12 ms a frame on 2 cores)."""

    BINDINGS = [
        Binding("enter", "open", "Open run"),
        Binding("space", "toggle_mark", "Mark", show=False),  # v says so when none is marked
        Binding("up,k", "move(-1)", "Previous run", show=False),
        Binding("down,j", "move(1)", "Next run", show=False),
        Binding("pageup", "move(-10)", "Ten runs up", show=False),
        Binding("pagedown", "move(10)", "Ten runs down", show=False),
        Binding("home", "move(-1_000_000)", "First run", show=False),
        Binding("end", "move(1_000_000)", "Last run", show=False),
    ]
    COMPONENT_CLASSES = {"runs-table--header", "runs-table--cursor", "runs-table--odd"}
    DEFAULT_CSS = """
    RunsTable {
        background: $surface;
        color: $foreground;
        & > .runs-table--header { background: $panel; color: $foreground; text-style: bold; }
        & > .runs-table--odd { background: $surface-lighten-1; }
        & > .runs-table--cursor { background: $block-cursor-blurred-background; }
        &:focus > .runs-table--cursor {
            background: $block-cursor-background; color: $block-cursor-foreground; text-style: bold;
        }
    }
    """

    cursor = reactive(0, always_update=True)

    @dataclass
    class Opened(Message):
        """The user picked a run."""

        work_dir: Path

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._keys: list[str] = []  # work dirs, in the order they came
        self._rows: dict[str, Cells] = {}  # work dir -> its cells
        self._strips: LRUCache[tuple, Strip] = LRUCache(STRIP_CACHE)
        self._marked: set[str] = set()

    @property
    def row_count(self) -> int:
        """How many runs are listed."""
        return len(self._keys)

    @property
    def keys(self) -> tuple[str, ...]:
        """The listed work dirs, top to bottom."""
        return tuple(self._keys)

    @property
    def marked(self) -> tuple[Path, ...]:
        """The marked runs' work dirs, top to bottom."""
        return tuple(Path(key) for key in self._keys if key in self._marked)

    def row(self, key: str) -> Cells:
        """The cells of a run's line, as shown: status, progress, loss, ETA, work dir."""
        return self._rows[key]

    def update_run(self, rec) -> None:
        """Add the run's line or repaint it when what it shows changed."""
        last, state = rec.state.last, rec.status.state
        cells = (
            state,
            f"{rec.state.done_iter}/{rec.state.max_iters or '?'}" if last else "-",
            f"{last.loss:.4f}" if last and last.loss is not None else "-",
            eta_text(last.eta) if last and state == "running" else "",
            printable(str(rec.work_dir), newlines=False) + _why_queued(rec.status),
        )
        key = str(rec.work_dir)
        if self._rows.get(key) == cells:
            return
        if key not in self._rows:
            self._keys.append(key)
            resize_virtual(self, Size(0, len(self._keys) + 1))  # lines fit the width: no sideways scrolling
        self._rows[key] = cells
        self.refresh_line(self._keys.index(key) + 1)

    def shows_state(self, rec) -> bool:
        """The run has a line, and it shows the run's current status."""
        cells = self._rows.get(str(rec.work_dir))
        return cells is not None and cells[0] == rec.status.state

    def render_line(self, y: int) -> Strip:
        """Screen line `y`: the header on top, then the runs from the scroll offset."""
        width = self.scrollable_content_region.width
        if y == 0:
            return self._strip(tuple(label for label, _ in COLUMNS), "header", width)
        index = self.scroll_offset.y + y - 1
        if index >= len(self._keys):
            return Strip.blank(width, self.rich_style)
        role = "cursor" if index == self.cursor else "odd" if index % 2 else ""
        key = self._keys[index]
        return self._strip(self._rows[key], role, width, key in self._marked)

    def _strip(self, cells: Cells, role: str, width: int, marked: bool = False) -> Strip:
        """One line of padded cells (a run's status in its theme colour, off the cursor; a mark before it), drawn once
        per content, role, mark and width."""
        key = (cells, role, width, self.has_focus, marked)
        strip = self._strips.get(key)
        if strip is None:
            base = self.get_component_rich_style(f"runs-table--{role}") if role else self.rich_style
            colour = role in ("", "odd") and state_colour(cells[0], self.app.theme_variables)
            segments = [Segment(MARK if marked else " ", base + Style(bold=True))]
            for column, ((_, size), text) in enumerate(zip(COLUMNS, cells, strict=True)):
                size = size or max(1, width - 1 - sum(s + 2 for _, s in COLUMNS))
                style = base + Style(color=colour, bold=True) if colour and column == 0 else base
                if column == len(COLUMNS) - 1 and "\n" in text:  # a queued run: its name, then why it waits
                    text = _fit_reason(*text.split("\n", 1), size)
                if column == len(COLUMNS) - 1 and cell_len(text) > size:  # a long path keeps its end: the run's name
                    while text and cell_len(text) > size - 1:  # by cells: a CJK folder name is two a character
                        text = text[1:]
                    text = "…" + text
                segments.append(Segment(f" {set_cell_size(text, size)} ", style))
            strip = Strip(segments).crop_extend(0, width, base)
            self._strips[key] = strip
        return strip

    def watch_cursor(self, old: int, new: int) -> None:
        """Repaint the two lines the cursor left and reached; keep it in view."""
        self.refresh_line(old + 1)
        self.refresh_line(new + 1)
        height = self.scrollable_content_region.height - 1  # under the header
        if new < self.scroll_offset.y:
            self.scroll_to(y=new, animate=False)
        elif height > 0 and new >= self.scroll_offset.y + height:
            self.scroll_to(y=new - height + 1, animate=False)

    def validate_cursor(self, cursor: int) -> int:
        """Within the rows."""
        return max(0, min(cursor, len(self._keys) - 1))

    def action_move(self, rows: int) -> None:
        """Move the cursor by `rows`."""
        self.cursor += rows

    def action_open(self) -> None:
        """Open the run under the cursor."""
        if self._keys:
            self.post_message(self.Opened(Path(self._keys[self.cursor])))

    def action_toggle_mark(self) -> None:
        """Mark the run under the cursor, or unmark it, and go to the next one."""
        if not self._keys:
            return
        key = self._keys[self.cursor]
        self._marked.symmetric_difference_update({key})
        self.refresh_line(self.cursor + 1)
        self.cursor += 1

    def on_click(self, event: events.Click) -> None:
        """A click puts the cursor on a run; a second click on it (or a double click) opens it."""
        index = self.scroll_offset.y + event.y - 1
        if event.y < 1 or index >= len(self._keys):
            return
        if index == self.cursor or event.chain > 1:
            self.cursor = index
            self.action_open()
        else:
            self.cursor = index

    def on_focus(self) -> None:
        """The cursor's colour follows focus."""
        self.refresh()

    def on_blur(self) -> None:
        """The cursor's colour follows focus."""
        self.refresh()

    def notify_style_update(self) -> None:
        """New colours: draw every line again."""
        super().notify_style_update()
        self._strips.clear()


def _why_queued(status) -> str:
    """What a queued run's line adds after its work dir: why it waits (after a line break, which no shown text has)."""
    return f"\n{printable(status.cause, newlines=False)}" if status.state == "queued" and status.cause else ""


def _fit_reason(path: str, reason: str, size: int) -> str:
    """A queued run's cell: its work dir and why it waits; where both do not fit, its folder's name, the reason cut."""
    text = f"{path}  {reason}"
    if cell_len(text) <= size:
        return text
    text = f"{Path(path).name}  {reason}"
    return text if cell_len(text) <= size else set_cell_size(text, size - 1) + "…"
