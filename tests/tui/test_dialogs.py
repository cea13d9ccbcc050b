"""Dialogs at 80x24: the launch form pre-fills a free folder and asks about a used one, the resume dialog picks its
checkpoint from a list, help scrolls and lists the screen's own keys first, and every button is on screen."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from textual.widgets import Button, DataTable, Input, OptionList, Static

from engine.runs.launch import WorkDirUsed
from engine.runs.resume import Preflight
from tests.support.fakes import NoGpus, fixture_run
from tests.support.waiting import until
from tui.app import XtuiApp
from tui.dialogs.confirm import ResumeScreen, StopScreen
from tui.dialogs.help import HelpScreen
from tui.dialogs.launch import LaunchScreen, UsedWorkDirScreen
from tui.screens.dashboard import DashboardScreen
from tui.screens.run import RunScreen

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def settings_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XTUI_CONFIG", str(tmp_path / "settings.json"))


def good_checkpoint(path: Path) -> None:
    """A file that passes the structural check of a torch.save zip."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x04N.")


def on_screen(app: XtuiApp, *selectors: str) -> None:
    """Every widget named is drawn inside the terminal, neither clipped nor scrolled out of its dialog."""
    width, height = app.size
    for selector in selectors:
        widget = app.screen.query_one(selector)
        region = widget.region
        assert region.height > 0 and region.bottom <= height and region.right <= width, (selector, region)
        for x, y in ((region.x, region.y), (region.right - 1, region.bottom - 1)):
            found, _ = app.screen.get_widget_at(x, y)
            assert found is widget or widget in found.ancestors, (selector, region, found)


async def test_launch_form_offers_a_free_folder_and_asks_about_a_used_one(tmp_path, monkeypatch) -> None:
    used = fixture_run(tmp_path).resolve()  # tmp_path/work: the name the form would offer
    monkeypatch.setattr("tui.dialogs.launch.start", lambda spec: (_ for _ in ()).throw(WorkDirUsed("holds a run")))
    app = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, LaunchScreen))
        form = app.screen
        assert form.query_one("#work-dir", Input).value == str(tmp_path.resolve() / "work-2")
        on_screen(app, "#cancel", "#launch", "#launch-error")
        form.query_one("#config", Input).value = "config.py"
        form.query_one("#work-dir", Input).value = str(used)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, UsedWorkDirScreen))
        on_screen(app, "#back", "#resume", "#new")
        assert app.screen.focused.id == "new"
        await pilot.press("enter")  # the free folder, filled in for the user to check and launch
        await until(pilot, lambda: app.screen is form)
        assert form.query_one("#work-dir", Input).value == str(used.with_name("work-2"))
        assert "a new folder is filled in" in str(form.query_one("#launch-error", Static).render())
        form.query_one("#work-dir", Input).value = str(used)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, UsedWorkDirScreen))
        await pilot.press("r")  # or resume the run that is there
        await until(pilot, lambda: isinstance(app.screen, ResumeScreen) and app.screen.work_dir == used)
        assert not any(isinstance(screen, LaunchScreen) for screen in app.screen_stack)


async def test_resume_picks_from_a_list_starting_at_the_newest_good_checkpoint(tmp_path, monkeypatch) -> None:
    work_dir = fixture_run(tmp_path).resolve()
    for n in (10, 20):
        good_checkpoint(work_dir / f"iter_{n}.pth")
    (work_dir / "iter_30.pth").write_bytes(b"cut short")
    resumed = []
    monkeypatch.setattr(
        "tui.dialogs.confirm.resume", lambda path, checkpoint: resumed.append(checkpoint) or (_Launch(), None)
    )
    app = XtuiApp(roots=[tmp_path], open_run=work_dir, gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and len(app.runs[work_dir].checkpoints) == 3)
        await pilot.press("4")
        table = app.screen.query_one("#checkpoint-table", DataTable)
        table.move_cursor(row=2)  # iter_10 under the checkpoints tab's cursor: not what the dialog takes
        await pilot.press("r")
        await until(
            pilot, lambda: isinstance(app.screen, ResumeScreen) and app.screen.query_one(OptionList).option_count == 3
        )
        dialog = app.screen
        options = dialog.query_one(OptionList)
        assert options.highlighted == 1 and dialog.chosen.path.name == "iter_20.pth"  # iter_30 is damaged
        text = lambda: str(dialog.query_one("#dialog-text", Static).render())  # noqa: E731
        await until(pilot, lambda: "from iter_20.pth: iteration 20 of 40" in text())
        on_screen(app, "#cancel", "#confirm", "#checkpoints")
        await pilot.press("up")
        await until(pilot, lambda: "iter_30.pth" in text() and "would not work" in text())
        assert dialog.query_one("#confirm", Button).disabled
        ok = Preflight(dialog.checkpoints[2], [], [], work_dir / "cfg.py", 40)
        monkeypatch.setattr("tui.dialogs.confirm.preflight", lambda path, checkpoint: ok)
        await pilot.press("down", "down")
        await until(pilot, lambda: not dialog.query_one("#confirm", Button).disabled)
        await pilot.press("y")
        await until(pilot, lambda: resumed)
        assert resumed == [work_dir / "iter_10.pth"]


class _Launch:
    """What resume returns, as far as the dialog reads it."""

    pid = 4242


async def test_help_lists_the_screens_keys_first_and_scrolls_at_once(tmp_path) -> None:
    fixture_run(tmp_path)
    app = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        table = app.screen.query_one("#keys", DataTable)
        rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
        assert [row[1] for row in rows[:2]] == ["Launch", "New fine-tune"] and rows[0][2] == "Dashboard"
        generic = [i for i, row in enumerate(rows) if row[1] in ("Focus Next", "Copy selected text")]
        assert generic and min(generic) > rows.index(["q", "Quit", "App"])  # Textual's own keys after the app's
        assert table.has_focus and table.max_scroll_y > 0
        await pilot.press("end")
        await pilot.pause()
        assert table.scroll_y == table.max_scroll_y
        await pilot.press("home")
        await pilot.pause()
        assert table.scroll_y == 0
        await pilot.press("pagedown")
        await pilot.pause()
        assert table.scroll_y > 0


async def test_stop_dialog_fits_keeps_the_run_on_enter_and_its_buttons_work(tmp_path, monkeypatch) -> None:
    work_dir = fixture_run(tmp_path)
    stopped = []
    monkeypatch.setattr("tui.dialogs.confirm.stop", lambda path: stopped.append(path) or True)
    app = XtuiApp(roots=[tmp_path], open_run=work_dir, gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StopScreen))
        on_screen(app, "#cancel", "#confirm", "#dialog-text")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        assert not stopped
        for button in ("#cancel", "#confirm"):
            await pilot.press("s")
            await until(pilot, lambda: isinstance(app.screen, StopScreen))
            await pilot.click(button)
            await until(pilot, lambda: isinstance(app.screen, RunScreen))
        await until(pilot, lambda: stopped)
        assert stopped == [work_dir.resolve()]
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)
