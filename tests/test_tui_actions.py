"""Pilot: launch from the form, stop through its confirmation, resume after the pre-flight, on the real tiny model."""

from __future__ import annotations

import pytest
from textual.widgets import Button, Input
from tui_fakes import NoGpus

from engine.runs.checkpoints import list_checkpoints
from engine.demo.build import build_demo
from engine.runs.launch import LaunchError, stop
from engine.runs.processes import group_members
from tui.app import XtuiApp
from tui.screens.confirm import ResumeScreen, StopScreen
from tui.screens.launch import LaunchScreen
from tui.screens.run import RunScreen

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def _until(pilot, predicate, timeout: float = 240) -> None:
    for _ in range(int(timeout / 0.2)):
        await pilot.pause(0.2)
        try:
            if predicate():
                return
        except Exception:
            continue
    raise AssertionError("condition never held")


async def test_launch_stop_resume_through_the_dialogs(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XTUI_CONFIG", str(tmp_path / "settings.json"))
    demo = build_demo(tmp_path / "demo", name="小测")
    work_dir = (demo.folder / "work-ui").resolve()
    app = XtuiApp(roots=[demo.folder], gpu_backend=NoGpus(), poll_s=0.2)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("n")
            await _until(pilot, lambda: isinstance(app.screen, LaunchScreen))
            assert app.screen.query_one("#config", Input).value == str(demo.config)  # the demo's config offered
            app.screen.query_one("#work-dir", Input).value = str(work_dir)
            await pilot.pause()
            assert "--work-dir " + str(work_dir) in str(app.screen.query_one("#command").render())
            await pilot.press("ctrl+s")
            await _until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.work_dir == work_dir)
            rec = lambda: app.runs[work_dir]  # noqa: E731
            await _until(pilot, lambda: rec().status.state == "running" and any(c.ok for c in list_checkpoints(work_dir)))
            pid = rec().status.pid

            await pilot.press("s")
            await _until(pilot, lambda: isinstance(app.screen, StopScreen))
            await pilot.press("y")
            await _until(pilot, lambda: rec().status.state == "stopped", timeout=60)
            assert not group_members(pid)

            await pilot.press("r")
            await _until(pilot, lambda: isinstance(app.screen, ResumeScreen) and not app.screen.query_one("#confirm", Button).disabled)
            assert "iteration" in str(app.screen.query_one("#dialog-text").render())
            await pilot.press("y")
            await _until(pilot, lambda: rec().state.resumed_iter is not None and rec().status.state in ("running", "finished"))
            assert rec().state.resumed_iter >= 50
    finally:
        try:
            stop(work_dir, grace=5)
        except LaunchError:
            pass  # already finished
