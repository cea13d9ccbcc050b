"""Every use of Textual's private internals, for the pinned textual 8.2.8; tests/tui/test_compat.py fails if one changes.

The rest of tui/ uses Textual's public API only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from textual._parser import ParseError  # noqa: F401 (re-exported for tui/driver.py)
from textual._xterm_parser import XTermParser  # also re-exported for tui/driver.py

if TYPE_CHECKING:
    from textual.app import App
    from textual.drivers.linux_driver import LinuxDriver
    from textual.geometry import Size
    from textual.scroll_view import ScrollView

TEXTUAL_VERSION = "8.2.8"


def route_uncaught_exceptions(app: App, report: Callable[[Exception], None]) -> None:
    """Send every exception Textual ends `app` with (a handler's, a worker's, a timer's, a render's) to `report`.

    Textual's own handler renders a rich Traceback with locals: when a local's repr raises (a rich Style half-built by
    a bad colour does), the handler raises too, so the app never exits and the screen's update timer is dead: a frozen
    screen. The first exception is kept where `App.run_test` raises it again, so a test still fails on it."""

    def handle(error: Exception) -> None:
        if app._exception is None:
            app._exception = error
            app._exception_event.set()
        report(error)

    app._handle_exception = handle


def write_to_terminal(app: App, text: str) -> None:
    """Write raw escape sequences to the terminal through the driver, in order with the frames (nothing when headless)."""
    if app._driver is not None and not app.is_headless:
        app._driver.write(text)


def update_scrollbars(view: ScrollView, virtual_size: Size) -> None:
    """Resize and show or hide `view`'s scrollbars for `virtual_size` (a visibility change schedules a layout itself)."""
    view._scroll_update(virtual_size)


def driver_debug(driver: LinuxDriver) -> bool:
    """Whether the driver was started in debug mode (its parser logs what it reads)."""
    return driver._debug


def escape_pending(parser: XTermParser) -> bool:
    """Whether the parser holds a partial escape sequence, to be ended by its timeout (a lone Esc is one)."""
    return parser._timeout_time is not None
