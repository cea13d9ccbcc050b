"""Runs whose files are damaged, hostile or left by a killed launcher: a clear state, never a traceback or a hang."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.runs import manifest as mf
from engine.runs.launch import EXIT_RECORDER, stop
from engine.runs.processes import session_members
from engine.runs.watch import Run, RunStatus
from engine.runs.workdir import WorkDir
from tests.unit.test_runs import _launch, _log
from tui.cli import main

GOOD = {"work_dir": "/w", "host": "h", "launches": [{
    "argv": ["python"], "env": {}, "pid": 999_999, "create_time": 1.0, "started_at": 1.0,
    "console_offset": 0, "config": "cfg.py", "cwd": ".",
}]}  # fmt: skip


def _with(**launch) -> dict:
    return {**GOOD, "launches": [{**GOOD["launches"][0], **launch}]}


DAMAGED = {
    "a list": [1, 2],
    "a string pid": _with(pid="123"),
    "a negative pid": _with(pid=-5),
    "a float pid": _with(pid=1.5),
    "a null pid": _with(pid=None),
    "a bool pid": _with(pid=True),
    "a string create time": _with(create_time="yesterday"),
    "launches not a list": {**GOOD, "launches": {"a": 1}},
    "a launch not an object": {**GOOD, "launches": [3]},
    "a missing field": {**GOOD, "launches": [{"pid": 5}]},
    "no host": {"work_dir": "/w", "launches": []},
}


@pytest.mark.parametrize("what", DAMAGED)
def test_a_damaged_manifest_is_a_damaged_run(tmp_path, what) -> None:
    (tmp_path / mf.MANIFEST).write_text(json.dumps(DAMAGED[what]))
    run = Run(tmp_path)
    run.poll()
    status = run.status()
    assert status.state == RunStatus.DAMAGED and mf.MANIFEST in status.cause


def test_deep_nesting_and_garbage_are_damage_too(tmp_path) -> None:
    for text in ("[" * 100_000 + "]" * 100_000, "\xff\xfe not json", ""):
        (tmp_path / mf.MANIFEST).write_text(text, errors="surrogateescape")
        assert WorkDir.open(tmp_path).damage


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20))  # fmt: skip
def test_any_json_in_the_manifest_reads_without_raising(tmp_path, value) -> None:
    (tmp_path / mf.MANIFEST).write_text(json.dumps(value))
    opened = WorkDir.open(tmp_path)
    assert opened.manifest is None or opened.damage is None


def test_one_damaged_run_does_not_hide_the_others(tmp_path, capsys) -> None:
    _log(tmp_path / "good", [10, 20], 20, time.time())
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / mf.MANIFEST).write_text('{"work_dir": 1}')
    assert main(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("finished") and "good" in line for line in out)
    assert any(line.startswith("damaged") and "bad" in line for line in out)
    assert main(["status", str(tmp_path), "--json"]) == 0
    states = {Path(s["work_dir"]).name: s["status"] for s in json.loads(capsys.readouterr().out)}
    assert states == {"good": "finished", "bad": "damaged"}


def test_a_fifo_or_a_device_never_blocks_a_reader(tmp_path) -> None:
    os.mkfifo(tmp_path / mf.MANIFEST)
    WorkDir(tmp_path).exit_code_file(0).symlink_to("/dev/zero")
    start = time.monotonic()
    opened = WorkDir.open(tmp_path)
    assert opened.damage and "not a regular file" in opened.damage
    assert WorkDir(tmp_path).exit_record(0) is None
    assert time.monotonic() - start < 2


def test_a_launch_into_a_damaged_manifest_never_overwrites_it(tmp_path, capsys) -> None:
    from engine.demo.build import build_demo

    demo = build_demo(tmp_path / "demo", name="小测")
    work = tmp_path / "w"
    work.mkdir()
    (work / mf.MANIFEST).write_text("my own notes, not xtui's")
    assert main(["train", str(demo.config), "--work-dir", str(work)]) == 2
    assert "xtui never overwrites" in capsys.readouterr().err
    assert (work / mf.MANIFEST).read_text() == "my own notes, not xtui's"


def test_nan_loss_is_flagged_and_json_stays_json(tmp_path, capsys) -> None:
    path = _log(tmp_path, [10, 20, 30], 30, time.time())
    path.write_text(path.read_text().replace("loss: 4.8000", "loss: nan").replace("loss: 4.9000", "loss: inf"))
    run = Run(tmp_path)
    run.poll()
    status = run.status()
    assert status.state == RunStatus.FAILED and "since iteration 20" in status.cause, status
    assert main(["status", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["loss"] == "nan"
    assert main(["events", str(tmp_path)]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    losses = [e["loss"] for e in events if e["type"] == "train_step"]
    assert losses == [5.0, "inf", "nan"]


def test_escape_sequences_in_a_log_reach_the_terminal_escaped(tmp_path, capsys) -> None:
    _log(tmp_path, [10], 30, time.time())
    WorkDir(tmp_path).exit_code_file(0).write_text("1\n")
    (tmp_path / mf.MANIFEST).write_text(json.dumps({**GOOD, "work_dir": str(tmp_path)}))
    (tmp_path / mf.CONSOLE).write_text(
        "Traceback (most recent call last):\nValueError: \x1b]0;pwned\x07\x1b[2J\x1b]52;c;ZXZpbA==\x07\n"
    )
    assert main(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b]52;c;" in out


def _wrapped(tmp_path: Path, script: str) -> subprocess.Popen:
    """A launch as xtui makes it (the exit recorder in its own session) running `script`, recorded in the manifest."""
    proc = subprocess.Popen(
        ["/bin/sh", "-c", EXIT_RECORDER, str(WorkDir(tmp_path).exit_code_file(0)), "sh", "-c", script],
        start_new_session=True,
    )  # fmt: skip
    created = psutil.Process(proc.pid).create_time()
    mf.write_manifest(tmp_path, mf.Manifest(str(tmp_path), "here", [_launch(proc.pid, created)]))
    return proc


def test_term_to_the_recorded_pid_leaves_the_trainer_watched_and_stoppable(tmp_path) -> None:
    proc = _wrapped(tmp_path, "sleep 60")
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGTERM)  # the wrapper, as a user's `kill PID` would
    proc.wait(5)
    trainer = WorkDir.open(tmp_path).alive_pid()
    assert trainer is not None and trainer != proc.pid and trainer in session_members(proc.pid)
    run = Run(tmp_path)
    run.poll()
    assert run.status().state == RunStatus.RUNNING
    assert stop(tmp_path, grace=5) and not session_members(proc.pid)
    assert not psutil.pid_exists(trainer) or psutil.Process(trainer).status() == psutil.STATUS_ZOMBIE


def test_a_sigkilled_trainer_says_so_with_the_host_memory(tmp_path) -> None:
    proc = _wrapped(tmp_path, "kill -9 $$")
    proc.wait(5)
    record = WorkDir(tmp_path).exit_record(0)
    assert (
        record.code == 137 and record.killed_by == signal.SIGKILL and record.memory_total > record.memory_available > 0
    )
    run = Run(tmp_path)
    run.poll()
    cause = run.status().cause
    assert cause.startswith("killed (SIGKILL: out of host memory?)") and "GiB free" in cause
