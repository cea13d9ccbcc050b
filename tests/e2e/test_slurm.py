"""A real single-host Slurm (munged, slurmctld, slurmd on localhost, a CPU-only node) running the tiny model's CPU run:
submit, pending -> running -> finished, scancel, resume from the chosen checkpoint, a job past its --time (TIMEOUT) and
one past its --mem (OUT_OF_MEMORY: Slurm's accounting kills it, as no cgroup can be delegated here)."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from engine.runs import slurm
from engine.runs.events import Resumed, Started, TrainStep
from engine.runs.watch import Run, RunStatus
from engine.runs.workdir import WorkDir
from engine.xtuner import configs
from tests.support import ROOT

pytestmark = pytest.mark.e2e
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")
TIMEOUT_S = 600


def _binary(name: str) -> str | None:
    """The path of a Slurm or munge program (daemons live in sbin, often off a user's PATH)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SLURM_CONF = """\
ClusterName=xtuitest
SlurmctldHost={host}(127.0.0.1)
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={dir}/munge/socket
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerNode=8192
MpiDefault=none
ReturnToService=2
KillWait=5
OverTimeLimit=0
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/none
MinJobAge=600
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=cpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _wait(predicate, what: str, timeout: float = 60.0, logs: tuple[Path, ...] = ()) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-1500:]}" for p in logs if p.exists())
            raise AssertionError(f"{what} within {timeout:.0f} s\n{tails}")
        time.sleep(0.3)


def _slurm_out(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """munged, slurmctld and slurmd for this host in a fresh folder, SLURM_CONF pointing at them; all stopped after."""
    missing = [name for name in (*DAEMONS, *CLIENTS) if _binary(name) is None]
    if missing:
        pytest.skip(f"Slurm is not installed here (no {', '.join(missing)}): apt-get install slurm-wlm munge")
    folder = tmp_path_factory.mktemp("slurm")
    for sub in ("munge", "state", "spool"):
        (folder / sub).mkdir(mode=0o700)
    key = folder / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    conf = folder / "slurm.conf"
    conf.write_text(SLURM_CONF.format(
        host=socket.gethostname().split(".")[0], user=getpass.getuser(), dir=folder, ctld_port=_free_port(),
        d_port=_free_port(), cpus=os.cpu_count() or 1, memory_mb=psutil.virtual_memory().total * 9 // 10 >> 20,
    ))  # fmt: skip
    env = {**os.environ, "SLURM_CONF": str(conf)}
    munge = folder / "munge"
    commands = [
        [_binary("munged"), "-F", "--force", f"--socket={munge}/socket", f"--key-file={key}", f"--log-file={munge}/log",
         f"--pid-file={munge}/pid", f"--seed-file={munge}/seed"],
        [_binary("slurmctld"), "-D"],
        [_binary("slurmd"), "-D"],
    ]  # fmt: skip
    daemons: list[subprocess.Popen] = []
    logs = (munge / "log", folder / "slurmctld.log", folder / "slurmd.log")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(conf))
        try:
            for argv in commands:
                daemons.append(subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.STDOUT))  # fmt: skip
                if argv[0].endswith("munged"):
                    _wait(lambda: (munge / "socket").exists(), "munged made no socket", logs=logs)
            _wait(lambda: "idle" in _slurm_out("sinfo", "-h", "-o", "%T"), "the node never became idle", logs=logs)
            yield folder
        finally:
            subprocess.run(["scancel", "--user", getpass.getuser()], capture_output=True)
            if daemons[1:]:
                _wait(lambda: not _slurm_out("squeue", "-h").strip(), "the jobs never ended", timeout=60, logs=logs)
            for proc in reversed(daemons):
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The tiny model's CPU config, one epoch (checkpoints at 50 and at the end)."""
    from engine.demo.build import build_demo

    paths = build_demo(tmp_path_factory.mktemp("demo") / "demo", name="小测", cuda=False)
    short = paths.folder / "one-epoch.py"
    short.write_text(
        configs.edit_settings(paths.config.read_text(encoding="utf-8"), {"max_epochs": "1"}), encoding="utf-8"
    )
    return paths, short


