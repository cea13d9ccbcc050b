"""The queue end to end on the tiny model: a run queued after another from the command line (which then exits) waits
in its detached waiter, shows why, and starts when that run finishes with the launch any `xtui train` makes; another
queued one is cancelled and leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.runs import manifest as mf
from engine.runs.events import TrainStep
from engine.runs.launch import LOCK, LaunchSpec, command, prepare, start, stop
from engine.runs.processes import is_alive, session_members
from engine.runs.watch import Run, RunStatus
from engine.runs.workdir import WorkDir
from engine.xtuner import configs

pytestmark = pytest.mark.e2e
TIMEOUT_S = 600


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The tiny model's CPU config, one epoch, no sample answers (the queue is what is tested)."""
    from engine.demo.build import build_demo

    paths = build_demo(tmp_path_factory.mktemp("demo") / "demo", name="小测", cuda=False)
    short = paths.folder / "one-epoch.py"
    short.write_text(
        configs.edit_settings(paths.config.read_text(encoding="utf-8"), {"max_epochs": "1", "evaluation_freq": "1000"}),
        encoding="utf-8",
    )
    return paths, short


def _xtui(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def _until(predicate, what: str, timeout: float = TIMEOUT_S, console: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        tail = console.read_text(errors="replace")[-2000:] if console and console.exists() else ""
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s\n{tail}"
        time.sleep(0.5)


def _status(run: Run):
    return run.poll_status()[1]


def test_a_run_queued_after_another_starts_when_it_finishes_and_a_cancelled_one_leaves_nothing(demo) -> None:
    paths, config = demo
    first, queued, cancelled = (paths.folder / name for name in ("work-a", "work-b", "work-c"))
    a = start(LaunchSpec(config=config, work_dir=first, cwd=paths.folder))
    shown = _xtui(
        "train", str(config), "--work-dir", "work-b", "--after", "work-a", "--only-if-finished", cwd=paths.folder
    )
    assert shown.returncode == 0 and "queued: after work-a (" in shown.stdout, shown.stderr
    assert _xtui("train", str(config), "--work-dir", "work-c", "--after", "work-a", cwd=paths.folder).returncode == 0
    waiter = WorkDir.open(queued).manifest.queue
    assert is_alive(waiter.pid, waiter.create_time)  # the command that queued it has exited

    run_a, run_b = Run(first), Run(queued)
    _until(lambda: "iter" in (_status(run_b).cause or ""), "the queued run never named the other's progress")
    status = _status(run_b)
    assert status.state == RunStatus.QUEUED and status.cause.startswith("after work-a (running, iter "), status
    listed = _xtui("status", str(paths.folder), cwd=paths.folder).stdout
    assert any(line.startswith("queued") and "work-b" in line and "(after work-a (running" in line
               for line in listed.splitlines()), listed  # fmt: skip

    c = WorkDir.open(cancelled).manifest.queue
    stopped = _xtui("stop", "work-c", cwd=paths.folder)
    assert stopped.returncode == 0 and stopped.stdout.strip() == "cancelled before start", stopped.stderr
    assert not session_members(c.pid) and not (cancelled / LOCK).exists()
    assert sorted(p.name for p in cancelled.iterdir()) == [mf.CONSOLE, mf.MANIFEST]
    assert (_status(Run(cancelled)).state, _status(Run(cancelled)).cause) == (
        RunStatus.STOPPED,
        "cancelled before start",
    )

    _until(lambda: WorkDir.open(queued).last is not None, "the queued run never started", console=queued / mf.CONSOLE)
    assert _status(run_a).state == RunStatus.FINISHED and not session_members(a.pid)
    launch = WorkDir.open(queued).last
    same = prepare(LaunchSpec(config=config, work_dir=queued, cwd=paths.folder))
    assert (launch.argv, launch.cwd, launch.env) == (command(same), str(paths.folder), {"PYTHONUNBUFFERED": "1"})
    try:
        _until(lambda: any(isinstance(e, TrainStep) for e in run_b.poll()) or run_b.state.last is not None,
               "the started run never trained", console=queued / mf.CONSOLE)  # fmt: skip
        assert _status(run_b).state == RunStatus.RUNNING
        assert WorkDir.open(cancelled).last is None  # the cancelled one stayed cancelled
    finally:
        assert stop(queued, grace=10)
    assert not session_members(launch.pid) and not is_alive(waiter.pid, waiter.create_time)
