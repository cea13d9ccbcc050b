"""Every start shows the runs and the GPU panel: started again and again, headless and in a real pseudo-terminal."""

from __future__ import annotations

import os
import select
import sys
import time
from pathlib import Path

import pytest

from benchmarks.startup import end, spawn
from tests.support.fakes import NoGpus, fixture_run
from tests.support.waiting import until
from tui.app import XtuiApp
from tui.widgets.gpu_panel import GpuPanel
from tui.widgets.runs_table import RunsTable

HEADLESS_STARTS = 20
PTY_STARTS = 8


@pytest.fixture
def two_runs(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XTUI_CONFIG", str(tmp_path / "settings.json"))
    root = tmp_path / "runs"
    fixture_run(root, "a")
    fixture_run(root, "b")
    return root


@pytest.mark.anyio
async def test_every_headless_start_shows_the_runs_and_the_gpus(two_runs) -> None:
    for start in range(HEADLESS_STARTS):
        app = XtuiApp(roots=[two_runs], gpu_backend=NoGpus(), poll_s=0.5)
        async with app.run_test(size=(80, 24)) as pilot:
            table, panel = app.screen.query_one(RunsTable), app.screen.query_one(GpuPanel)
            await until(pilot, lambda table=table, panel=panel: table.row_count == 2 and panel.shown, timeout=10)
            assert not app.screen.query_one("#no-runs").display, start


def _screen_until(fd: int, markers: tuple[bytes, ...], timeout: float) -> bytes:
    """What the program wrote until every marker appeared (AssertionError naming the missing ones otherwise)."""
    seen, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline and not all(m in seen for m in markers):
        if select.select([fd], [], [], 0.05)[0]:
            seen += os.read(fd, 65536)
    missing = [m for m in markers if m not in seen]
    assert not missing, f"{missing} never appeared; last output: {seen[-300:]!r}"
    return seen


def test_every_start_in_a_pty_shows_the_runs_and_the_host(two_runs) -> None:
    xtui = str(Path(sys.executable).with_name("xtui"))
    for _ in range(PTY_STARTS):
        pid, fd = spawn([xtui, str(two_runs)])
        try:
            _screen_until(fd, (b"finished", b"GiB free"), timeout=30)  # a run's row, the host line of the GPU panel
        finally:
            end(pid, fd)


@pytest.mark.anyio
async def test_the_dashboard_draws_the_apps_state_on_its_beat_even_what_it_was_never_told(two_runs) -> None:
    from engine.runs.watch import RunStatus, Status

    app = XtuiApp(roots=[two_runs], gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one(RunsTable)
        await until(pilot, lambda: table.row_count == 2)
        missed = app.record(two_runs / "missed")  # as if its update had come while the screen could not take it
        missed.status = Status(RunStatus.FAILED, "told to nobody")
        await until(pilot, lambda: table.row_count == 3 and table.row(str(missed.work_dir))[0] == "failed", timeout=5)
