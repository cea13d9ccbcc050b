"""Runs over several processes and nodes: each node's command, the local node's part launched and shown, two nodes'
parts training the tiny model into one work dir, a rank that died while the others live, a hang of a stopped process,
and a ZeRO checkpoint resumed on another number of ranks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from engine.runs import manifest as mf
from engine.runs.launch import stop
from engine.runs.processes import launch_members, launch_of, session_members
from engine.runs.ranks import SPAWN_S
from engine.runs.resume import preflight, zero_world_size
from engine.runs.watch import Run, RunStatus
from engine.runs.workdir import WorkDir
from tests.unit.test_runs import LINE, _launch, _log
from tests.unit.test_slurm import cfg  # noqa: F401  (a fixture: a config that passes the launch checks)
from tui.cli import main


def _until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.1)


def test_dry_run_prints_each_node_command(cfg, tmp_path, capsys) -> None:  # noqa: F811
    work = tmp_path / "w"
    argv = ["train", str(cfg), "--work-dir", str(work), "--gpus", "8", "--nnodes", "2", "--master-addr", "10.0.0.1",
            "--master-port", "29501", "--dry-run"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    for rank in (0, 1):
        i = out.index(f"# node {rank} of 2, to run there:")
        assert "-m torch.distributed.run --nnodes 2 --node-rank " + str(rank) in out[i + 1]
        assert "--master-addr 10.0.0.1 --nproc-per-node 8 --master-port 29501 -m xtuner.tools.train" in out[i + 1]
        assert out[i + 1].endswith("--launcher pytorch")
        assert f"--nnodes 2 --node-rank {rank} --master-addr 10.0.0.1 --master-port 29501" in out[i + 2]
    assert not work.exists()


def test_xtuner_variables_are_the_defaults(cfg, tmp_path, capsys, monkeypatch) -> None:  # noqa: F811
    for key, value in {
        "NPROC_PER_NODE": "4",
        "NNODES": "3",
        "NODE_RANK": "2",
        "ADDR": "10.0.0.9",
        "PORT": "29600",
    }.items():
        monkeypatch.setenv(key, value)
    assert main(["train", str(cfg), "--work-dir", str(tmp_path / "w"), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    line = out[out.index("# node 2 of 3, to run there:") + 1]
    assert "--nnodes 3 --node-rank 2 --master-addr 10.0.0.9 --nproc-per-node 4 --master-port 29600" in line


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--nnodes", "2"], "needs --master-addr"),
        (["--nnodes", "2", "--node-rank", "2", "--master-addr", "h"], "--node-rank must be from 0 to 1"),
    ],
)
def test_a_node_layout_that_cannot_work_is_refused(cfg, tmp_path, capsys, extra, expected) -> None:  # noqa: F811
    assert main(["train", str(cfg), "--work-dir", str(tmp_path / "w"), *extra]) == 2
    assert expected in capsys.readouterr().err and not (tmp_path / "w").exists()


def test_the_local_node_part_is_launched_recorded_and_shown(cfg, tmp_path, capsys) -> None:  # noqa: F811
    work = tmp_path / "w"
    port = str(_free_port())  # nobody listens: node 1's torchrun waits for node 0 at the rendezvous
    argv = ["train", str(cfg), "--work-dir", str(work), "--nnodes", "2", "--node-rank", "1", "--master-addr", "127.0.0.1",
            "--master-port", port]  # fmt: skip
    assert main(argv) == 0
    try:
        out = capsys.readouterr().out
        assert (
            "started node 1 of 2: pid" in out and "# node 0 of 2, to run there:" in out and "# node 1 of 2" not in out
        )
        last = WorkDir.open(work, node=1).last
        assert (last.nnodes, last.node_rank, last.master_addr, last.master_port) == (2, 1, "127.0.0.1", int(port))
        assert f"stop: xtui stop {work} --node-rank 1" in out
        assert main(["status", str(work), "--node-rank", "1"]) == 0
        assert " node 1/2" in capsys.readouterr().out
    finally:
        assert stop(work, grace=5, node=1)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


WORKER = "import time\ntime.sleep(120)\n"


@pytest.fixture
def torchrun(tmp_path):
    """A real torchrun agent in a session of its own with two sleeping ranks, recorded as the run's launch; (agent,
    a function giving its ranks once each has a session of its own); stopped after the test."""
    import psutil

    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", str(worker)]
    agent = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    launch = replace(_launch(agent.pid, psutil.Process(agent.pid).create_time()), gpus=2)
    mf.write_manifest(tmp_path, mf.Manifest(str(tmp_path), "here", [launch]))

    def workers() -> list:
        return [m for m in launch_members(agent.pid, launch.create_time) if m.ppid == agent.pid]

    try:
        # each rank gets a session of its own (once forked): found as the agent's children, not by session
        _until(lambda: len(workers()) == 2 and not {m.pid for m in workers()} & _own_session(agent.pid))
        yield agent, workers
    finally:
        agent.send_signal(signal.SIGCONT)
        stop(tmp_path, grace=5)
        agent.wait(10)
    assert not session_members(agent.pid)


def test_a_rank_that_died_while_the_others_live_is_flagged_at_once(tmp_path, torchrun) -> None:
    agent, workers = torchrun
    run = Run(tmp_path)
    run.poll()
    assert run.status(now=time.time() + SPAWN_S).state == RunStatus.RUNNING
    agent.send_signal(signal.SIGSTOP)  # torchrun would end the others within 0.1 s: hold it where it is
    os.kill(max(workers(), key=lambda m: m.pid).pid, signal.SIGKILL)
    _until(lambda: len(workers()) == 1)
    status = run.status(now=time.time() + SPAWN_S)
    assert status.state == RunStatus.FAILED and status.pid == agent.pid
    assert status.cause.startswith("rank 1 died while rank 0 live (2 on this host)"), status.cause


def test_a_stopped_torchrun_rank_is_named_by_its_rank(tmp_path, torchrun) -> None:
    import psutil

    from engine.runs.processes import environ_value
    from engine.runs.ranks import hang_details

    _agent, workers = torchrun
    victim = max(workers(), key=lambda m: m.pid)
    rank = int(environ_value(victim.pid, "RANK"))  # what torchrun gave it
    os.kill(victim.pid, signal.SIGSTOP)
    _until(lambda: psutil.Process(victim.pid).status() == psutil.STATUS_STOPPED)
    details = hang_details(WorkDir.open(tmp_path))
    assert rank in (0, 1) and f"rank {rank} (pid {victim.pid}) stopped (SIGSTOP or ctrl-z)" in details, details
    os.kill(victim.pid, signal.SIGCONT)


@pytest.mark.anyio
async def test_the_gpu_panel_names_the_run_of_each_torchrun_rank(tmp_path, torchrun) -> None:
    from tests.support.fakes import FakeGpus
    from tests.support.waiting import until
    from tui.app import XtuiApp

    agent, workers = torchrun
    ranks = tuple(m.pid for m in workers())  # each in a session of its own, under the agent in the launch's
    assert [launch_of(pid, {agent.pid}) for pid in ranks] == [agent.pid, agent.pid]
    assert launch_of(os.getpid(), {agent.pid}) is None and launch_of(agent.pid, {agent.pid}) == agent.pid
    app = XtuiApp(roots=[tmp_path], open_run=tmp_path, gpu_backend=FakeGpus(ranks), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:  # NVML's processes are these ranks (no GPU here)
        await until(pilot, lambda: app.gpu is not None and set(app.gpu.run_of_pid) == set(ranks))
        assert set(app.gpu.run_of_pid.values()) == {f"{tmp_path.parent.name}/{tmp_path.name}"}


def _own_session(sid: int) -> set[int]:
    """Pids whose session is `sid` itself."""
    return {int(p) for p in os.listdir("/proc") if p.isdigit() and _sid(p) == sid}


def _sid(pid: str) -> int | None:
    try:
        return os.getsid(int(pid))
    except OSError:
        return None


STAND_IN = """\
import sys, time
path, start = sys.argv[1], float(sys.argv[2])
with open(path, "w") as fh:
    for k, i in enumerate((10, 20, 30, 40)):
        stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(start + 2 * k))
        fh.write({line!r}.format(ts=stamp, i=i, n=100, t=2.0, loss=5 - k * 0.1))
    fh.flush()
    time.sleep(120)
