"""Growing a line-API view without a screen-wide layout pass (Toolong's habit: a log view scrolls, it never reflows)."""

from __future__ import annotations

from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.widget import Widget

from tui.compat import update_scrollbars


def resize_virtual(view: ScrollView, size: Size) -> None:
    """Set `view`'s scrollable size and its scrollbars, without repainting its lines (the caller refreshes those that
    changed); the layout pass that setting `virtual_size` costs (the whole screen re-arranged and re-drawn, ~15 ms at
    80x24) runs only when a scrollbar appears or goes.
    """
    if size == view.virtual_size:
        return
    view.set_reactive(Widget.virtual_size, size)
    update_scrollbars(view, size)
