"""Pilot tests of the app over real work dirs: open a run, theme switch and persistence, failure alerts, help."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from engine.runs import manifest as mf
from tests.support.fakes import FakeGpus, NoGpus, fixture_run
from tests.support.waiting import until
from tui.app import XtuiApp
from tui.screens.dashboard import DashboardScreen
from tui.screens.run import RunScreen
from tui.widgets.gpu_panel import GpuPanel
from tui.widgets.log_tail import LogTail
from tui.widgets.runs_table import RunsTable
from tui.widgets.samples_pane import SamplesPane

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def settings_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "settings.json"
    monkeypatch.setenv("XTUI_CONFIG", str(path))
    return path


async def test_dashboard_lists_runs_and_opens_one(tmp_path) -> None:
    work_dir = fixture_run(tmp_path)
    app = XtuiApp(roots=[tmp_path], gpu_backend=FakeGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.screen.query_one(RunsTable).row_count == 1)
        table = app.screen.query_one(RunsTable)
        assert table.row(str(work_dir))[:3] == ("finished", "40/40", "10.8431")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        screen = app.screen
        assert "40/40" in str(screen.query_one("#progress-text", Static).render())
        pane = screen.query_one(SamplesPane)
        await until(pilot, lambda: pane.sample_count == 8)
        log = screen.query_one(LogTail)
        assert not log.lines  # read while the samples tab showed, written when the log tab opens
        await pilot.press("3")
        await until(pilot, lambda: any("Saving checkpoint at 40 iterations" in line for line in log.lines))
        await pilot.press("4")
        ckpt_table = screen.query_one("#checkpoint-table", DataTable)
        assert ckpt_table.row_count == 0  # the fixture has the log only
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_runs_table_cursor_keys_and_clicks_open_the_run_under_the_cursor(tmp_path) -> None:
    for name in ("a", "b", "c"):
        fixture_run(tmp_path, name)
    app = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.screen.query_one(RunsTable).row_count == 3)
        table = app.screen.query_one(RunsTable)
        await pilot.press("end", "up")
        assert table.cursor == 1
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        assert str(app.screen.work_dir) == table.keys[1]
        await pilot.press("escape")
        await pilot.press("home", "up")  # stays on the first run
        assert table.cursor == 0
        await pilot.click(RunsTable, offset=(5, 3))  # the header is line 0: line 3 is the third run
        assert table.cursor == 2 and isinstance(app.screen, DashboardScreen)
        await pilot.click(RunsTable, offset=(5, 3))  # a second click on the cursor's run opens it
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        assert str(app.screen.work_dir) == table.keys[2]


async def test_runs_table_keeps_the_end_of_a_long_work_dir(tmp_path) -> None:
    work_dir = fixture_run(tmp_path / ("deep_folder_" * 6), "qlora_alpaca_e3_second_try")
    app = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.screen.query_one(RunsTable).row_count == 1)
        line = app.screen.query_one(RunsTable).render_line(1).text
        assert len(line) == 80 and "…" in line and line.rstrip().endswith(f"/{work_dir.name}")


async def test_opening_a_work_dir_directly(tmp_path) -> None:
    work_dir = fixture_run(tmp_path)
    app = XtuiApp(roots=[tmp_path], open_run=work_dir, gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(
            pilot, lambda: isinstance(app.screen, RunScreen) and app.runs[work_dir.resolve()].status.state == "finished"
        )
        await pilot.pause()
        assert "finished" in str(app.screen.query_one("#run-status", Static).render())
        assert not any(isinstance(s, DashboardScreen) for s in app.screen_stack)  # none built before Esc
        await pilot.press("escape")  # the run opened at start gives way to the dashboard, which lists it
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await until(pilot, lambda: app.screen.query_one(RunsTable).row_count == 1)
        await pilot.press("enter")  # a run opened from the dashboard goes back to it
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await pilot.press("escape")  # nothing under the dashboard to go back to
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen) and app.is_running


def notified(app: XtuiApp) -> list[str]:
    """The text of every notification `app` shows from now on (its public `notify`, spied on)."""
    texts: list[str] = []
    notify = app.notify

    def spy(message: str, *args, **kwargs) -> None:
        texts.append(message)
        notify(message, *args, **kwargs)

    app.notify = spy
    return texts


class FlakyGpus(FakeGpus):
    """Readings that fail with an unexpected error twice, then work."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 2

    def read(self, with_processes: bool):
        if self.failures:
            self.failures -= 1
            raise RuntimeError("driver hiccup")
        return super().read(with_processes)


async def test_a_failing_poll_is_reported_once_and_watching_goes_on(tmp_path) -> None:
    app = XtuiApp(roots=[tmp_path], gpu_backend=FlakyGpus(), poll_s=0.1)
    messages = notified(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: bool(app.screen.query_one(GpuPanel).query(".gpu")))
        assert messages.count("reading GPUs: RuntimeError: driver hiccup") == 1


async def test_theme_switch_is_remembered(tmp_path, settings_file) -> None:
    app = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.theme == "xtui-dark"
        app.theme = "xtui-256"
        await pilot.pause()
    assert json.loads(settings_file.read_text())["theme"] == "xtui-256"
    again = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.1)
    async with again.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert again.theme == "xtui-256"


