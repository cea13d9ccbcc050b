"""LogTail: partial lines, colour codes dropped, bounded, follows the end unless scrolled up, never re-lays out the screen."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
from textual.app import App, ComposeResult
from textual.screen import Screen

from tests.support import ROOT
from tui.widgets.log_tail import LogTail

pytestmark = pytest.mark.anyio


class TailApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LogTail(max_lines=50)


def screen_text(tail: LogTail) -> list[str]:
    return [tail.render_line(y).text.rstrip() for y in range(tail.size.height)]


async def test_lines_joined_cleaned_and_bounded() -> None:
    app = TailApp()
    async with app.run_test(size=(40, 10)) as pilot:
        tail = app.query_one(LogTail)
        tail.write("11/28 iter 1 \x1b[31mloss\x1b[0m 2.0\r\nhalf a ")
        tail.write("line\n\tTab\x07\n")
        assert tail.lines == ["11/28 iter 1 loss 2.0", "half a line", "        Tab\\x07"]  # a bell is shown, not rung
        tail.write("".join(f"line {i}\n" for i in range(100)))
        await pilot.pause()
        assert len(tail.lines) == 50 and tail.lines[0] == "line 50" and tail.lines[-1] == "line 99"
        assert screen_text(tail)[-1] == "line 99"  # followed the end


async def test_scrolled_up_reader_stays_put_and_no_layout_pass(monkeypatch) -> None:
    app = TailApp()
    async with app.run_test(size=(40, 10)) as pilot:
        tail = app.query_one(LogTail)
        tail.write("".join(f"line {i}\n" for i in range(30)))
        await pilot.pause()
        tail.scroll_to(y=0, animate=False, immediate=True)
        await pilot.pause()
        layouts = []
        original = Screen._refresh_layout
        monkeypatch.setattr(
            Screen, "_refresh_layout", lambda self, *a, **k: layouts.append(1) or original(self, *a, **k)
        )
        tail.write("line 30\nline 31\n")
        await pilot.pause()
        assert screen_text(tail)[0] == "line 0" and tail.max_scroll_y == 32 - 10
        assert not layouts
        tail.scroll_end(animate=False, immediate=True)
        tail.write("line 32\n")
        await pilot.pause()
        assert screen_text(tail)[-1] == "line 32"


async def test_new_text_repaints_only_the_rows_it_changed() -> None:
    app = TailApp()
    async with app.run_test(size=(40, 10)) as pilot:
        tail = app.query_one(LogTail)
        tail.write("line 0\nline 1\nhalf")
        await pilot.pause()
        drawn: list[int] = []
        render_line = tail.render_line
        tail.render_line = lambda y: drawn.append(y) or render_line(y)
        tail.write(" a line\n")  # the open line grows: from its row down
        await pilot.pause()
        assert drawn and min(drawn) == 2 and screen_text(tail)[:3] == ["line 0", "line 1", "half a line"]
        drawn.clear()
        tail.write("line 3\n")
        await pilot.pause()
        assert drawn and min(drawn) == 3
        tail.write("".join(f"more {i}\n" for i in range(20)))  # past the foot: the view follows, every row moves
        await pilot.pause()
        tail.scroll_to(y=0, animate=False, immediate=True)
        await pilot.pause()
        drawn.clear()
        tail.write("below the view\n")  # a reader scrolled up: nothing on screen changed
        await pilot.pause()
        assert drawn == [] and screen_text(tail)[0] == "line 0"


TMUX_APP = """
import sys
from pathlib import Path
from textual.app import App
from textual.widgets import Static
import tui.widgets.line_view as line_view
from tui.widgets.log_tail import LogTail

scrolls = []
write = line_view.write_to_terminal
line_view.write_to_terminal = lambda app, text: scrolls.append(text) or write(app, text)


class Tail(App):
    def compose(self):
        yield Static("above")
        yield LogTail(max_lines=30)
        yield Static("below")

    def on_mount(self):
        self.n = 0
        self.set_interval(0.05, self.tick)

    def tick(self):
        tail = self.query_one(LogTail)
        if self.n < 60:  # lines of 1 to 3 rows, the oldest pruned past 30
            tail.write(f"line {self.n} " + "x" * (self.n * 37 % 170) + ("\\n" if self.n % 5 else ""))
        elif self.n == 70:
            rows = [tail.render_line(y).text.rstrip() for y in range(tail.size.height)]
            Path(sys.argv[1]).write_text("\\n".join([str(len(scrolls)), *rows]))
        self.n += 1


Tail().run()
"""


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_in_a_real_terminal_the_terminal_scrolls_the_rows_and_they_match(tmp_path) -> None:
    script, out, session = tmp_path / "tail.py", tmp_path / "rows.txt", f"xtui-tail-{os.getpid()}"
    script.write_text(TMUX_APP)
    command = f"cd {ROOT} && {sys.executable} {script} {out}; sleep 30"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", command], check=True)
    try:
        deadline = time.monotonic() + 30
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)  # the last frame reaches the terminal
        shown = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    scrolls, *rows = out.read_text().split("\n")
    screen = [line.rstrip() for line in shown.split("\n")]
    assert int(scrolls) > 30  # most lines came in by a terminal scroll, not by writing every row again
    assert screen[0] == "above" and screen[1 : 1 + len(rows)] == rows and screen[1 + len(rows)] == "below"
    assert any(row.startswith("line 59 ") for row in rows[-3:])  # followed to the end
