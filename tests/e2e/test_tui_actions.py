"""Pilot: launch from the form, stop through its confirmation, resume after the pre-flight, on the real tiny model."""

from __future__ import annotations

import pytest
from textual.widgets import Button, Input
from tests.support.fakes import NoGpus

from engine.runs.checkpoints import list_checkpoints
from engine.demo.build import build_demo
from engine.runs.launch import LaunchError, stop
from engine.runs.processes import session_members
from tui.app import XtuiApp
from tui.dialogs.confirm import ResumeScreen, StopScreen
from tui.dialogs.launch import LaunchScreen
from tui.screens.run import RunScreen
from tests.support.waiting import until

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]



async def test_launch_stop_resume_through_the_dialogs(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XTUI_CONFIG", str(tmp_path / "settings.json"))
    demo = build_demo(tmp_path / "demo", name="小测")
    work_dir = (demo.folder / "work-ui").resolve()
    app = XtuiApp(roots=[demo.folder], gpu_backend=NoGpus(), poll_s=0.2)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, LaunchScreen), timeout=240)
            assert app.screen.query_one("#config", Input).value == str(demo.config)  # the demo's config offered
            app.screen.query_one("#work-dir", Input).value = str(work_dir)
            await pilot.pause()
            assert "--work-dir " + str(work_dir) in str(app.screen.query_one("#command").render())
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.work_dir == work_dir, timeout=240)
            rec = lambda: app.runs[work_dir]  # noqa: E731
            await until(pilot, lambda: rec().status.state == "running" and any(c.ok for c in list_checkpoints(work_dir)), timeout=240)
            pid = rec().status.pid

            await pilot.press("s")
            await until(pilot, lambda: isinstance(app.screen, StopScreen), timeout=240)
            await pilot.press("y")
            await until(pilot, lambda: rec().status.state == "stopped", timeout=60)
            assert not session_members(pid)

            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, ResumeScreen) and not app.screen.query_one("#confirm", Button).disabled, timeout=240)
            assert "iteration" in str(app.screen.query_one("#dialog-text").render())
            await pilot.press("y")
            await until(pilot, lambda: rec().state.resumed_iter is not None and rec().status.state in ("running", "finished"), timeout=240)
            assert rec().state.resumed_iter >= 50
    finally:
        try:
            stop(work_dir, grace=5)
        except LaunchError:
            pass  # already finished
