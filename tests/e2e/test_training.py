"""End to end with the real xtuner on the demo's tiny model, on the CPU: launch, watch, stop, resume, fail."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.runs import manifest as mf
from engine.runs.events import CheckpointSaved, Resumed, Sample, Started, TrainStep
from engine.runs.launch import LaunchError, LaunchSpec, start, stop
from engine.runs.processes import is_alive, session_members
from engine.runs.resume import preflight, resume
from engine.runs.watch import Run
from tests.support import ROOT

pytestmark = pytest.mark.e2e
NAME = "小测"
TIMEOUT_S = 600


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from engine.demo.build import build_demo

    return build_demo(tmp_path_factory.mktemp("demo"), name=NAME)


def _follow(run: Run, until=lambda events: False, timeout: float = TIMEOUT_S) -> list:
    """Poll the run until `until(events)` holds or the trainer is gone; every event read."""
    events: list = []
    deadline = time.monotonic() + timeout
    for event in run.follow(interval=0.3):
        events.append(event)
        if until(events):
            break
        assert time.monotonic() < deadline, f"timed out; last events: {events[-5:]}"
    return events


def _console(work_dir: Path) -> str:
    return (work_dir / mf.CONSOLE).read_text(errors="replace")[-3000:]


def test_detached_run_learns_the_name_and_outlives_its_watcher(demo) -> None:
    work_dir = demo.folder / "work-e2e"
    launch = start(LaunchSpec(config=demo.config, work_dir=work_dir, cwd=demo.folder))
    with pytest.raises(LaunchError, match="alive"):
        start(LaunchSpec(config=demo.config, work_dir=work_dir, cwd=demo.folder))

    watcher = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "events", str(work_dir), "--follow"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    seen = []
    for line in watcher.stdout:
        if '"type": "train_step"' in line:
            seen.append(line)
            if len(seen) == 2:
                break
    watcher.send_signal(signal.SIGKILL)
    watcher.wait()
    assert len(seen) == 2, _console(work_dir)
    assert is_alive(launch.pid, launch.create_time), "training died with its watcher"

    run = Run(work_dir)
    events = _follow(run)
    status = run.status()
    assert status.state == "finished", (status, _console(work_dir))
    losses = [e.loss for e in events if isinstance(e, TrainStep) and e.loss is not None]
    assert len(losses) >= 6 and sum(losses[-3:]) < 0.75 * sum(losses[:3]), losses
    named = [e for e in events if isinstance(e, Sample) and e.prompt == "你是谁" and NAME in e.answer]
    assert named, [e for e in events if isinstance(e, Sample)][-4:]
    saved = [e.iter for e in events if isinstance(e, CheckpointSaved)]
    on_disk = run.checkpoints()
    assert saved and on_disk and all(c.ok for c in on_disk) and on_disk[-1].iter == saved[-1]
    assert not session_members(launch.pid)


def test_preflight_refuses_what_would_not_continue(demo) -> None:
    work_dir = demo.folder / "work-e2e"
    final = preflight(work_dir)
    assert not final.ok and any("end at once" in p for p in final.problems)
    assert any("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" in n for n in final.notes)
    latest = final.checkpoint.path
    assert any("plain checkpoint" in p for p in preflight(work_dir, latest, "deepspeed_zero2").problems)
    assert not preflight(work_dir, work_dir / "iter_999.pth").ok
    empty = demo.folder / "work-empty"
    empty.mkdir()
    shutil.copytree(
        work_dir / sorted(p.name for p in work_dir.iterdir() if p.name[:2] == "20")[0], empty / "20000101_000000"
    )
    nothing = preflight(empty)
    assert not nothing.ok and any("iteration 0" in p for p in nothing.problems)


def test_stop_leaves_no_process_and_resume_continues_after_the_checkpoint(demo) -> None:
    work_dir = demo.folder / "work-stop"
    launch = start(LaunchSpec(config=demo.config, work_dir=work_dir, cwd=demo.folder))
    run = Run(work_dir)
    # mmengine logs "Saving checkpoint" before the file is written: wait for a complete one
    _follow(run, until=lambda ev: any(isinstance(e, TrainStep) for e in ev) and any(c.ok for c in run.checkpoints()))
    assert stop(work_dir, grace=10)
    assert not session_members(launch.pid)
    run.poll()
    assert run.status().state == "stopped"

    check = preflight(work_dir)
    assert check.ok, check.problems
    ckpt = check.checkpoint
    new_launch, _ = resume(work_dir)
    assert new_launch.resume_from == str(ckpt.path)
    events = _follow(run)
    after_start = events[max(i for i, e in enumerate(events) if isinstance(e, Started)) :]
    resumed = [e for e in after_start if isinstance(e, Resumed)]
    steps = [e.iter for e in after_start if isinstance(e, TrainStep)]
    assert resumed and resumed[0].iter == ckpt.iter, (after_start[:5], _console(work_dir))
    assert steps and steps[0] > ckpt.iter
    assert run.status().state == "finished", _console(work_dir)


def test_weights_only_resume_trap_shows_failed_with_its_cause(demo) -> None:
    work_dir = demo.folder / "work-stop"
    ckpt = Run(work_dir).checkpoints()[0]  # written by the stop/resume test above
    trap = demo.folder / "work-trap"
    start(LaunchSpec(config=demo.config, work_dir=trap, cwd=demo.folder, resume_from=ckpt.path))
    run = Run(trap)
    _follow(run)
    status = run.status()
    assert status.state == "failed", _console(trap)
    assert run.state.errors[-1].cause == "weights_only", run.state.errors


def test_crashing_config_is_failed_with_its_cause(demo) -> None:
    broken = demo.folder / "broken.py"
    source = demo.config.read_text()
    (demo.folder / "empty-model").mkdir()  # exists, so the pre-launch check passes; loading it fails
    broken.write_text(source.replace(str(demo.model), str(demo.folder / "empty-model")))
    assert broken.read_text() != source
    work_dir = demo.folder / "work-broken"
    start(LaunchSpec(config=broken, work_dir=work_dir, cwd=demo.folder))
    run = Run(work_dir)
    _follow(run)
    status = run.status()
    assert status.state == "failed" and status.cause, _console(work_dir)
    assert "empty-model" in (run.state.errors[-1].message + run.state.errors[-1].detail)


def test_term_to_the_recorded_pid_leaves_the_real_trainer_watched_and_stoppable(demo) -> None:
    work_dir = demo.folder / "work-term"
    launch = start(LaunchSpec(config=demo.config, work_dir=work_dir, cwd=demo.folder))
    run = Run(work_dir)
    _follow(run, until=lambda ev: any(isinstance(e, TrainStep) for e in ev))
    os.kill(launch.pid, signal.SIGTERM)  # the shell wrapper xtui recorded, as a user's `kill PID` would
    time.sleep(1)
    run.poll()
    status = run.status()
    assert status.state == "running" and status.pid != launch.pid, (status, _console(work_dir))
    with pytest.raises(LaunchError, match="alive"):
        start(LaunchSpec(config=demo.config, work_dir=work_dir, cwd=demo.folder))
    assert stop(work_dir, grace=10) and not session_members(launch.pid)
