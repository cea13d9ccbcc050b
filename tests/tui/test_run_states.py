"""Every run state draws, in its theme colour, in every row of the runs table and in the run header, under every theme."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest
from rich.color import Color
from rich.console import Console
from rich.style import Style
from textual.app import App, ComposeResult
from textual.widgets import DataTable, Static

from engine.runs.watch import RunStatus, Status
from tests.support import FIXTURES
from tests.support.fakes import NoGpus, fixture_run
from tests.support.waiting import until
from themes.colours import STATE_VARIABLE, state_colour, theme_colour
from tui.app import XtuiApp
from tui.format import status_text
from tui.messages import RunUpdate
from tui.screens.run import RunProgress, RunScreen
from tui.widgets.runs_table import RunsTable

pytestmark = pytest.mark.anyio

STATES = list(RunStatus)
ROWS = STATES + STATES[::-1]  # each state on an even row and on an odd one (the odd rows have their own background)


@pytest.fixture(autouse=True)
def settings_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XTUI_CONFIG", str(tmp_path / "settings.json"))
    monkeypatch.setenv("XTUI_STATE", str(tmp_path / "state"))


def stopped_run(root: Path, name: str) -> Path:
    """A work dir whose log ends halfway, no trainer alive and no manifest: a stopped run."""
    work_dir = fixture_run(root, name)
    log = next(work_dir.glob("*/*.log"))
    full = log.read_text()
    log.write_text(full[: full.rindex("\n", 0, full.index("Iter(train) [20/40]")) + 1])
    return work_dir


def test_every_state_has_a_theme_colour() -> None:
    assert set(STATE_VARIABLE) == {str(state) for state in RunStatus}


def test_theme_colours_always_parse_in_rich() -> None:
    dark = {"background": "#121212", "foreground": "#e0e0e0", "text-muted": "auto 60%", "error": "#ff000080"}
    assert state_colour(RunStatus.STOPPED, dark) == "#a0a0a0"  # white at 60% over the background
    assert state_colour(RunStatus.STOPPED, {**dark, "background": "#f7f7f4"}) == "#626261"  # black at 60%
    assert theme_colour("error", dark) == "#880808"  # alpha resolved over the background
    assert state_colour(RunStatus.RUNNING, {**dark, "success": "ansi_green"}) == "color(2)"  # the terminal's green
    assert state_colour(RunStatus.FAILED, {**dark, "error": "$nonsense"}) == "#e0e0e0"  # the foreground instead
    assert theme_colour("error", {}) == "#808080"


async def test_dashboard_draws_every_state_in_every_row_under_every_theme(tmp_path) -> None:
    stopped = stopped_run(tmp_path, "b-stopped")
    fixture_run(tmp_path, "a-finished")  # listed first: the stopped run is off the cursor, as when the app froze
    app = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one(RunsTable)
        await until(pilot, lambda: table.row_count == 2 and table.row(str(stopped))[0] == "stopped")
        for index, state in enumerate(ROWS):
            app.post_message(RunUpdate(tmp_path / f"synthetic-{index}", [], Status(state), []))
        await until(pilot, lambda: table.row_count == 2 + len(ROWS))
        expected = [table.row(key)[0] for key in table.keys]
        for theme in app.available_themes:
            app.theme = theme
            for cursor in range(2 + len(STATES)):  # each state once under the cursor
                table.cursor = cursor
                await pilot.pause()  # paints the screen: a colour Rich cannot parse raises here
                drawn = [table.render_line(1 + row).text.split()[0] for row in range(table.row_count)]
                assert drawn == expected, (theme, cursor)
        assert app.is_running and app.crash_message is None


async def test_run_header_shows_a_stopped_run(tmp_path) -> None:
    work_dir = stopped_run(tmp_path, "work")
    app = XtuiApp(roots=[tmp_path], open_run=work_dir, gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(
            pilot, lambda: isinstance(app.screen, RunScreen) and app.runs[work_dir.resolve()].status.state == "stopped"
        )
        await pilot.pause()
        header = str(app.screen.query_one("#run-status", Static).render())
        assert header.startswith("stopped") and "max iterations not reached" in header


async def test_status_words_render_under_every_theme(tmp_path) -> None:
    app = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        for theme in app.available_themes:
            app.theme = theme
            await pilot.pause()
            for state in RunStatus:
                colour = state_colour(state, app.theme_variables)
                assert Color.parse(colour) and Style.parse(f"bold {colour}"), (theme, state)
                console = Console(file=io.StringIO(), width=40, color_system="truecolor")
                console.print(status_text(state, app.theme_variables))
                assert console.file.getvalue().startswith("\x1b[1;") and state in console.file.getvalue()


async def test_run_view_header_shows_every_state_with_its_cause(tmp_path) -> None:
    app = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        for index, state in enumerate(RunStatus):
            work_dir = tmp_path / f"synthetic-{index}"  # no such folder: the watcher never reads it, the test tells
            app.push_screen(RunScreen(work_dir))
            await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.is_mounted)
            cause = f"why it is {state}" if state not in (RunStatus.RUNNING, RunStatus.FINISHED) else None
            app.post_message(
                RunUpdate(work_dir, [], Status(state, cause, 4242 if state == RunStatus.RUNNING else None), [])
            )
            header = app.screen.query_one("#run-status", Static)

            def shown(header=header, state=state, cause=cause) -> bool:
                return str(header.render()).startswith(str(state)) and (cause or "") in str(header.render())

            await until(pilot, shown)
            assert ("pid 4242" in str(header.render())) == (state == RunStatus.RUNNING)
            await pilot.press("escape")
        assert app.is_running and app.crash_message is None


def epoch_run(root: Path) -> Path:
    """A finished EpochBasedTrainLoop work dir: the real 2-epoch log, its epoch_1.pth and epoch_2.pth (named by
    last_checkpoint), as plain `xtuner train` leaves it."""
    work_dir = root / "epochs"
    stamp = work_dir / "20261201_102335"
    stamp.mkdir(parents=True)
    shutil.copy(FIXTURES / "xtuner-0.2.0-cpu-epochs.log", stamp / "20261201_102335.log")
    for epoch in (1, 2):
        with zipfile.ZipFile(work_dir / f"epoch_{epoch}.pth", "w") as zf:  # a torch.save file's layout
            zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    (work_dir / "last_checkpoint").write_text(str(work_dir / "epoch_2.pth"))
    return work_dir


async def open_run_view(pilot, app: XtuiApp, work_dir: Path, state: str) -> None:
    """Wait until the run's view shows the run in `state` with its checkpoints listed."""
    await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.runs[work_dir.resolve()].status.state == state)
    rec = app.runs[work_dir.resolve()]
    table = app.screen.query_one("#checkpoint-table", DataTable)
    await until(pilot, lambda: table.row_count == len(rec.checkpoints) and "iter" in progress_text(app))


