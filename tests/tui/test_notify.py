"""The desktop-notification escape sequence: one per terminal, the one it reads, wrapped for tmux."""

import subprocess

import pytest

from tui import notify
from tui.notify import notification, notification_sequence

BODY = "demo/work: failed - CUDA out of memory"
KITTY = "\x1b]99;d=0;xtui\x1b\\\x1b]99;p=body;" + BODY + "\x1b\\"
ITERM = "\x1b]9;xtui: " + BODY + "\x07"
OSC777 = "\x1b]777;notify;xtui;" + BODY + "\x07"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TERM": "xterm-kitty"}, KITTY),
        ({"TERM": "xterm-256color", "KITTY_WINDOW_ID": "1"}, KITTY),  # kitty with TERM overridden
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "iTerm.app"}, ITERM),
        ({"TERM": "xterm-256color", "LC_TERMINAL": "iTerm2"}, ITERM),  # iTerm2 over ssh
        ({"TERM": "xterm-ghostty", "TERM_PROGRAM": "ghostty"}, OSC777),
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "WezTerm"}, OSC777),
        ({"TERM": "foot"}, OSC777),
        ({"TERM": "xterm-256color", "WT_SESSION": "x"}, OSC777),
        ({"TERM": "xterm-256color"}, OSC777),  # unknown: the sequence with a title, read most widely
        ({}, OSC777),
    ],
)
def test_each_terminal_gets_exactly_the_one_sequence_it_reads(env, expected) -> None:
    assert notification("xtui", BODY, env) == expected


def test_inside_tmux_the_attached_terminal_decides_and_the_sequence_is_passed_through(monkeypatch) -> None:
    shown = {"out": "xterm-kitty kitty(0.26.5)\n"}
    calls = []

    def run(argv, **kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, shown["out"], "")

    monkeypatch.setattr(notify.subprocess, "run", run)
    env = {"TMUX": "/tmp/tmux-0/default,1,0", "TERM": "tmux-256color", "TERM_PROGRAM": "tmux"}
    assert notification("xtui", BODY, env) == "\x1bPtmux;" + KITTY.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    assert calls[0][:3] == ["tmux", "display-message", "-p"]
    shown["out"] = "xterm-256color iTerm2 3.5.0\n"
    assert notification("xtui", BODY, env) == "\x1bPtmux;" + ITERM.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    shown["out"] = ""  # no client attached: the pane's own environment
    assert notification("xtui", BODY, dict(env, KITTY_WINDOW_ID="3")).startswith("\x1bPtmux;\x1b\x1b]99;")


def test_without_a_tmux_command_the_environment_decides(monkeypatch) -> None:
    def run(argv, **kwargs):
        raise FileNotFoundError(argv[0])

    monkeypatch.setattr(notify.subprocess, "run", run)
    seq = notification("xtui", BODY, {"TMUX": "x", "TERM": "screen"})
    assert seq == "\x1bPtmux;" + OSC777.replace("\x1b", "\x1b\x1b") + "\x1b\\"


def test_title_and_body_lose_separators_and_control_characters() -> None:
    for terminal in ("xterm-kitty", "iterm.app", "xterm-256color"):
        seq = notification_sequence("xtui", "a;b\x1b[31m\x07c", terminal, in_tmux=False)
        assert "ab[31mc" in seq and ";b" not in seq and "\x1b[31m" not in seq  # ';' would end a field, ESC/BEL the OSC


def test_a_failing_run_sends_bell_and_one_notification_to_the_real_terminal(tmp_path, monkeypatch) -> None:
    """xtui on a pseudo-terminal named kitty: when the watched run fails, the terminal receives the bell and kitty's
    OSC 99 notification, and no OSC 9 or 777 (kitty 0.26.5 shows each of those as one more notification)."""
    import os
    import re
    import select
    import sys
    import time
    from pathlib import Path

    import psutil

    from benchmarks.startup import end, read_until, spawn
    from engine.runs import manifest as mf
    from tests.support.fakes import fixture_run

    work_dir = fixture_run(tmp_path)
    log = next(work_dir.glob("*/*.log"))
    full = log.read_text()
    log.write_text(full[: full.rindex("\n", 0, full.index("Iter(train) [20/40]")) + 1])  # still training
    me = psutil.Process(os.getpid())  # this test process stands in for the live trainer
    launch = mf.Launch(["python"], {}, me.pid, me.create_time(), time.time(), 0, "cfg.py", ".")
    mf.write_manifest(work_dir, mf.Manifest(str(work_dir), "here", [launch]))
    monkeypatch.setenv("XTUI_CONFIG", str(tmp_path / "settings.json"))
    for name in ("TMUX", "TERM_PROGRAM", "LC_TERMINAL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KITTY_WINDOW_ID", "1")  # the pty's TERM is xterm-256color
    pid, fd = spawn([str(Path(sys.executable).with_name("xtui")), str(work_dir)])
    try:
        read_until(fd, b"running")
        with log.open("a") as fh:
            fh.write("Traceback (most recent call last):\ntorch.OutOfMemoryError: CUDA out of memory.\n")
        seen = b""
        deadline = time.monotonic() + 30
        pattern = re.compile(rb"\x07\x1b]99;d=0;xtui\x1b\\\x1b]99;p=body;([^\x1b]*failed[^\x1b]*)\x1b\\")
        while not (found := pattern.search(seen)) and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                seen += os.read(fd, 65536)
        assert found, seen[-800:]  # the bell, then the notification, with the cause
        assert b"CUDA out of memory" in found.group(1)
        deadline = time.monotonic() + 1  # what follows the notification, in the same write or soon after
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                seen += os.read(fd, 65536)
        assert b"\x1b]9;" not in seen and b"\x1b]777;" not in seen
    finally:
        end(pid, fd)
