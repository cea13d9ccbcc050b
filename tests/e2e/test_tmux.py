"""As a user in tmux: `xtui demo` shows the name in a sample; the tmux session dies, training goes on; xtui finds it again."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from engine.demo.build import build_demo
from engine.runs import manifest as mf
from engine.runs.launch import stop
from engine.runs.processes import is_alive
from engine.xtuner import configs
from tests.support import ROOT

pytestmark = pytest.mark.e2e
NAME = "小测"


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def _screen_until(session: str, predicate, timeout: float) -> str:
    """The pane's text once `predicate(text)` holds (AssertionError with the last screen otherwise)."""
    deadline, text = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        text = _tmux("capture-pane", "-p", "-t", session)
        if predicate(text):
            return text
        time.sleep(1.0)
    raise AssertionError(f"screen never matched:\n{text}")


def _session_80x24(name: str, command: str) -> None:
    """A detached tmux session of 80x24 running `command`."""
    _tmux("new-session", "-d", "-s", name, "-x", "80", "-y", "24", command)


def test_demo_in_tmux_survives_the_session_and_reattaches(tmp_path) -> None:
    folder = tmp_path / "demo"
    paths = build_demo(folder, name=NAME)
    source = paths.config.read_text(encoding="utf-8")
    paths.config.write_text(configs.edit_settings(source, {"max_epochs": "30"}), encoding="utf-8")  # long enough
    session = f"xtui-test-{os.getpid()}"
    env = f"XTUI_CONFIG={tmp_path / 'settings.json'} TERM=screen-256color"
    xtui = f"{sys.executable} -m tui.cli"
    _session_80x24(session, f"cd {ROOT} && {env} {xtui} demo --dir {folder} --name {NAME}; sleep 30")
    try:
        screen = _screen_until(session, lambda t: f"我是{NAME}" in t, timeout=300)
        assert "running" in screen
    finally:
        _tmux("kill-session", "-t", session)
    launch = mf.read_manifest(paths.work_dir).last
    time.sleep(2)
    assert is_alive(launch.pid, launch.create_time), "training died with the tmux session"
    try:
        _tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", f"cd {ROOT} && {env} {xtui} {paths.work_dir}")
        screen = _screen_until(session, lambda t: "running" in t and f"我是{NAME}" in t, timeout=60)
        assert f"pid {launch.pid}" in screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        stop(paths.work_dir, grace=5)


def _keys(session: str, *keys: str) -> None:
    """Type `keys` into the pane, a moment apart (as a person would)."""
    for key in keys:
        _tmux("send-keys", "-t", session, key)
        time.sleep(0.3)


def test_each_dialog_fits_80x24_and_its_buttons_are_reached_by_keyboard(tmp_path) -> None:
    from tests.support.fakes import fixture_run
    from tests.tui.test_dialogs import good_checkpoint

    runs = Path(tempfile.mkdtemp(prefix="xd-", dir="/tmp"))  # short: the paths fit the form's fields at 80 columns
    work_dir = fixture_run(runs)
    good_checkpoint(work_dir / "iter_20.pth")
    (work_dir / "config.py").write_text("raise SystemExit('not a real config')\n")  # what mmengine dumps, here a dud
    session = f"xtui-dialogs-{os.getpid()}"
    env = f"XTUI_CONFIG={tmp_path / 'settings.json'} XTUI_STATE={tmp_path / 'state'} TERM=screen-256color"
    _session_80x24(session, f"cd {ROOT} && {env} {sys.executable} -m tui.cli {runs}; sleep 30")
    screen = lambda predicate, timeout=30: _screen_until(session, predicate, timeout)  # noqa: E731
    try:
        screen(lambda t: "finished" in t and "GiB free" in t)
        _keys(session, "?")
        keys = screen(lambda t: "Action" in t)
        assert "Launch" in keys.split("Action", 1)[1].splitlines()[1]  # the screen's own keys first
        _keys(session, "End")
        screen(lambda t: "Copy selected text" in t)  # Textual's generic keys, at the end
        _keys(session, "Escape", "n")
        form = screen(lambda t: "Launch a training run" in t)
        assert "Launch (ctrl+s)" in form and str(work_dir.with_name("work-2")) in form  # a free folder offered
        _tmux("send-keys", "-t", session, "-l", str(work_dir / "config.py"))
        _keys(session, "Tab", "C-u")
        _tmux("send-keys", "-t", session, "-l", str(work_dir))  # the used folder
        _keys(session, "C-s")  # the form's Launch key (its fields changed order with the config list and modes)
        asked = screen(lambda t: "already holds a run" in t and "New folder (n)" in t)
        assert "Resume that run (r)" in asked and "Back" in asked
        _keys(session, "Enter")  # New folder: focused
        screen(lambda t: "a new folder is filled in" in t)
        _keys(session, "Escape", "Enter")
        run = screen(lambda t: "Curves" in t and "Checkpoints" in t)
        assert "finished" in run
        _keys(session, "s")
        screen(lambda t: "Stop the run in" in t and "Stop (y)" in t)
        _keys(session, "Tab", "Enter")  # from Cancel to Stop
        screen(lambda t: "launched" in t)  # "... has no run launched by xtui": the fixture was not started by xtui
        _keys(session, "r")
        resume = screen(lambda t: "Resume from" in t and "from iter_20.pth: iteration 20 of 40" in t)
        assert "Resume (y)" in resume and "Cancel" in resume
        _keys(session, "Enter", "Enter")  # the checkpoint picked, then its Resume button
        screen(lambda t: "resumed from iter_20.pth" in t)  # launched (the dud config then fails at once)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        shutil.rmtree(runs, ignore_errors=True)
