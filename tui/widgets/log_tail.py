"""The run's log tail: the last lines of the console log, long ones wrapped, following the end unless the reader
scrolled up; text from the log reaches the terminal only as printable characters."""

from __future__ import annotations

import re

from rich.cells import cell_len, chop_cells
from rich.segment import Segment
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.terminal_text import printable
from tui.widgets.line_view import resize_virtual, scroll_on_terminal

COLOURS = re.compile(r"\x1b\[[0-9;]*m")  # colour codes: dropped; any other escape sequence is shown escaped
STRIP_CACHE = 500


def clean(line: str) -> str:
    """One log line as a terminal would leave it (what follows its last carriage return: a progress bar's last
    state), colour codes dropped, tabs expanded, every other control character written out as `\\xNN`."""
    line = line.rstrip("\r")
    return printable(COLOURS.sub("", line[line.rfind("\r") + 1 :]).expandtabs(), newlines=False)


class LogTail(ScrollView, can_focus=True):
    """At most `max_lines` lines of text, drawn a row at a time; new text never re-arranges the screen."""

    BINDINGS = [Binding("w", "toggle_wrap", "Wrap lines")]
    DEFAULT_CSS = """
    LogTail {
        height: 1fr;
        background: $surface;
        color: $foreground;
        scrollbar-gutter: stable;  /* rows wrap to one width, whether or not the scrollbar shows */
        scrollbar-visibility: hidden;  /* while following: the terminal scrolls the rows (see _resized) */
    }
    LogTail.-scrolled-up {
        scrollbar-visibility: visible;
    }
    """

    def __init__(self, max_lines: int, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_lines = max_lines
        self.wrap = True  # off: long lines scroll sideways
        self.following = True  # the view keeps the end in sight until the reader scrolls up
        self._lines: list[str] = []  # cleaned, the open one (no newline yet) last
        self._open = ""  # the open line's text as written
        self._dropped = 0  # lines pruned from the front: line numbers stay valid
        self._rows: list[tuple[int, str]] = []  # (line number, text) per row on screen, for `_row_width`
        self._row_width = 0  # the width the rows were wrapped to (0: not wrapped)
        self._widest = 0  # cells of the widest row
        self._strips: LRUCache[tuple, Strip] = LRUCache(STRIP_CACHE)

    @property
    def lines(self) -> list[str]:
        """The lines held, oldest first, as shown."""
        return self._lines

    def write(self, text: str) -> None:
        """Append text (any line endings); stay at the end if the reader was there."""
        if not text:
            return
        if self._open:  # the open line grows: written again with the new text
            self._lines.pop()
            while self._rows and self._rows[-1][0] >= self._dropped + len(self._lines):
                self._rows.pop()
        first, changed = self._dropped + len(self._lines), len(self._rows)  # the first new line, its first row
        pieces = (self._open + text).replace("\r\n", "\n").split("\n")
        self._open = pieces[-1]
        self._lines.extend(clean(piece) for piece in (pieces if self._open else pieces[:-1]))
        pruned = 0
        excess = len(self._lines) - self.max_lines
        if excess > 0:
            del self._lines[:excess]
            self._dropped += excess
            kept = [row for row in self._rows if row[0] >= self._dropped]
            pruned, self._rows = len(self._rows) - len(kept), kept
        self._add_rows(max(first, self._dropped))
        self._resized(max(0, changed - pruned), pruned)

    def _add_rows(self, number: int) -> None:
        """Rows for the lines from line `number` on, wrapped to the row width."""
        for offset, line in enumerate(self._lines[number - self._dropped :]):
            pieces = chop_cells(line, self._row_width) if self._row_width and line else [line]
            self._rows.extend((number + offset, piece) for piece in pieces)
            self._widest = max(self._widest, *map(cell_len, pieces))

    def _resized(self, changed: int = 0, pruned: int = 0) -> None:
        """Size the scrollable area for the rows and follow the end if the reader is there; repaint the rows from
        row `changed` on (0: all), after the terminal moved the others up when the view follows; every row when
        they all moved otherwise (the view scrolled, or `pruned` rows left the front)."""
        scroll_y = int(self.scroll_y)
        resize_virtual(self, Size(self._row_width or self._widest, len(self._rows)))
        moved = self.max_scroll_y - scroll_y + pruned  # how far the rows on screen go up when the view follows
        if self.following and changed and moved > 0 and scroll_on_terminal(self, moved, self.max_scroll_y):
            self.refresh_lines(changed, len(self._rows) - changed)  # the rows moved up are right as they are
            return
        if self.following:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        if self.scroll_y != scroll_y or not changed or pruned:
            self.refresh()
        elif changed < self.scroll_y + self.size.height:  # rows below the view are drawn when scrolled to
            self.refresh_lines(changed, self.size.height)  # to the view's foot: a line that got shorter leaves rows

    def _rewrap(self) -> None:
        """Wrap every line again, for a new width or a wrap toggle."""
        width = self.scrollable_content_region.width if self.wrap else 0
        if width == self._row_width and self._rows:
            return
        self._row_width, self._widest = width, 0
        self._rows.clear()
        self._add_rows(self._dropped)
        self._resized()

    def on_resize(self) -> None:
        """A new width wraps again; a view that was hidden (its first size) shows the end."""
        self._rewrap()
        if self.following:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def watch_scroll_y(self, old: float, new: float) -> None:
        """The reader scrolled: follow the end again once back at it."""
        super().watch_scroll_y(old, new)
        self.following = new >= self.max_scroll_y
        self.set_class(not self.following, "-scrolled-up")  # the scrollbar shows where the reader is

    def action_toggle_wrap(self) -> None:
        """Wrap long lines, or let them scroll sideways."""
        self.wrap = not self.wrap
        self._rewrap()

    def render_line(self, y: int) -> Strip:
        """Row `y` of the view, cut at the horizontal scroll."""
        scroll_x, scroll_y = self.scroll_offset
        index, width = scroll_y + y, self.scrollable_content_region.width
        row = self._rows[index] if index < len(self._rows) else (-1, "")
        key = (*row, scroll_x, width)  # the row's text is in the key: a row that grew is drawn again
        strip = self._strips.get(key)
        if strip is None:
            style = self.rich_style
            strip = Strip([Segment(row[1], style)]).crop_extend(scroll_x, scroll_x + width, style)
            self._strips[key] = strip
        return strip

    def notify_style_update(self) -> None:
        """New colours: draw every line again."""
        super().notify_style_update()
        self._strips.clear()