def progress_text(app: XtuiApp) -> str:
    """The progress line of the run view on top."""
    return str(app.screen.query_one("#progress-text", Static).render())


async def test_an_epoch_run_shows_its_epoch_and_its_checkpoints_epochs(tmp_path) -> None:
    work_dir = epoch_run(tmp_path)
    app = XtuiApp(roots=[tmp_path], open_run=work_dir, gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_run_view(pilot, app, work_dir, "finished")
        assert progress_text(app) == "epoch 2/2  iter 44/44"  # epoch 2 ends at iteration 44, epoch 1 at 22
        table = app.screen.query_one("#checkpoint-table", DataTable)
        assert [str(column.label) for column in table.ordered_columns] == ["Iter", "Epoch", "Kind", "Size", "State"]
        rows = [table.get_row_at(row) for row in range(table.row_count)]
        assert [row[:2] for row in rows] == [["44", "2"], ["22", "1"]]
        assert rows[0][-1] == "ok (last_checkpoint)" and rows[1][-1] == "ok"


async def test_an_iteration_run_has_no_epoch(tmp_path) -> None:
    work_dir = fixture_run(tmp_path)
    (work_dir / "iter_40.pth").write_bytes(b"")
    app = XtuiApp(roots=[tmp_path], open_run=work_dir, gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_run_view(pilot, app, work_dir, "finished")
        assert progress_text(app) == "iter 40/40"
        table = app.screen.query_one("#checkpoint-table", DataTable)
        assert [str(column.label) for column in table.ordered_columns] == ["Iter", "Kind", "Size", "State"]


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_snapshot_epoch_run_checkpoints(snap_compare, size) -> None:
    root = Path("/tmp/xtui-snapshot-epochs")  # fixed: the path shows on screen
    shutil.rmtree(root, ignore_errors=True)
    work_dir = epoch_run(root)
    app = XtuiApp(roots=[root], open_run=work_dir, gpu_backend=NoGpus(), poll_s=0.05)

    async def loaded(pilot) -> None:
        await open_run_view(pilot, app, work_dir, "finished")
        await pilot.press("4")

    try:
        assert snap_compare(app, terminal_size=size, run_before=loaded)
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def test_the_progress_bar_repaints_only_when_its_drawing_changes() -> None:
    class BarApp(App[None]):
        def compose(self) -> ComposeResult:
            yield RunProgress(total=1, show_eta=False)

    app = BarApp()
    async with app.run_test(size=(50, 3)) as pilot:
        bar = app.query_one(RunProgress)
        await pilot.pause()
        painted: list[float] = []
        render = bar.query_one("#bar").render
        bar.query_one("#bar").render = lambda: painted.append(bar.progress) or render()
        for done in range(10, 500, 10):  # a line a second of a 100k-iteration run: under a cell and under 0.5 %
            bar.show(done, 100_000)
            await pilot.pause()
        assert len(painted) <= 1 and bar.progress == 10
        bar.show(50_000, 100_000)
        await pilot.pause()
        assert bar.progress == 50_000 and painted[-1] == 50_000 and bar.percentage == 0.5
