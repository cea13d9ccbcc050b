"""tui/compat.py against the pinned Textual: each private internal it uses still behaves as assumed, or this fails."""

from __future__ import annotations

import asyncio
import inspect
import threading
from importlib import metadata

import pytest
from textual import events
from textual.app import App, ComposeResult
from textual.drivers.linux_driver import LinuxDriver
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.widget import Widget

from tui import compat

pytestmark = pytest.mark.anyio


def test_pinned_versions() -> None:
    assert metadata.version("textual") == compat.TEXTUAL_VERSION
    assert metadata.version("textual-image") == "0.12.0"  # tui/widgets/image_preview.py subclasses its sixel internals


class Failing(App[None]):
    """An app whose `f` key handler, timer or worker raises, as asked."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where
        self.reported: list[Exception] = []
        compat.route_uncaught_exceptions(self, self.reported.append)

    def on_mount(self) -> None:
        if self.where == "timer":
            self.set_timer(0.01, lambda: 1 / 0)
        elif self.where == "worker":
            self.run_worker(lambda: 1 / 0, thread=True)

    def on_key(self, event: events.Key) -> None:
        if self.where == "handler":
            raise ZeroDivisionError("in a key handler")


@pytest.mark.parametrize("where", ["handler", "timer", "worker"])
async def test_every_uncaught_exception_reaches_the_report_and_run_test_raises_it(where) -> None:
    app = Failing(where)
    with pytest.raises(Exception) as raised:
        async with app.run_test() as pilot:
            await pilot.press("f")
            for _ in range(100):
                if app.reported:
                    break
                await asyncio.sleep(0.01)
    assert app.reported and app.reported[0] is raised.value
    assert app.return_code is None  # the report decides how the app ends: Textual's own handler did not run


async def test_write_to_terminal_goes_through_the_driver_unless_headless(monkeypatch) -> None:
    app = App()
    async with app.run_test() as pilot:
        written: list[str] = []
        monkeypatch.setattr(app._driver, "write", written.append)
        compat.write_to_terminal(app, "headless")
        monkeypatch.setattr(App, "is_headless", property(lambda self: False))
        compat.write_to_terminal(app, "\x1b]9;hi\x07")
        monkeypatch.undo()
        await pilot.pause()
    assert written == ["\x1b]9;hi\x07"]


class OneView(App[None]):
    """A ScrollView ten lines high."""

    CSS = "ScrollView { height: 10; }"

    def compose(self) -> ComposeResult:
        yield ScrollView()


async def test_update_scrollbars_shows_the_scrollbar_for_a_new_virtual_size() -> None:
    app = OneView()
    async with app.run_test(size=(40, 20)) as pilot:
        view = app.query_one(ScrollView)
        assert not view.show_vertical_scrollbar
        view.set_reactive(Widget.virtual_size, Size(10, 100))
        compat.update_scrollbars(view, Size(10, 100))
        assert view.show_vertical_scrollbar and view.vertical_scrollbar.window_virtual_size == 100
        await pilot.pause()
        assert view.max_scroll_y == 90


def test_escape_pending_tells_a_lone_esc_until_the_parser_times_it_out(monkeypatch) -> None:
    parser = compat.XTermParser(False)
    assert not compat.escape_pending(parser)
    assert list(parser.feed("\x1b")) == [] and compat.escape_pending(parser)
    monkeypatch.setattr("textual._parser.get_time", lambda: float("inf"))
    assert [event.key for event in parser.tick()] == ["escape"] and not compat.escape_pending(parser)
    assert issubclass(compat.ParseError, Exception)


async def test_linux_driver_parts_the_quiet_driver_relies_on() -> None:
    driver = LinuxDriver(App(), debug=True)
    assert compat.driver_debug(driver) is True
    assert isinstance(driver.exit_event, threading.Event) and isinstance(driver.fileno, int)
    assert "self.run_input_thread()" in inspect.getsource(LinuxDriver._run_input_thread)  # the key thread's loop
    assert "self.exit_event.set()" in inspect.getsource(LinuxDriver.disable_input)  # how the loop is told to end