async def test_settings_in_a_named_folder_and_an_unwritable_place(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    monkeypatch.setenv("XTUI_CONFIG", str(folder))  # a folder, as the other XTUI_* variables name
    app = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        app.theme = "xtui-256"
        await pilot.pause()
    assert json.loads((folder / "settings.json").read_text())["theme"] == "xtui-256"
    monkeypatch.setenv("XTUI_CONFIG", str(tmp_path / "not-a-folder" / "x" / "settings.json"))
    (tmp_path / "not-a-folder").write_text("a file where a folder should be")
    app = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.1)
    said = notified(app)
    async with app.run_test(size=(80, 24)) as pilot:
        app.theme = "xtui-256"
        await pilot.pause()
        assert app.theme == "xtui-256" and app.return_code is None
        assert any(m.startswith("settings not saved to") for m in said)


async def test_failed_run_alerts_with_its_cause(tmp_path) -> None:
    work_dir = fixture_run(tmp_path)
    log = next(work_dir.glob("*/*.log"))
    full = log.read_text()
    log.write_text(full[: full.rindex("\n", 0, full.index("Iter(train) [20/40]")) + 1])  # as if still training
    mf.write_manifest(work_dir, mf.Manifest(str(work_dir), "here", [_live_launch()]))
    app = XtuiApp(roots=[tmp_path], gpu_backend=FakeGpus(), poll_s=0.1)
    messages = notified(app)
    bells = []
    app.bell = lambda: bells.append(1)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(
            pilot, lambda: app.runs.get(work_dir.resolve()) and app.runs[work_dir.resolve()].status.state == "running"
        )
        with log.open("a") as fh:
            fh.write(
                'Traceback (most recent call last):\n  File "x.py", line 1\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n'
            )
        await until(pilot, lambda: app.runs[work_dir.resolve()].status.state == "failed")
        assert any("failed" in m and "CUDA out of memory" in m for m in messages), messages
        assert bells


def _live_launch() -> mf.Launch:
    """A manifest launch whose process is this test process (alive)."""
    import os
    import time

    import psutil

    me = psutil.Process(os.getpid())
    return mf.Launch(
        argv=["python"], env={}, pid=os.getpid(), create_time=me.create_time(), started_at=time.time(),
        console_offset=0, config="cfg.py", cwd=".",
    )  # fmt: skip


async def test_help_lists_bindings_with_descriptions(tmp_path) -> None:
    fixture_run(tmp_path)
    app = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        table = app.screen.query_one("#keys", DataTable)
        actions = {str(table.get_row_at(i)[1]) for i in range(table.row_count)}
        assert {"Quit", "Launch", "Help"} <= actions


async def test_checkpoint_cursor_stays_on_its_checkpoint_when_a_new_one_lands(tmp_path) -> None:
    from engine.runs.checkpoints import list_checkpoints

    work_dir = fixture_run(tmp_path)
    for n in (20, 40):
        (work_dir / f"iter_{n}.pth").write_bytes(b"not a real checkpoint")
    app = XtuiApp(roots=[tmp_path], open_run=work_dir, gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.screen.query_one("#checkpoint-table", DataTable).row_count == 2)
        screen = app.screen
        await pilot.press("4")
        table = screen.query_one("#checkpoint-table", DataTable)
        table.move_cursor(row=1)  # iter_20 (newest first)
        assert screen._selected_checkpoint().name == "iter_20.pth"
        (work_dir / "iter_60.pth").write_bytes(b"not a real checkpoint")
        screen._fill_checkpoints(list_checkpoints(work_dir.resolve()))
        await pilot.pause(0.1)
        assert table.row_count == 3 and screen._selected_checkpoint().name == "iter_20.pth"


def test_screens_have_what_the_app_asks_of_them() -> None:
    from tui.protocols import GpuWatcher, HasCommands, RunWatcher

    dashboard, run = DashboardScreen(), RunScreen(Path("work"))
    assert (
        isinstance(dashboard, RunWatcher) and isinstance(dashboard, GpuWatcher) and isinstance(dashboard, HasCommands)
    )
    assert isinstance(run, RunWatcher) and isinstance(run, HasCommands) and not isinstance(run, GpuWatcher)


async def test_launch_form_cancel_button_closes_it(tmp_path) -> None:
    from tui.dialogs.launch import LaunchScreen

    app = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(120, 40)) as pilot:  # the whole form shows: no scrolling to its buttons
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, LaunchScreen))
        await pilot.click("#cancel")
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen))


async def test_a_checkpoint_being_written_shows_complete_on_the_next_poll_not_the_next_relisting(tmp_path) -> None:
    import torch

    from tui.app import CHECKPOINTS_EVERY_S

    work_dir = fixture_run(tmp_path)
    (work_dir / "iter_20.pth").write_bytes(b"PK\x03\x04 half written")  # as mmengine leaves it mid-save
    app = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        rec = lambda: app.runs[work_dir.resolve()]  # noqa: E731
        await until(pilot, lambda: [c.ok for c in rec().checkpoints] == [False])
        torch.save({"state_dict": {}}, work_dir / "iter_20.pth")  # the save completes
        await until(pilot, lambda: [c.ok for c in rec().checkpoints] == [True], timeout=CHECKPOINTS_EVERY_S / 2)
