"""An exception nothing catches (while drawing, in a handler, in a worker) ends the app with one line and a crash log."""

from __future__ import annotations

import asyncio

import pytest
from rich.color import ColorParseError
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.strip import Strip
from textual.widget import Widget
from textual.worker import WorkerFailed

from tests.support.fakes import NoGpus
from tui.app import XtuiApp

pytestmark = pytest.mark.anyio


class BadColour(Widget):
    """Draws its lines in a colour Rich cannot parse, as the runs table once drew a stopped run."""

    def render_line(self, y: int) -> Strip:
        return Strip([Segment("x", Style(color="auto 60%"))])


def failing_handler(app: XtuiApp) -> None:
    """The help key's handler raises."""
    app.action_help = lambda: 1 / 0
    app.post_message(events.Key("question_mark", "?"))


def failing_draw(app: XtuiApp) -> None:
    """A widget raises while the screen's own update timer draws it (not a test's pause)."""
    app.screen.mount(BadColour())


def failing_worker(app: XtuiApp) -> None:
    """A thread worker raises."""

    def work() -> None:
        raise KeyError("no such run")

    app.run_worker(work, thread=True)


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XTUI_CONFIG", str(tmp_path / "settings.json"))
    monkeypatch.setenv("XTUI_STATE", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.mark.parametrize(
    ("cause", "raised", "error", "frame"),
    [
        (failing_draw, ColorParseError, ColorParseError, "render_line"),
        (failing_handler, ZeroDivisionError, ZeroDivisionError, "<lambda>"),
        (failing_worker, WorkerFailed, KeyError, "work"),  # the log holds the error the worker raised
    ],
    ids=["draw", "handler", "worker"],
)
async def test_an_uncaught_exception_exits_with_one_line_and_a_crash_log(
    tmp_path, state_dir, capsys, cause, raised, error, frame
) -> None:
    app = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.1)
    with pytest.raises(raised):  # run_test raises it again at the end, as for any app
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            cause(app)
            for _ in range(100):  # the app's own timers draw: no pilot.pause, which would draw in this task
                if app.return_code is not None:
                    break
                await asyncio.sleep(0.05)
    assert app.return_code == 1
    (log,) = state_dir.glob("crash-*.log")
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and f"in {frame}" in text and error.__name__ in text
    assert "\n" not in app.crash_message and str(log) in app.crash_message and error.__name__ in app.crash_message
    assert "".join(capsys.readouterr().err.split()) == "".join(app.crash_message.split())  # as the terminal wraps it
