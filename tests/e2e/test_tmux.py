"""As a user in tmux: `xtui demo` shows the name in a sample; the tmux session dies, training goes on; xtui finds it again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.xtuner import configs

from engine.runs import manifest as mf
from engine.demo.build import build_demo
from engine.runs.launch import stop
from engine.runs.processes import is_alive
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


def test_demo_in_tmux_survives_the_session_and_reattaches(tmp_path) -> None:
    folder = tmp_path / "demo"
    paths = build_demo(folder, name=NAME)
    source = paths.config.read_text(encoding="utf-8")
    paths.config.write_text(configs.edit_settings(source, {"max_epochs": "30"}), encoding="utf-8")  # long enough
    session = f"xtui-test-{os.getpid()}"
    env = f"XTUI_CONFIG={tmp_path / 'settings.json'} TERM=screen-256color"
    xtui = f"{sys.executable} -m tui.cli"
    _tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", f"cd {ROOT} && {env} {xtui} demo --dir {folder} --name {NAME}; sleep 30")
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
