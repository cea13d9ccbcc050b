"""Snapshots of the app's screens at 80x24 and 120x40, with fixed data: the real H200 log, fake GPUs, a fixed host."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from textual.widgets import Input

from engine.gpu import HISTORY, GpuMonitor, HostReading
from engine.runs.watch import RunStatus, Status
from tests.support.fakes import FakeGpus, fixture_run
from tests.support.waiting import until
from tui.app import XtuiApp
from tui.messages import RunUpdate
from tui.screens.run import RunScreen
from tui.widgets.runs_table import RunsTable
from tui.widgets.samples_pane import SamplesPane

ROOT = Path("/tmp/xtui-snapshot-runs")  # fixed: paths show on screen
SIZES = [(80, 24), (120, 40)]


@pytest.fixture(autouse=True)
def runs(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XTUI_CONFIG", str(tmp_path / "settings.json"))
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir()
    work_dir = fixture_run(ROOT)
    yield work_dir
    shutil.rmtree(ROOT, ignore_errors=True)


def _app(open_run: Path | None = None) -> XtuiApp:
    host = HostReading(12.0, 6 << 30, 24 << 30, 80 << 30, str(ROOT))
    monitor = GpuMonitor(backend=FakeGpus(), disk_path=ROOT, read_host=lambda path: host)
    for _ in range(HISTORY):  # a full history of equal readings: the same sparkline however many polls
        monitor.poll()
    return XtuiApp(roots=[ROOT], open_run=open_run, monitor=monitor, poll_s=0.05)


@pytest.mark.parametrize("size", SIZES)
def test_dashboard(snap_compare, size) -> None:
    app = _app()

    async def loaded(pilot) -> None:
        await until(pilot, lambda: app.screen.query_one(RunsTable).row_count == 1)

    assert snap_compare(app, terminal_size=size, run_before=loaded)


@pytest.mark.parametrize("size", SIZES)
def test_run_view_samples(snap_compare, size, runs) -> None:
    app = _app(open_run=runs)

    async def loaded(pilot) -> None:
        await until(
            pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.query_one(SamplesPane).sample_count == 8
        )

    assert snap_compare(app, terminal_size=size, run_before=loaded)


@pytest.mark.parametrize("size", SIZES)
def test_run_view_curves(snap_compare, size, runs) -> None:
    app = _app(open_run=runs)

    async def loaded(pilot) -> None:
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.runs[runs.resolve()].state.last)
        await pilot.press("1")

    assert snap_compare(app, terminal_size=size, run_before=loaded)


@pytest.mark.parametrize("size", SIZES)
def test_launch_form(snap_compare, size, monkeypatch) -> None:
    monkeypatch.setattr("sys.executable", "/usr/bin/python3")  # the shown command names the interpreter
    app = _app()

    async def opened(pilot) -> None:
        await until(pilot, lambda: app.screen.query_one(RunsTable).row_count == 1)
        await pilot.press("n")
        await until(pilot, lambda: app.screen.choices)  # the configs it offers, found in a worker
        for field in app.screen.query(Input):
            field.cursor_blink = False  # a blinking cursor is not a fixed picture
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=opened)


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare, size) -> None:
    app = _app()

    async def opened(pilot) -> None:
        await until(pilot, lambda: app.screen.query_one(RunsTable).row_count == 1)
        await pilot.press("question_mark")

    assert snap_compare(app, terminal_size=size, run_before=opened)


def test_dashboard_every_state(snap_compare) -> None:
    app = _app()

    async def loaded(pilot) -> None:
        table = app.screen.query_one(RunsTable)
        await until(pilot, lambda: table.row_count == 1)
        for state in RunStatus:  # on alternate rows, after the fixture's finished run
            app.post_message(RunUpdate(ROOT / f"run-{state}", [], Status(state), []))
        await until(pilot, lambda: table.row_count == 1 + len(RunStatus))
        await pilot.press("g")  # the GPU panel off: every row shows at 80x24

    assert snap_compare(app, terminal_size=(80, 24), run_before=loaded)


def test_run_view_failed_cause_from_a_log(snap_compare) -> None:
    app = _app()
    work_dir = ROOT / "failed"

    async def loaded(pilot) -> None:
        await until(pilot, lambda: app.screen.query_one(RunsTable).row_count == 1)
        app.push_screen(RunScreen(work_dir))
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        cause = "ValueError: bad \x1b]0;pwned\x07\x1b[2J line that goes on to wrap past the width of the header at 80 columns"
        app.post_message(RunUpdate(work_dir, [], Status(RunStatus.FAILED, cause), []))
        await until(pilot, lambda: "pwned" in str(app.screen.query_one("#run-status").render()))

    assert snap_compare(app, terminal_size=(80, 24), run_before=loaded)


def test_stop_dialog(snap_compare, runs) -> None:
    app = _app(open_run=runs)

    async def opened(pilot) -> None:
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.runs[runs.resolve()].state.last)
        await pilot.press("s")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=opened)


def test_used_work_dir_dialog(snap_compare, runs) -> None:
    from tui.dialogs.launch import UsedWorkDirScreen

    app = _app()

    async def opened(pilot) -> None:
        await until(pilot, lambda: app.screen.query_one(RunsTable).row_count == 1)
        app.push_screen(UsedWorkDirScreen(runs, runs.with_name("work-2")))
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=opened)
