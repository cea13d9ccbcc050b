"""Growing and scrolling a line-API view cheaply: no screen-wide layout pass (Toolong's habit: a log view scrolls, it
never reflows), and a scroll that moves what the terminal already shows instead of writing every row again."""

from __future__ import annotations

from rich.console import COLOR_SYSTEMS
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.widget import Widget

from tui.compat import update_scrollbars, write_to_terminal


def resize_virtual(view: ScrollView, size: Size) -> None:
    """Set `view`'s scrollable size and its scrollbars, without repainting its lines (the caller refreshes those that
    changed); the layout pass that setting `virtual_size` costs (the whole screen re-arranged and re-drawn, ~15 ms at
    80x24) runs only when a scrollbar appears or goes.
    """
    if size == view.virtual_size:
        return
    view.set_reactive(Widget.virtual_size, size)
    update_scrollbars(view, size)


def scroll_on_terminal(view: ScrollView, rows: int, y: int) -> bool:
    """Scroll `view` to `y`, its rows on screen going up by `rows` (down when negative), by moving the rows the
    terminal already shows (a scrolling region and SU/SD: a few bytes) and repainting only the rows that come into
    view. False, with nothing done, where that would move something else: a dialog, toast or drawn scrollbar over the
    view, another widget beside it on its rows, a headless or inline app, or a scroll of a whole view or more."""
    app, screen, region = view.app, view.screen, view.content_region
    if (
        not 0 < abs(rows) < region.height
        or app.screen is not screen
        or app.is_headless
        or app.is_inline
        or view.region.x > 1
        or view.region.right < screen.size.width - 1  # the terminal scrolls whole rows: padding may move, no text
        or view.show_horizontal_scrollbar
        or (view.show_vertical_scrollbar and view.styles.scrollbar_visibility == "visible")
        or screen.query("Toast")
    ):
        return False
    colour = Style(bgcolor=view.rich_style.bgcolor).render(
        " ", color_system=COLOR_SYSTEMS.get(app.console.color_system)
    )
    background = colour.split(" ")[0]  # rows the terminal brings in take the view's background, not the default
    scroll = f"\x1b[{rows}S" if rows > 0 else f"\x1b[{-rows}T"
    write_to_terminal(app, f"\x1b[{region.y + 1};{region.bottom}r{background}{scroll}\x1b[0m\x1b[r")
    view.set_reactive(Widget.scroll_y, y)  # no watcher: that would repaint every row
    view.set_reactive(Widget.scroll_target_y, y)
    view.refresh_lines(y + region.height - rows if rows > 0 else y, abs(rows))
    return True
