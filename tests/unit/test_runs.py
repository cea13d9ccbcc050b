"""Run status from the files alone: finished, failed (exit code 0 notwithstanding), stopped, stalled."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil

from engine.runs import manifest as mf
from engine.runs import processes
from engine.runs.folders import discover
from engine.runs.watch import Run
from engine.runs.workdir import WorkDir

LINE = "{ts} - mmengine - INFO - Iter(train) [{i:>3}/{n}]  lr: 1.0000e-03  eta: 0:00:10  time: {t:.4f}  data_time: 0.0050  loss: {loss:.4f}\n"


def _log(work_dir: Path, iters: list[int], n: int, start: float, gap: float = 1.0, extra: str = "") -> Path:
    stamp = work_dir / "20261128_140000"
    stamp.mkdir(parents=True, exist_ok=True)
    lines = [
        LINE.format(
            ts=time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(start + k * gap)), i=i, n=n, t=gap, loss=5 - k * 0.1
        )
        for k, i in enumerate(iters)
    ]
    path = stamp / "20261128_140000.log"
    path.write_text("".join(lines) + extra)
    return path


def _launch(pid: int, create_time: float, stopped: bool = False) -> mf.Launch:
    return mf.Launch(
        argv=["python"], env={}, pid=pid, create_time=create_time, started_at=time.time(), console_offset=0,
        config="cfg.py", cwd=".", stopped_at=time.time() if stopped else None,
    )  # fmt: skip


def _dead(work_dir: Path, exit_code: int | None, stopped: bool = False) -> None:
    mf.write_manifest(work_dir, mf.Manifest(str(work_dir), "here", [_launch(999_999, 1.0, stopped)]))
    if exit_code is not None:
        WorkDir(work_dir).exit_code_file(0).write_text(f"{exit_code}\n")


def test_finished_when_the_final_iteration_was_saved_but_not_logged(tmp_path) -> None:
    _log(
        tmp_path,
        [10, 20, 270],
        273,
        time.time(),
        extra="2026/11/28 14:00:09 - mmengine - INFO - Saving checkpoint at 273 iterations\n",
    )
    run = Run(tmp_path)
    run.poll()
    assert run.status().state == "finished"


def test_traceback_means_failed_even_with_exit_code_zero(tmp_path) -> None:
    _log(tmp_path, [10, 20], 100, time.time())
    _dead(tmp_path, exit_code=0)
    (tmp_path / mf.CONSOLE).write_text(
        'Traceback (most recent call last):\n  File "train.py", line 3, in <module>\n'
        "_pickle.UnpicklingError: Weights only load failed. Re-running `torch.load` with `weights_only` set to `False`\n"
    )
    run = Run(tmp_path)
    run.poll()
    status = run.status()
    assert status.state == "failed" and "Weights only load failed" in status.cause
    assert run.state.errors[-1].cause == "weights_only"


def test_exit_code_and_early_end(tmp_path) -> None:
    _log(tmp_path, [10, 20], 100, time.time())
    _dead(tmp_path, exit_code=137)
    run = Run(tmp_path)
    run.poll()
    assert run.status().state == "failed" and "137" in run.status().cause
    WorkDir(tmp_path).exit_code_file(0).write_text("0\n")
    assert "iteration 20" in run.status().cause


def test_stopped_by_user(tmp_path) -> None:
    _log(tmp_path, [10, 20], 100, time.time())
    _dead(tmp_path, exit_code=None, stopped=True)
    run = Run(tmp_path)
    run.poll()
    assert run.status().state == "stopped"


def test_stalled_after_many_usual_iteration_times(tmp_path) -> None:
    start = time.time() - 1000
    _log(tmp_path, [10, 20, 30, 40], 100, start, gap=2.0)
    me = psutil.Process(os.getpid())
    mf.write_manifest(tmp_path, mf.Manifest(str(tmp_path), "here", [_launch(me.pid, me.create_time())]))
    run = Run(tmp_path)
    run.poll()
    assert run.status(now=start + 6 + 25).state == "running"
    stalled = run.status(now=start + 6 + 500)
    assert stalled.state == "stalled" and stalled.pid == me.pid


def test_discover_finds_plain_and_xtui_runs_and_skips_noise(tmp_path) -> None:
    _log(tmp_path / "a" / "work", [10], 10, time.time())
    mf.write_manifest(tmp_path / "b", mf.Manifest(str(tmp_path / "b"), "here", []))
    (tmp_path / ".venv" / "x" / "20261128_140000").mkdir(parents=True)
    (tmp_path / "c" / "20261128_1400").mkdir(parents=True)
    assert discover([tmp_path]) == [(tmp_path / "a" / "work").resolve(), (tmp_path / "b").resolve()]


def test_a_resume_that_restarts_from_zero_is_failed(tmp_path) -> None:
    _log(tmp_path, [10, 20], 100, time.time())
    resumed = replace(_launch(999_999, 1.0), resume_from=str(tmp_path / "iter_50.pth"))
    mf.write_manifest(tmp_path, mf.Manifest(str(tmp_path), "here", [resumed]))
    run = Run(tmp_path)
    run.poll()
    status = run.status()
    assert status.state == "failed" and "restarted at iteration 10" in status.cause


def test_a_plain_xtuner_trainer_on_the_work_dir_is_found(tmp_path) -> None:
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    sleeper = "import time; time.sleep(30)"
    argv = [sys.executable, "-c", sleeper, "xtuner", "train", "cfg.py", "--work-dir", "work"]  # relative to its cwd
    proc = subprocess.Popen(argv, cwd=tmp_path)
    try:
        for _ in range(50):  # until the child has exec'd its command line
            processes._scan = (float("-inf"), [])
            if processes.processes_of_work_dir(work_dir):
                break
            time.sleep(0.1)
        assert processes.processes_of_work_dir(work_dir) == [proc.pid]
        assert processes.processes_of_work_dir(tmp_path / "other") == []
    finally:
        proc.kill()
        proc.wait()


def test_a_resume_from_an_older_checkpoint_leaves_the_abandoned_branch_behind(tmp_path) -> None:
    from engine.runs.events import CheckpointSaved, Resumed, Started, TrainStep
    from engine.runs.watch import RunState

    state = RunState()
    for event in (Started("a"), TrainStep(50, 100), CheckpointSaved(50), TrainStep(90, 100), CheckpointSaved(100),
                  Started("b"), Resumed(50)):  # fmt: skip
        state.apply(event)
    assert state.done_iter == 50 and not state.reached_max
    state.apply(TrainStep(60, 100))
    assert state.done_iter == 60 and state.saved == [50]


def test_the_current_branch_keeps_the_samples_up_to_each_resume_and_all_of_them_are_still_read() -> None:
    from engine.runs.events import Resumed, Sample, Started
    from engine.runs.watch import RunState

    state = RunState()
    old = [Sample(it, "who?", f"old {it}") for it in (50, 100, 150)]
    new = [Sample(it, "who?", f"new {it}") for it in (100, 150)]
    again = [Sample(it, "who?", f"again {it}") for it in (150,)]
    events = [Started("a"), *old, Started("b"), Resumed(100), *new, Started("c"), Resumed(50), *again]
    for event in events:
        state.apply(event)
    assert state.samples == [*old, *new, *again]  # every sample stays read, in log order (the run view shows them)
    assert [s.answer for s in state.branch_samples()] == ["old 50", "again 150"]
    state = RunState()
    for event in events[:8]:
        state.apply(event)
    assert [s.answer for s in state.branch_samples()] == ["old 50", "old 100", "new 100", "new 150"]
