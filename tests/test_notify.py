"""The desktop-notification escape sequences, plain and wrapped for tmux."""

from tui.notify import notification_sequence


def test_plain_sequences_carry_title_and_body() -> None:
    seq = notification_sequence("xtui", "demo/work: failed - CUDA out of memory", in_tmux=False)
    assert seq.startswith("\x1b]777;notify;xtui;demo/work: failed - CUDA out of memory\x07")
    assert "\x1b]9;xtui: demo/work: failed - CUDA out of memory\x07" in seq


def test_tmux_passthrough_doubles_escapes_and_strips_separators() -> None:
    seq = notification_sequence("xtui", "a;b\x1b[31m", in_tmux=True)
    parts = seq.split("\x1b\\")[:-1]
    assert len(parts) == 2 and all(p.startswith("\x1bPtmux;\x1b\x1b]") for p in parts)
    assert ";b" not in seq.split("notify;xtui;")[1].split("\x07")[0]  # ';' would end the field
    assert "[31m" in seq and "\x1b[31m" not in seq.replace("\x1b\x1b", "")  # the body's ESC is dropped


def test_a_failing_run_sends_bell_and_notification_to_the_real_terminal(tmp_path, monkeypatch) -> None:
    """xtui on a pseudo-terminal: when the watched run fails, the terminal receives the bell and both OSCs."""
    import os
    import re
    import select
    import sys
    import time
    from pathlib import Path

    import psutil
    from tui_fakes import fixture_run

    from benchmarks.startup import end, read_until, spawn
    from engine import manifest as mf

    work_dir = fixture_run(tmp_path)
    log = next(work_dir.glob("*/*.log"))
    full = log.read_text()
    log.write_text(full[: full.rindex("\n", 0, full.index("Iter(train) [20/40]")) + 1])  # still training
    me = psutil.Process(os.getpid())  # this test process stands in for the live trainer
    launch = mf.Launch(["python"], {}, me.pid, me.create_time(), time.time(), 0, "cfg.py", ".")
    mf.write_manifest(work_dir, mf.Manifest(str(work_dir), "here", [launch]))
    monkeypatch.setenv("XTUI_CONFIG", str(tmp_path / "settings.json"))
    monkeypatch.delenv("TMUX", raising=False)
    pid, fd = spawn([str(Path(sys.executable).with_name("xtui")), str(work_dir)])
    try:
        read_until(fd, b"running")
        with log.open("a") as fh:
            fh.write("Traceback (most recent call last):\ntorch.OutOfMemoryError: CUDA out of memory.\n")
        seen = b""
        deadline = time.monotonic() + 30
        pattern = re.compile(rb"\x07\x1b]777;notify;xtui;([^\x07]*failed[^\x07]*)\x07\x1b]9;xtui: ([^\x07]*)\x07")
        while not (found := pattern.search(seen)) and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                seen += os.read(fd, 65536)
        assert found, seen[-800:]  # the bell, then both notifications, with the cause
        assert b"CUDA out of memory" in found.group(1) and found.group(1) == found.group(2)
    finally:
        end(pid, fd)
