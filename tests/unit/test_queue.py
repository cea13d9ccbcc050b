"""The queue with real waiter processes: a run queued after another (a live stand-in trainer) shows why it waits,
starts through the same launch when that one ends, or ends unstarted with --only-if-finished; cancel leaves no process
and no lock; the memory wait on GPU readings (a fake: no GPU here); the waits that could never end are refused."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from engine.gpu import GpuReading
from engine.runs import manifest as mf
from engine.runs.launch import LOCK, LaunchError, LaunchSpec, command, prepare, start, stop
from engine.runs.processes import is_alive, session_members
from engine.runs.queue import FreeMemory, Wait, check_wait, enqueue
from engine.runs.watch import Run, RunStatus
from engine.runs.workdir import WorkDir
from tests.unit.test_runs import _launch, _log
from tests.unit.test_slurm import cfg  # noqa: F401  (a fixture: a config that passes the launch checks)
from tui.cli import main

GIB = 1 << 30


def _until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.1)


@pytest.fixture
def running(tmp_path):
    """Work dir `a`: a live stand-in trainer that logged 4 of 100 iterations (killed after the test)."""
    work = tmp_path / "a"
    _log(work, [10, 20, 30, 40], 100, time.time() - 5)
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    launch = _launch(trainer.pid, psutil.Process(trainer.pid).create_time())
    mf.write_manifest(work, mf.Manifest(str(work), "here", [launch]))
    yield work, trainer
    trainer.kill()
    trainer.wait()


def _status(work: Path):
    run = Run(work)
    run.poll()
    return run.status()


def _queued(work: Path) -> mf.Queued:
    return WorkDir.open(work).manifest.queue


def test_a_run_queued_after_another_waits_then_starts_as_any_launch(cfg, tmp_path, running, capsys) -> None:  # noqa: F811
    after, trainer = running
    work = tmp_path / "b"
    assert main(["train", str(cfg), "--work-dir", str(work), "--after", str(after)]) == 0
    assert "queued: after " in capsys.readouterr().out
    queued = _queued(work)
    assert is_alive(queued.pid, queued.create_time) and queued.after == str(after)
    status = _status(work)
    assert status.state == RunStatus.QUEUED and status.cause == f"after {after} (running, iter 40/100)"
    assert main(["status", str(tmp_path)]) == 0
    assert f"(after {after} (running, iter 40/100))" in capsys.readouterr().out
    with pytest.raises(LaunchError, match="holds a queued run"):
        start(LaunchSpec(config=cfg, work_dir=work))

    trainer.kill()  # the run it follows ends (failed): it starts all the same
    _until(lambda: WorkDir.open(work).last is not None)
    launch = WorkDir.open(work).last
    try:
        expected = prepare(LaunchSpec(config=cfg, work_dir=work, cwd=Path.cwd()))
        assert launch.argv == command(expected) and launch.config == str(cfg.resolve())
        assert launch.env == {"PYTHONUNBUFFERED": "1"} and launch.cwd == str(Path.cwd())
        _until(lambda: not is_alive(queued.pid, queued.create_time))
        assert "### xtui queue: starting at" in (work / mf.CONSOLE).read_text()
    finally:
        stop(work, grace=5)
    assert not session_members(launch.pid)


def test_only_if_finished_ends_unstarted_when_the_run_fails(cfg, tmp_path, running) -> None:  # noqa: F811
    after, trainer = running
    work = tmp_path / "b"
    queued = enqueue(LaunchSpec(config=cfg, work_dir=work), Wait(after, only_if_finished=True))
    trainer.kill()
    _until(lambda: _queued(work).ended is not None)
    ended = _queued(work)
    assert ended.ended.startswith(f"not started: {after} failed (trainer gone at iteration 40") and not ended.failed
    _until(lambda: not is_alive(queued.pid, queued.create_time))
    status = _status(work)
    assert status.state == RunStatus.STOPPED and status.cause == ended.ended
    assert WorkDir.open(work).last is None and not list(work.glob(".xtui-exit-*"))


def test_cancel_leaves_nothing_behind(cfg, tmp_path, running, capsys) -> None:  # noqa: F811
    after, trainer = running
    work = tmp_path / "b"
    queued = enqueue(LaunchSpec(config=cfg, work_dir=work), Wait(after))
    assert main(["stop", str(work)]) == 0
    assert capsys.readouterr().out.strip() == "cancelled before start"
    assert not is_alive(queued.pid, queued.create_time) and not session_members(queued.pid)
    assert not (work / LOCK).exists() and WorkDir.open(work).last is None
    status = _status(work)
    assert (status.state, status.cause) == (RunStatus.STOPPED, "cancelled before start")
    assert is_alive(trainer.pid, psutil.Process(trainer.pid).create_time())  # the run it waited for goes on
    assert main(["stop", str(work)]) == 2 and "not queued: cancelled before start" in capsys.readouterr().err
    assert main(["train", str(cfg), "--work-dir", str(work), "--dry-run"]) == 0  # the folder is free again


def test_a_waiter_killed_leaves_a_run_that_never_started(cfg, tmp_path, running) -> None:  # noqa: F811
    after, _ = running
    work = tmp_path / "b"
    queued = enqueue(LaunchSpec(config=cfg, work_dir=work), Wait(after))
    psutil.Process(queued.pid).kill()
    _until(lambda: not is_alive(queued.pid, queued.create_time))
    status = _status(work)
    assert status.state == RunStatus.STOPPED and f"waiter (pid {queued.pid}) is gone" in status.cause


class Gpus:
    """GPU readings set by the test (there is no GPU here): GPU i has free[i] GiB free of 80."""

    def __init__(self, *free: float) -> None:
        self.free = list(free)

    def read(self, with_processes: bool):
        total = 80 * GIB
        return [
            GpuReading(i, "H200", total - int(f * GIB), total, 0, 30, None, None) for i, f in enumerate(self.free)
        ], None


def test_the_memory_wait_says_what_is_free_and_holds_before_it_goes() -> None:
    gpus = Gpus(12, 50)
    one = FreeMemory([0], 20 * GIB, gpus, hold=10)
    assert one.check(now=0).reason == "waiting for 20 GiB free on GPU 0 (12 GiB free)"
    both = FreeMemory([0, 1], 20 * GIB, gpus, hold=10)
    assert both.check(now=0).reason == "waiting for 20 GiB free on each of GPUs 0,1 (GPU 0: 12 GiB free)"
    gpus.free[0] = 30
    assert not one.check(now=1).go and "holding 10 s" in one.check(now=5).reason
    gpus.free[0] = 19.5  # taken again for a moment: the hold starts over
    assert one.check(now=6).reason == "waiting for 20 GiB free on GPU 0 (19.5 GiB free)"
    gpus.free[0] = 30
    assert not one.check(now=7).go and not one.check(now=16).go and one.check(now=17).go


@pytest.mark.parametrize(
    "wait, devices, expected",
    [
        (Wait(when_free=True), None, "needs --need-gib"),
        (Wait(when_free=True, need_gib=20), "0,2", "no GPU 2 here"),
        (
            Wait(when_free=True, need_gib=90),
            None,
            "needs 90 GiB on each GPU \\(--need-gib\\), and GPU 0 holds only 80 GiB",
        ),
        (Wait(when_free=True, need_gib=20), "GPU-1a2b", "GPU numbers in --devices"),
        (Wait(need_gib=20), None, "--need-gib goes with --when-free"),
        (Wait(only_if_finished=True, when_free=True, need_gib=1), None, "--only-if-finished goes with --after"),
        (Wait(), None, "waits for something"),
    ],
)
def test_waits_that_could_never_end_are_refused(cfg, tmp_path, wait, devices, expected) -> None:  # noqa: F811
    spec = LaunchSpec(config=cfg, work_dir=tmp_path / "b", devices=devices)
    with pytest.raises(LaunchError, match=expected):
        check_wait(spec, wait, Gpus(12, 50))


def test_the_gpus_of_this_machine_are_read_for_when_free(cfg, tmp_path, capsys) -> None:  # noqa: F811
    argv = ["train", str(cfg), "--work-dir", str(tmp_path / "b"), "--when-free", "--need-gib", "20"]
    assert main(argv) == 2  # no NVIDIA driver here: it would wait for ever
    assert "no readings here" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_following_nothing_itself_or_a_circle_is_refused(cfg, tmp_path, running) -> None:  # noqa: F811
    after, _ = running
    with pytest.raises(LaunchError, match="no run there"):
        check_wait(LaunchSpec(config=cfg, work_dir=tmp_path / "b"), Wait(tmp_path / "nothing"))
    with pytest.raises(LaunchError, match="waits, itself or through others"):
        check_wait(LaunchSpec(config=cfg, work_dir=after), Wait(after))
    queued = enqueue(LaunchSpec(config=cfg, work_dir=tmp_path / "b"), Wait(after))
    try:
        enqueue(LaunchSpec(config=cfg, work_dir=tmp_path / "c"), Wait(tmp_path / "b"))  # a chain is fine
        with pytest.raises(LaunchError, match="waits, itself or through others"):
            check_wait(LaunchSpec(config=cfg, work_dir=tmp_path / "b"), Wait(tmp_path / "c"))
    finally:
        stop(tmp_path / "c", grace=5)
        stop(tmp_path / "b", grace=5)
    assert not is_alive(queued.pid, queued.create_time)


def test_slurm_another_nodes_part_and_an_ended_run_with_only_if_finished_are_refused(cfg, tmp_path) -> None:  # noqa: F811
    from engine.runs.slurm import SlurmOptions

    with pytest.raises(LaunchError, match="dependency=afterany"):
        check_wait(LaunchSpec(config=cfg, work_dir=tmp_path / "b", slurm=SlurmOptions()), Wait(tmp_path))
    part = LaunchSpec(config=cfg, work_dir=tmp_path / "b", nnodes=2, node_rank=1, master_addr="10.0.0.1")
    with pytest.raises(LaunchError, match="wait for it at torchrun's rendezvous"):
        check_wait(part, Wait(tmp_path))
    done = tmp_path / "a"
    _log(done, [10, 20], 100, time.time() - 5)  # a plain xtuner run that ended halfway: stopped
    with pytest.raises(LaunchError, match="would never start"):
        enqueue(LaunchSpec(config=cfg, work_dir=tmp_path / "b"), Wait(done, only_if_finished=True))
    assert WorkDir.open(tmp_path / "b").manifest is None


def test_the_queue_entry_is_kept_and_checked_in_the_manifest(tmp_path) -> None:
    queued = mf.Queued(4242, 1.5, 2.5, "after a (running, iter 3/9)", "/w/a")
    manifest = mf.Manifest(str(tmp_path), "here", [], queued)
    mf.write_manifest(tmp_path, manifest)
    assert mf.read_manifest(tmp_path) == manifest
    started = replace(manifest, launches=[_launch(4243, 3.0)])
    mf.write_manifest(tmp_path, started)
    assert mf.read_manifest(tmp_path).queue == queued  # kept once its run started: the launch is what shows
    raw = json.loads((tmp_path / mf.MANIFEST).read_text())
    for bad in ({"pid": "1"}, {"failed": 1}, {"ended": 3}):
        (tmp_path / mf.MANIFEST).write_text(json.dumps({**raw, "queue": {**raw["queue"], **bad}}))
        with pytest.raises(mf.DamagedManifest, match="queue has a bad"):
            mf.read_manifest(tmp_path)
    (tmp_path / mf.MANIFEST).write_text(json.dumps({**raw, "queue": [1]}))
    with pytest.raises(mf.DamagedManifest, match="not a queue entry"):
        mf.read_manifest(tmp_path)


def test_without_need_gib_the_wait_takes_the_estimate_of_the_config(cfg, tmp_path) -> None:  # noqa: F811
    from engine.runs.queue import conditions, needed_gib
    from engine.xtuner.memory_estimate import estimate_config

    shape = {"vocab_size": 32000, "hidden_size": 1024, "num_hidden_layers": 8, "intermediate_size": 2816,
             "num_attention_heads": 16}  # fmt: skip
    (tmp_path / "model" / "config.json").write_text(json.dumps(shape))
    spec = LaunchSpec(config=cfg, work_dir=tmp_path / "b", cwd=tmp_path)
    need = needed_gib(spec, Wait(when_free=True))
    assert need == round(estimate_config(cfg, tmp_path, None, 1).needed / GIB, 1) and need > 1
    check_wait(spec, Wait(when_free=True), Gpus(0.5))
    (memory,) = conditions(spec, Wait(when_free=True), Gpus(0.5))
    assert memory.check().reason == f"waiting for {need:g} GiB free on GPU 0 (0.5 GiB free)"


def test_dry_run_shows_the_wait_and_the_command_and_queues_nothing(cfg, tmp_path, running, capsys) -> None:  # noqa: F811
    after, _ = running
    work = tmp_path / "b"
    assert (
        main(["train", str(cfg), "--work-dir", str(work), "--after", str(after), "--only-if-finished", "--dry-run"])
        == 0
    )
    out = capsys.readouterr().out
    assert f"-m xtuner.tools.train {cfg} --work-dir {work}" in out
    assert f"# queued, it would start after {after} ends, only if it finished" in out and not work.exists()


def test_two_waiters_that_see_the_same_memory_free_do_not_both_start_into_it() -> None:
    gpus = Gpus(30)
    first, second = (FreeMemory([0], 20 * GIB, gpus, hold=0) for _ in range(2))
    assert first.check(now=0).go and second.check(now=0).go  # both see 30 GiB free
    claim = first.claim(Path("/runs/a"))
    assert claim is not None and claim.exists()
    assert second.claim(Path("/runs/b")) is None  # 30 - 20 claimed < 20
    assert second.check(now=1).reason == (
        "waiting for 20 GiB free on GPU 0 (30 GiB free, 20 GiB of it claimed by a run starting)"
    )
    gpus.free[0] = 45  # room for both
    assert second.check(now=2).go and second.claim(Path("/runs/b")) is not None


def test_of_waiters_that_claim_at_the_same_moment_exactly_one_gets_the_memory() -> None:
    import threading

    gpus = Gpus(30)
    waiters = [FreeMemory([0], 20 * GIB, gpus, hold=0) for _ in range(8)]
    barrier, got = threading.Barrier(len(waiters)), []

    def race(waiter: FreeMemory, n: int) -> None:
        barrier.wait()
        got.append(waiter.claim(Path(f"/runs/{n}")))

    threads = [threading.Thread(target=race, args=(w, n)) for n, w in enumerate(waiters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(claim is not None for claim in got) == 1


def test_a_claim_ends_when_its_trainer_dies_or_its_time_is_up() -> None:
    from engine.runs import gpu_claims

    gpus = Gpus(30)
    first, second = (FreeMemory([0], 20 * GIB, gpus, hold=0) for _ in range(2))
    claim = first.claim(Path("/runs/a"))
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    gpu_claims.started(claim, trainer.pid, psutil.Process(trainer.pid).create_time())
    assert second.claim(Path("/runs/b")) is None  # the trainer lives: its claim stands
    trainer.wait()
    late = second.claim(Path("/runs/b"))
    assert late is not None and not claim.exists()  # gone with its trainer, its file removed
    assert gpu_claims.standing(now=time.time() + gpu_claims.CLAIM_S + 1) == [] and not late.exists()


def test_what_is_not_a_claim_in_the_shared_folder_is_passed_over() -> None:
    import os

    from engine.locations import gpu_claims_dir
    from engine.runs import gpu_claims

    folder = gpu_claims_dir()
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "fifo.json")  # would block a plain read
    (folder / "list.json").write_text("[1, 2]")
    (folder / "typed.json").write_text('{"gpus": [0], "need": 1, "at": "noon", "work_dir": "/w"}')
    (folder / "huge.json").write_text("{" + " " * 100_000 + "}")
    assert gpu_claims.standing() == []
    assert FreeMemory([0], 20 * GIB, Gpus(30), hold=0).claim(Path("/runs/a")) is not None
