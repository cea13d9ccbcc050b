"""Pilot on the real tiny model: launch from the form into the free folder it offers, stop through its confirmation,
launch again into that used folder (the form offers resuming it instead), and resume from an older checkpoint picked
in the resume dialog: the run view follows the new branch, and no false stall shows."""

from __future__ import annotations

import contextlib

import pytest
from textual.widgets import Button, Input, OptionList, Static

from engine.demo.build import build_demo
from engine.runs.launch import LaunchError, stop
from engine.runs.processes import session_members
from engine.xtuner import configs
from tests.support.fakes import NoGpus
from tests.support.waiting import until
from tui.app import XtuiApp
from tui.dialogs.confirm import ResumeScreen, StopScreen
from tui.dialogs.launch import LaunchScreen, UsedWorkDirScreen
from tui.screens.dashboard import DashboardScreen
from tui.screens.run import RunScreen
from tui.widgets.curves import Curves

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.fixture
def anyio_backend() -> str:
    """Textual runs on asyncio."""
    return "asyncio"


async def test_launch_stop_launch_into_the_used_folder_and_resume_an_older_checkpoint(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XTUI_CONFIG", str(tmp_path / "settings.json"))
    demo = build_demo(tmp_path / "demo", name="小测")
    source = demo.config.read_text(encoding="utf-8")
    demo.config.write_text(configs.edit_settings(source, {"save_steps": "20"}), encoding="utf-8")  # two soon
    work_dir = (demo.folder / "work").resolve()
    app = XtuiApp(roots=[demo.folder], gpu_backend=NoGpus(), poll_s=0.2)
    rec = lambda: app.runs[work_dir]  # noqa: E731
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, LaunchScreen), timeout=240)
            offered = demo.folder / app.screen.query_one("#config", Input).value  # as the project's picker names it
            assert offered.resolve() == demo.config.resolve()  # the demo's config offered
            assert app.screen.query_one("#work-dir", Input).value == str(work_dir)  # a free folder offered
            await pilot.press("ctrl+s")
            await until(
                pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.work_dir == work_dir, timeout=240
            )
            await until(
                pilot,
                lambda: rec().status.state == "running" and len([c for c in rec().checkpoints if c.ok]) >= 2,
                timeout=240,
            )
            pid = rec().status.pid

            await pilot.press("s")
            await until(pilot, lambda: isinstance(app.screen, StopScreen), timeout=60)
            await pilot.press("y")
            await until(
                pilot, lambda: rec().status.state == "stopped", timeout=120
            )  # TERM, up to 15 s, KILL; slow when loaded
            assert not session_members(pid)
            left_at = rec().state.done_iter  # the branch the resume will leave

            await pilot.press("escape", "n")  # a fresh launch into the folder that holds this run...
            await until(pilot, lambda: isinstance(app.screen, LaunchScreen), timeout=60)
            app.screen.query_one("#work-dir", Input).value = str(work_dir)
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, UsedWorkDirScreen), timeout=60)
            await pilot.press("r")  # ...is a resume of it instead, never two histories mixed
            await until(
                pilot,
                lambda: isinstance(app.screen, ResumeScreen) and app.screen.query_one(OptionList).option_count >= 2,
                timeout=60,
            )
            dialog = app.screen
            newest_good = dialog.chosen
            await pilot.press("down")  # an older checkpoint, picked in the dialog
            await until(
                pilot,
                lambda: dialog.chosen is not newest_good and not dialog.query_one("#confirm", Button).disabled,
                timeout=240,
            )
            older = dialog.chosen
            assert older.iter < newest_good.iter and f"from {older.path.name}" in str(
                dialog.query_one("#dialog-text").render()
            )
            await pilot.press("y")
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen), timeout=60)
            app.open_run_screen(work_dir)
            seen = set()

            def resumed() -> bool:
                seen.add(rec().status.state)
                state = rec().state
                return state.resumed_iter is not None and len(state.steps) > state.start_step

            await until(pilot, resumed, timeout=240)
            assert rec().state.resumed_iter == older.iter and "stalled" not in seen
            if rec().state.last.iter < left_at:  # still behind where the old branch stopped: it must not show
                assert rec().state.done_iter == rec().state.last.iter
                await until(
                    pilot,
                    lambda: str(app.screen.query_one("#progress-text", Static).render()).startswith(
                        f"iter {rec().state.done_iter}/"
                    ),
                )
            curves = app.screen.query_one(Curves)
            # no step of the old branch past it
            await until(pilot, lambda: curves.iterations[-1] == rec().state.last.iter)
    finally:
        with contextlib.suppress(LaunchError):  # already finished
            stop(work_dir, grace=5)