"""


def test_a_hang_of_a_stopped_trainer_names_it_and_what_was_last_logged(tmp_path) -> None:
    start = time.time() - 100
    folder = tmp_path / "20261128_140000"
    folder.mkdir()
    log = folder / "20261128_140000.log"
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN.format(line=LINE))
    trainer = subprocess.Popen([sys.executable, str(script), str(log), str(start)], start_new_session=True)
    try:
        import psutil

        mf.write_manifest(
            tmp_path,
            mf.Manifest(str(tmp_path), "here", [_launch(trainer.pid, psutil.Process(trainer.pid).create_time())]),
        )
        _until(lambda: log.exists() and log.read_text().count("\n") == 4)
        trainer.send_signal(signal.SIGSTOP)
        _until(lambda: psutil.Process(trainer.pid).status() == psutil.STATUS_STOPPED)
        run = Run(tmp_path)
        run.poll()
        assert run.status(now=start + 6 + 10).state == RunStatus.RUNNING
        hung = run.status(now=start + 6 + 500)
        assert hung.state == RunStatus.STALLED and hung.pid == trainer.pid
        assert re.match(r"no new iteration for 50[01] s \(usual 2\.0 s\); 1 processes of the launch alive", hung.cause)
        assert f"pid {trainer.pid} stopped (SIGSTOP or ctrl-z)" in hung.cause
        assert "last logged: " in hung.cause and "Iter(train) [ 40/100]" in hung.cause, hung.cause
    finally:
        trainer.kill()
        trainer.wait()


def _zero_checkpoint(folder: Path, ranks: int) -> None:
    """A DeepSpeed ZeRO checkpoint folder as `ranks` ranks save it: the model states and one optimizer shard each."""
    import torch

    folder.mkdir(parents=True)
    torch.save({}, folder / "mp_rank_00_model_states.pt")
    for rank in range(ranks):
        torch.save({}, folder / f"bf16_zero_pp_rank_{rank}_mp_rank_00_optim_states.pt")


def test_resume_on_another_world_size_under_zero_is_refused(tmp_path) -> None:
    _log(tmp_path, [10, 20, 30, 40, 50], 100, time.time() - 100)
    _zero_checkpoint(tmp_path / "iter_50.pth", ranks=4)
    (tmp_path / "cfg.py").write_text("model = None\n")
    launch = replace(
        _launch(999_999, 1.0), gpus=2, nnodes=2, deepspeed="deepspeed_zero2", config=str(tmp_path / "cfg.py")
    )
    mf.write_manifest(tmp_path, mf.Manifest(str(tmp_path), "here", [launch]))
    assert zero_world_size(tmp_path / "iter_50.pth") == 4
    assert preflight(tmp_path, Path("iter_50.pth"), "deepspeed_zero2").ok  # 2 GPUs x 2 nodes, as saved
    assert preflight(tmp_path, Path("iter_50.pth")).ok  # DeepSpeed as the last launch, as `xtui resume` runs it
    assert main(["resume", str(tmp_path), "--from", "iter_50.pth", "--check"]) == 0
    changed = preflight(tmp_path, Path("iter_50.pth"), "deepspeed_zero2", gpus=1)
    assert not changed.ok
    assert any("shards of 4 ranks and the resume would run 2" in p for p in changed.problems), changed.problems


# What mmengine needs to train on CPU ranks over gloo (its pytorch launcher sets a CUDA device; DDP takes device_ids)
TWO_CPU_NODES = """
setattr(__import__("torch").cuda, "set_device", lambda device: None)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
               dist_cfg=dict(backend="gloo"))
