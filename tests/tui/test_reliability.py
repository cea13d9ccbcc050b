"""Never freeze, never hang, never guess: a NaN loss, escape sequences in a log, a run that fails in its first
seconds, a work dir that appears after the start, a resume from an older checkpoint, the log tab at 80 columns."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from textual.widgets import Static

from engine.runs import manifest as mf
from engine.runs.events import CheckpointSaved, DataloaderAdvance, Resumed, Started, TrainStep
from engine.runs.watch import RunStatus, Status
from tests.support.fakes import NoGpus, fixture_run
from tests.support.waiting import until
from tui.app import DISCOVER_EVERY_S, RunRecord, XtuiApp
from tui.messages import RunUpdate
from tui.screens.run import RunScreen
from tui.widgets.curves import Curves
from tui.widgets.log_tail import LogTail
from tui.widgets.runs_table import RunsTable

pytestmark = pytest.mark.anyio
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b]52;c;ZWNobyBoaQ==\x07"  # retitle, clear the screen, set the clipboard


@pytest.fixture(autouse=True)
def settings_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XTUI_CONFIG", str(tmp_path / "settings.json"))
    monkeypatch.setenv("XTUI_STATE", str(tmp_path / "state"))


def notified(app: XtuiApp) -> list[str]:
    """The text of every notification `app` shows from now on."""
    texts: list[str] = []
    notify = app.notify
    app.notify = lambda message, *a, **k: texts.append(message) or notify(message, *a, **k)
    return texts


def edited_run(root: Path, edit) -> Path:
    """The fixture run with its log text passed through `edit`."""
    work_dir = fixture_run(root)
    log = next(work_dir.glob("*/*.log"))
    log.write_text(edit(log.read_text(encoding="utf-8")), encoding="utf-8")
    return work_dir


def nan_from_iter_20(text: str) -> str:
    """Every loss from iteration 20 on written as nan, as mmengine logs a diverged run."""
    head, tail = text.split("Iter(train) [20/40]", 1)
    return head + "Iter(train) [20/40]" + re.sub(r"loss: [0-9.]+", "loss: nan", tail)


async def test_a_nan_loss_is_shown_and_flagged_never_a_crash(tmp_path) -> None:
    work_dir = edited_run(tmp_path, nan_from_iter_20)
    app = XtuiApp(roots=[tmp_path], open_run=work_dir, gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.runs[work_dir.resolve()].state.last)
        await pilot.press("1")
        await pilot.pause(0.3)
        summary = str(app.screen.query_one("#curves-summary", Static).render())
        assert "last nan" in summary and "not finite, from iter 20" in summary
        header = str(app.screen.query_one("#run-status", Static).render())
        assert "loss is nan since iteration 20" in header
        await pilot.press("escape")
        await until(pilot, lambda: app.screen.query_one(RunsTable).row(str(work_dir.resolve()))[2] == "nan")
        assert app.is_running and app.crash_message is None


async def test_escape_sequences_from_a_log_are_shown_escaped(tmp_path) -> None:
    traceback = f'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad {HOSTILE}\n'
    work_dir = edited_run(tmp_path, lambda text: text + f"plain line {HOSTILE}\n" + traceback)
    (work_dir / mf.CONSOLE).write_text(f"console {HOSTILE}\n" + traceback, encoding="utf-8")
    app = XtuiApp(roots=[tmp_path], open_run=work_dir, gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(
            pilot, lambda: isinstance(app.screen, RunScreen) and app.runs[work_dir.resolve()].status.state == "failed"
        )
        await pilot.pause(0.3)
        header = str(app.screen.query_one("#run-status", Static).render())
        assert "\\x1b]0;pwned\\x07" in header and "\x1b" not in header
        await pilot.press("3")
        tail = app.screen.query_one(LogTail)
        await until(pilot, lambda: any("console" in line for line in tail.lines))
        line = next(line for line in tail.lines if line.startswith("console"))
        assert line == "console \\x1b]0;pwned\\x07\\x1b[2J\\x1b]52;c;ZWNobyBoaQ==\\x07"
        drawn = "".join(tail.render_line(y).text for y in range(tail.size.height))
        assert "\x1b" not in drawn and "\x07" not in drawn


async def test_the_log_tab_opens_at_the_end_and_wraps_so_the_loss_shows_at_80_columns(tmp_path) -> None:
    work_dir = fixture_run(tmp_path)
    app = XtuiApp(roots=[tmp_path], open_run=work_dir, gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        await pilot.pause(0.5)  # the log is read while another tab shows
        await pilot.press("3")
        tail = app.screen.query_one(LogTail)
        await until(pilot, lambda: tail.lines and tail.max_scroll_y > 0 and tail.scroll_y == tail.max_scroll_y)
        rows = [tail.render_line(y).text for y in range(tail.size.height)]
        assert tail.lines[-1] in rows[-1] or rows[-1].strip() == ""
        step = next(i for i, line in enumerate(tail.lines) if "Iter(train) [40/40]" in line)
        tail.scroll_to(y=0, animate=False, immediate=True)
        await pilot.pause()
        assert not tail.following
        wrapped = [text for number, text in tail._rows if number - tail._dropped == step]
        assert len(wrapped) > 1 and "loss: 10.8431" in "".join(wrapped)
        await pilot.press("w")  # unwrapped: one row a line, scrolled sideways
        await pilot.pause()
        assert len([1 for number, _ in tail._rows if number - tail._dropped == step]) == 1 and tail.max_scroll_x > 0


async def test_a_resume_from_an_older_checkpoint_is_followed_in_header_and_curves(tmp_path) -> None:
    work_dir = fixture_run(tmp_path)
    app = XtuiApp(roots=[tmp_path], open_run=work_dir, gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        rec = lambda: app.runs[work_dir.resolve()]  # noqa: E731
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and rec().state.last)
        await pilot.press("1")
        status = Status(RunStatus.RUNNING, pid=os.getpid())
        app.post_message(
            RunUpdate(work_dir.resolve(), [Started(log="b"), Resumed(15), DataloaderAdvance(12345)], status, [])
        )
        text = app.screen.query_one("#progress-text", Static)
        await until(pilot, lambda: str(text.render()).endswith("12345 steps"))
        assert text.size.width >= len(str(text.render()))  # the unit is on screen at 80 columns
        app.post_message(RunUpdate(work_dir.resolve(), [TrainStep(20, 40, loss=0.5)], status, []))
        await until(pilot, lambda: str(text.render()).startswith("iter 20/40"))  # not the old branch's 40
        curves = app.screen.query_one(Curves)
        assert curves.iterations[-2:] == [15, 20]  # 25-40 were the branch it left


def test_the_current_start_alone_makes_the_progress() -> None:
    rec = RunRecord(Path("w"))
    rec.apply(
        [Started(log="a"), *(TrainStep(i, 100) for i in range(10, 101, 10)), CheckpointSaved(50), CheckpointSaved(100)]
    )
    assert rec.state.done_iter == 100
    rec.apply([Started(log="b"), Resumed(50)])
    assert rec.state.done_iter == 50  # resumed from iteration 50: the old branch's 100 is not this run's progress
    rec.apply([TrainStep(60, 100)])
    assert rec.state.done_iter == 60
    rec.apply([TrainStep(100, 100), CheckpointSaved(100)])
    assert rec.state.done_iter == 100


def _dead_pid() -> tuple[int, float]:
    """The pid and start time of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    created = psutil.Process(proc.pid).create_time()
    proc.wait()
    return proc.pid, created


