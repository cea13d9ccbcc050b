"""A queued run on the dashboard: its line says queued, in its colour, and why it waits; the reason cut to fit 80
columns keeps the run's name, s offers to cancel it and does (Pilot), and the dashboard at 80x24 and 120x40 (snapshots)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from engine.gpu import HISTORY, GpuMonitor, HostReading
from engine.runs import manifest as mf
from tests.support.fakes import FakeGpus, NoGpus, fixture_run
from tests.support.waiting import until
from tui.app import XtuiApp
from tui.widgets.runs_table import RunsTable

ROOT = Path("/tmp/xtui-snapshot-queue")  # fixed: paths show on screen
REASON = "after work (running, iter 20/40)"  # relative to where it was queued from
SIZES = [(80, 24), (120, 40)]


@pytest.fixture
def queued(tmp_path, monkeypatch):
    """ROOT with a finished run (`work`) and a run queued after it (`next`), its waiter a live process."""
    monkeypatch.setenv("XTUI_CONFIG", str(tmp_path / "settings.json"))
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir()
    fixture_run(ROOT)
    waiter = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    entry = mf.Queued(waiter.pid, psutil.Process(waiter.pid).create_time(), time.time(), REASON, str(ROOT / "work"))
    (ROOT / "next").mkdir()
    mf.write_manifest(ROOT / "next", mf.Manifest(str(ROOT / "next"), "here", [], entry))
    yield ROOT / "next"
    waiter.kill()
    waiter.wait()
    shutil.rmtree(ROOT, ignore_errors=True)


def _app() -> XtuiApp:
    host = HostReading(12.0, 6 << 30, 24 << 30, 80 << 30, str(ROOT))
    monitor = GpuMonitor(backend=FakeGpus(), disk_path=ROOT, read_host=lambda path: host)
    for _ in range(HISTORY):
        monitor.poll()
    return XtuiApp(roots=[ROOT], monitor=monitor, poll_s=0.05)


async def _loaded(pilot) -> None:
    table = pilot.app.screen.query_one(RunsTable)
    await until(pilot, lambda: table.row_count == 2 and table.row(str(ROOT / "next"))[0] == "queued")


@pytest.mark.anyio
async def test_a_queued_run_says_why_it_waits_and_keeps_its_name_at_80_columns(queued) -> None:
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        await _loaded(pilot)
        table = app.screen.query_one(RunsTable)
        line = table.render_line(1 + table.keys.index(str(queued))).text
        assert line.split()[0] == "queued" and "  next  after work (running, iter" in line, line
        assert line.rstrip().endswith("…"), line
        await pilot.resize_terminal(160, 40)
        await pilot.pause()
        line = table.render_line(1 + table.keys.index(str(queued))).text
        assert f"{queued}  {REASON}" in line, line


@pytest.mark.parametrize("size", SIZES)
def test_dashboard_with_a_queued_run(snap_compare, size, queued) -> None:
    assert snap_compare(_app(), terminal_size=size, run_before=_loaded)


@pytest.mark.anyio
async def test_stop_on_a_queued_run_offers_to_cancel_it_and_does(queued) -> None:
    from textual.widgets import Static

    from engine.runs.processes import session_members
    from tui.dialogs.confirm import StopScreen
    from tui.screens.run import RunScreen

    waiter = mf.read_manifest(queued).queue
    app = XtuiApp(roots=[ROOT], open_run=queued, gpu_backend=NoGpus(), poll_s=0.05)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.runs[queued].status.state == "queued")
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StopScreen))
        text = str(app.screen.query_one("#dialog-text", Static).render())
        assert text.startswith(f"Cancel the queued run in {queued}?") and "It has not started" in text
        await pilot.press("y")
        await until(pilot, lambda: app.runs[queued].status.cause == "cancelled before start")
    assert app.runs[queued].status.state == "stopped" and not session_members(waiter.pid, waiter.create_time)
