"""The run's log tail: the last lines of the console log, following the end unless the reader scrolled up."""

from __future__ import annotations

import re

from rich.cells import cell_len
from rich.segment import Segment
from textual.cache import LRUCache
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.widgets.line_view import resize_virtual

CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")  # colour codes and stray controls
STRIP_CACHE = 500


class LogTail(ScrollView, can_focus=True):
    """At most `max_lines` lines of text, drawn a line at a time; new text never re-arranges the screen."""

    DEFAULT_CSS = """
    LogTail {
        height: 1fr;
        background: $surface;
        color: $foreground;
    }
    """

    def __init__(self, max_lines: int, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_lines = max_lines
        self._lines: list[str] = []
        self._dropped = 0  # lines pruned from the front: keys of drawn lines stay valid
        self._open = False  # the last line has no newline yet
        self._width = 0
        self._strips: LRUCache[tuple[int, int, int], Strip] = LRUCache(STRIP_CACHE)

    @property
    def lines(self) -> list[str]:
        """The lines held, oldest first."""
        return self._lines

    def write(self, text: str) -> None:
        """Append text (any line endings, colour codes dropped); stay at the end if the reader was there."""
        if not text:
            return
        follow = self.scroll_y >= self.max_scroll_y
        pieces = CONTROL.sub("", text.replace("\r\n", "\n")).expandtabs().split("\n")
        if self._open:
            self._strips.clear()  # the open line grows; cheaper to redraw all than to find it
            self._lines[-1] += pieces.pop(0)
            pieces.insert(0, self._lines.pop())
        self._open = pieces[-1] != ""
        if not self._open:
            pieces.pop()
        self._lines.extend(pieces)
        self._width = max(self._width, max(map(cell_len, pieces), default=0))
        excess = len(self._lines) - self.max_lines
        if excess > 0:
            del self._lines[:excess]
            self._dropped += excess
        resize_virtual(self, Size(self._width, len(self._lines)))
        if follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.refresh()

    def clear(self) -> None:
        """Forget every line."""
        self._lines.clear()
        self._strips.clear()
        self._open, self._width = False, 0
        resize_virtual(self, Size(0, 0))

    def render_line(self, y: int) -> Strip:
        """Line `y` of the view, cut at the horizontal scroll."""
        scroll_x, scroll_y = self.scroll_offset
        index, width = scroll_y + y, self.scrollable_content_region.width
        key = (self._dropped + index, scroll_x, width)
        strip = self._strips.get(key)
        if strip is None:
            text = self._lines[index] if index < len(self._lines) else ""
            style = self.rich_style
            strip = Strip([Segment(text, style)]).crop_extend(scroll_x, scroll_x + width, style)
            self._strips[key] = strip
        return strip

    def notify_style_update(self) -> None:
        """New colours: draw every line again."""
        super().notify_style_update()
        self._strips.clear()