model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None)
"""


@pytest.mark.e2e
def test_two_nodes_train_the_tiny_model_into_one_work_dir(tmp_path, capsys) -> None:
    """Each node runs its printed command into the same folder (as on a shared file system): node 1 first, waiting at
    torchrun's rendezvous, then node 0; each records its own part (never node 0's manifest, lock or console), and the
    two CPU ranks train the tiny model over gloo to the end."""
    from engine.demo.build import build_demo
    from engine.xtuner import configs

    paths = build_demo(tmp_path / "demo", name="小测", cuda=False)
    config = tmp_path / "two-nodes.py"
    one_epoch = {"max_epochs": "1", "evaluation_freq": "1000"}
    config.write_text(configs.edit_settings(paths.config.read_text(encoding="utf-8"), one_epoch) + TWO_CPU_NODES)
    work, port = tmp_path / "w", str(_free_port())

    def node(rank: int) -> int:
        return main(["train", str(config), "--work-dir", str(work), "--nnodes", "2", "--node-rank", str(rank),
                     "--master-addr", "127.0.0.1", "--master-port", port])  # fmt: skip

    assert node(1) == 0
    try:
        assert node(1) == 2 and "node 1's part of the run in" in capsys.readouterr().err  # not twice
        assert node(0) == 0  # node 1's part is no run of node 0's: not "already holds a run"
        zero, one = (WorkDir.open(work, node=n).last for n in (0, 1))
        assert (zero.node_rank, one.node_rank) == (0, 1) and zero.pid != one.pid
        assert {p.name for p in work.iterdir()} >= {mf.MANIFEST, "xtui-run.node1.json", mf.CONSOLE,
                                                     "xtui-console.node1.log", ".xtui-lock", ".xtui-lock.node1"}  # fmt: skip
        _until(lambda: not any(WorkDir.open(work, node=n).alive_pid() for n in (0, 1)), timeout=600)
        for rank in (0, 1):
            part = WorkDir.open(work, node=rank)
            console = part.console.read_text()
            assert console.startswith("### xtui launch 0 at ") and f"--node-rank {rank} " in console.splitlines()[0]
            assert len(part.manifest.launches) == 1 and part.exit_record(0).code == 0, console[-2000:]
            run = Run(part)
            run.poll()
            assert run.status().state == RunStatus.FINISHED, (run.status(), console[-2000:])
            assert run.summary()["node"] == f"{rank}/2" and run.state.max_iters == run.state.done_iter
        assert "Distributed training: True" in WorkDir.open(work).console.read_text()
        assert [c.ok for c in Run(work).checkpoints()][-1]
    finally:
        for rank in (0, 1):
            if WorkDir.open(work, node=rank).alive_pid():
                stop(work, grace=5, node=rank)