def _xtui(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def _status_until(run: Run, wanted: set[RunStatus], timeout: float = TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while True:
        _, status = run.poll_status()
        if status.state in wanted:
            return status
        assert time.monotonic() < deadline, (status, _console(run.work_dir))
        time.sleep(0.5)


def _console(work_dir: Path) -> str:
    path = WorkDir(work_dir).console
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def test_a_held_job_is_queued_then_runs_then_finishes(cluster, demo) -> None:
    paths, config = demo
    work = paths.folder / "work-held"
    shown = _xtui("train", str(config), "--work-dir", str(work), "--slurm", "--gpus-per-node", "0", "--time", "15",
                  "--sbatch-arg=--hold")  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "#SBATCH --hold" in shown.stdout and "srun --kill-on-bad-exit=1" in shown.stdout, shown.stdout
    last = WorkDir.open(work).last
    assert last.slurm_job and f"submitted Slurm job {last.slurm_job}" in shown.stdout
    assert last.slurm == {"partition": None, "gpus_per_node": 0, "time": "15", "sbatch_args": ["--hold"]}
    run = Run(work)
    queued = _status_until(run, {RunStatus.QUEUED}, timeout=30)
    assert "pending" in queued.cause and "JobHeldUser" in queued.cause
    assert "queued" in _xtui("status", str(work)).stdout

    subprocess.run(["scontrol", "release", last.slurm_job], check=True)
    running = _status_until(run, {RunStatus.RUNNING, RunStatus.FINISHED, RunStatus.FAILED}, timeout=60)
    assert running.state == RunStatus.RUNNING and "running on" in running.cause, running
    finished = _status_until(run, {RunStatus.FINISHED, RunStatus.FAILED, RunStatus.STOPPED})
    assert finished.state == RunStatus.FINISHED, (finished, _console(work))
    assert slurm.job(last.slurm_job, max_age=0).state == "COMPLETED"
    assert WorkDir.open(work).exit_record(0).code == 0


def test_scancel_stops_it_and_resume_submits_again_from_the_checkpoint(cluster, demo) -> None:
    paths, config = demo
    work = paths.folder / "work-stop"
    assert _xtui("train", str(config), "--work-dir", str(work), "--slurm", "--gpus-per-node", "0").returncode == 0
    run = Run(work)
    deadline = time.monotonic() + TIMEOUT_S
    while not (any(c.ok for c in run.checkpoints()) and run.state.last is not None):
        run.poll()
        assert time.monotonic() < deadline and run.slurm_job().active, _console(work)
        time.sleep(0.5)
    job_id = WorkDir.open(work).last.slurm_job
    stopped = _xtui("stop", str(work))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr
    assert slurm.job(job_id, max_age=0).state == "CANCELLED"
    status = _status_until(run, {RunStatus.STOPPED, RunStatus.FAILED}, timeout=30)
    assert status.state == RunStatus.STOPPED and status.cause == "stopped by the user"

    resumed = _xtui("resume", str(work))
    assert resumed.returncode == 0 and "resumed as Slurm job" in resumed.stdout, resumed.stderr
    again = WorkDir.open(work).last
    assert again.slurm_job != job_id and again.resume_from and again.slurm["gpus_per_node"] == 0
    final = _status_until(run, {RunStatus.FINISHED, RunStatus.FAILED, RunStatus.STOPPED})
    assert final.state == RunStatus.FINISHED, (final, _console(work))
    events = Run(work).poll()  # every event, read from the start
    after = events[max(i for i, e in enumerate(events) if isinstance(e, Started)) :]
    loaded = [e.iter for e in after if isinstance(e, Resumed)]
    steps = [e.iter for e in after if isinstance(e, TrainStep)]
    assert loaded == [int(Path(again.resume_from).stem.split("_")[1])] and steps[0] > loaded[0], after[:5]


def test_a_job_past_its_time_limit_ends_as_timeout(cluster, demo) -> None:
    paths, _ = demo
    work = paths.folder / "work-timeout"
    long = paths.folder / "many-epochs.py"
    long.write_text(configs.edit_settings(paths.config.read_text(encoding="utf-8"), {"max_epochs": "100"}), "utf-8")
    assert (
        _xtui("train", str(long), "--work-dir", str(work), "--slurm", "--gpus-per-node", "0", "--time", "1").returncode
        == 0
    )
    job_id = WorkDir.open(work).last.slurm_job
    run = Run(work)
    status = _status_until(run, {RunStatus.FAILED, RunStatus.FINISHED, RunStatus.STOPPED}, timeout=240)
    assert slurm.job(job_id, max_age=0).state == "TIMEOUT"
    assert status.state == RunStatus.FAILED and "TIMEOUT" in status.cause and "--time limit" in status.cause, status


def test_a_job_past_its_memory_ends_as_out_of_memory(cluster, demo) -> None:
    paths, config = demo
    work = paths.folder / "work-oom"
    shown = _xtui(
        "train", str(config), "--work-dir", str(work), "--slurm", "--gpus-per-node", "0", "--sbatch-arg=--mem=150M"
    )
    assert shown.returncode == 0, shown.stderr
    job_id = WorkDir.open(work).last.slurm_job
    status = _status_until(Run(work), {RunStatus.FAILED, RunStatus.FINISHED, RunStatus.STOPPED}, timeout=120)
    # accounting's kill leaves the job FAILED (a cgroup's would make it OUT_OF_MEMORY): xtui names it from slurmstepd's words
    assert slurm.job(job_id, max_age=0).state in ("FAILED", "OUT_OF_MEMORY"), (status, _console(work))
    assert status.state == RunStatus.FAILED, status
    assert re.fullmatch(
        rf"Slurm job {job_id} OUT_OF_MEMORY on \S+: Slurm killed it for using more memory than the job asked for "
        r"\(used \d+ MiB of 150 MiB\)", status.cause
    ), status  # fmt: skip