async def test_a_run_launched_here_that_fails_at_once_alerts(tmp_path) -> None:
    work_dir = (tmp_path / "fresh").resolve()
    app = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.1)
    messages = notified(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        work_dir.mkdir()
        pid, created = _dead_pid()
        launch = mf.Launch(argv=["python"], env={}, pid=pid, create_time=created, started_at=time.time(),
                           console_offset=0, config="cfg.py", cwd=".")  # fmt: skip
        mf.write_manifest(work_dir, mf.Manifest(str(work_dir), "here", [launch]))
        (work_dir / ".xtui-exit-0").write_text("1\n")
        app.launched(work_dir)  # as the launch form does once the engine started it
        await until(pilot, lambda: app.runs[work_dir].status.state == "failed", timeout=10)
        await pilot.pause(0.2)
        assert any("fresh: failed" in m and "code 1" in m for m in messages), messages


async def test_a_new_work_dir_under_the_roots_shows_long_before_the_full_walk(tmp_path) -> None:
    fixture_run(tmp_path / "runs", "old")
    app = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one(RunsTable)
        await until(pilot, lambda: table.row_count == 1)
        await pilot.pause(0.5)
        started = time.monotonic()
        fixture_run(tmp_path / "runs", "new")  # beside a known run
        fixture_run(tmp_path, "top")  # in a root
        await until(pilot, lambda: table.row_count == 3, timeout=DISCOVER_EVERY_S)
        assert time.monotonic() - started < DISCOVER_EVERY_S / 3


async def test_a_work_dir_made_empty_then_filled_shows_before_the_full_walk(tmp_path) -> None:
    app = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        (tmp_path / "work").mkdir()  # a launch makes the folder first...
        await pilot.pause(0.5)
        started = time.monotonic()
        stamp = tmp_path / "work" / "20261128_135200"  # ...then the trainer writes into it
        os.rename(fixture_run(tmp_path / "elsewhere") / stamp.name, stamp)
        table = app.screen.query_one(RunsTable)
        await until(pilot, lambda: table.row_count == 1, timeout=DISCOVER_EVERY_S)
        assert time.monotonic() - started < DISCOVER_EVERY_S / 3
