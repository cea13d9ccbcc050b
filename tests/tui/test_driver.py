"""xtui on a real pseudo-terminal: the input thread sleeps while idle, yet keys, a lone Esc and quitting still work."""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from pathlib import Path

from benchmarks.startup import end, read_until, spawn
from tests.support import FIXTURES

SELECT_SYSCALLS = {"23", "270", "72"}  # select and pselect6 on x86-64, pselect6 on arm64


def _input_thread_wakeups(pid: int) -> int:
    """Voluntary context switches so far of Textual's input thread: the one thread blocked in select()
    (the event loop waits in epoll, the pollers in futex or nanosleep); one switch per return from select()."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        if (task / "syscall").read_text().split()[0] in SELECT_SYSCALLS:
            status = (task / "status").read_text()
            return int(status.split("voluntary_ctxt_switches:")[1].split()[0])
    raise AssertionError("no thread waits in select()")


def _drain(fd: int, seconds: float) -> bytes:
    seen, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            seen += os.read(fd, 65536)
    return seen


def test_idle_input_thread_sleeps_and_keys_still_arrive(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XTUI_CONFIG", str(tmp_path / "settings.json"))
    pid, fd = spawn([str(Path(sys.executable).with_name("xtui")), str(FIXTURES)])
    exited = 0
    try:
        read_until(fd, b"Status")
        _drain(fd, 1.0)
        before = _input_thread_wakeups(pid)
        _drain(fd, 3.0)
        assert _input_thread_wakeups(pid) - before <= 3  # Textual's own driver: ~30 in 3 s (select every 0.1 s)

        os.write(fd, b"?")
        read_until(fd, b"every action by name")
        os.write(fd, b"\x1b")  # a lone Esc: only the parser's timeout tells it from the start of a sequence
        read_until(fd, b"No runs yet", timeout=3)

        os.write(fd, b"q")
        quit_at = time.monotonic()
        while not (exited := os.waitpid(pid, os.WNOHANG)[0]) and time.monotonic() - quit_at < 5:
            with contextlib.suppress(OSError):  # the pty closed with the program
                _drain(fd, 0.05)  # the goodbye frames must not fill the pty
        assert exited, "xtui did not exit on q"
        assert time.monotonic() - quit_at < 2.0  # the exit flag wakes the input thread at once
    finally:
        if exited:
            os.close(fd)
        else:
            end(pid, fd)
