"""Slurm without a cluster: the sbatch script, the options refused, the manifest's new fields, the job's state in words,
and the run's status from the files first, then from what Slurm says (the real cluster: tests/e2e/test_slurm.py)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from engine.runs import manifest as mf
from engine.runs import slurm
from engine.runs.launch import LaunchError, LaunchSpec, prepare, slurm_script, stop
from engine.runs.slurm import SlurmJob, SlurmOptions
from engine.runs.watch import Run, RunStatus, Status
from engine.runs.workdir import WorkDir
from tests.unit.test_cli_errors import _config
from tests.unit.test_runs import _launch, _log
from tui.cli import main


def _script(tmp_path: Path, options: SlurmOptions, nodes: int = 1) -> str:
    spec = prepare(LaunchSpec(config=tmp_path / "cfg.py", work_dir=tmp_path / "w", nnodes=nodes, slurm=options))
    return slurm_script(spec, WorkDir.open(spec.work_dir))


def test_a_gpu_job_runs_srun_with_the_slurm_launcher_as_xtuner_documents(tmp_path) -> None:
    options = SlurmOptions(partition="gpu", gpus_per_node=8, time="4:00:00", sbatch_args=("--mem=64G",))
    text = _script(tmp_path, options, nodes=2)
    w = tmp_path.resolve() / "w"
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8", "#SBATCH --gres=gpu:8", "#SBATCH --partition=gpu",
                 "#SBATCH --time=4:00:00", "#SBATCH --mem=64G", f"#SBATCH --output={w}/xtui-console.log",
                 "#SBATCH --open-mode=append", "export PYTHONUNBUFFERED=1", f"echo $code > {w}/.xtui-exit-0"):  # fmt: skip
        assert line in text.splitlines(), (line, text)
    srun = next(line for line in text.splitlines() if line.startswith("srun "))
    assert srun.endswith(f"-m xtuner.tools.train {tmp_path.resolve()}/cfg.py --work-dir {w} --launcher slurm")
    assert "MASTER_PORT=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}" in text  # 16 ranks: one port per job


def test_a_cpu_job_is_one_task_without_the_slurm_launcher(tmp_path) -> None:
    text = _script(tmp_path, SlurmOptions(gpus_per_node=0))
    assert "#SBATCH --ntasks-per-node=1" in text and "--gres" not in text and "MASTER_PORT" not in text
    assert "--launcher" not in text  # mmengine's slurm launcher calls torch.cuda.set_device


@pytest.mark.parametrize(
    "options, nodes, expected",
    [
        (SlurmOptions(gpus_per_node=0), 2, "one CPU task on one node"),
        (SlurmOptions(gpus_per_node=-1), 1, "0 or more"),
        (SlurmOptions(sbatch_args=("--output=x.log",)), 1, "console file"),
        (SlurmOptions(sbatch_args=("-ex.log",)), 1, "console file"),
        (SlurmOptions(time="1:00\n#SBATCH --x"), 1, "line break"),
    ],
)
def test_options_that_cannot_work_are_refused(options, nodes, expected) -> None:
    assert any(expected in p for p in slurm.problems(options, nodes))


def test_options_that_can_work_pass() -> None:
    assert slurm.problems(SlurmOptions(gpus_per_node=4, sbatch_args=("--open-mode=truncate", "--exclusive")), 4) == []


def test_old_manifests_read_and_the_new_fields_are_checked(tmp_path) -> None:
    old = {"work_dir": "/w", "host": "h", "launches": [{"argv": ["python"], "env": {}, "pid": 9, "create_time": 1.0,
           "started_at": 1.0, "console_offset": 0, "config": "cfg.py", "cwd": "."}]}  # fmt: skip
    (tmp_path / mf.MANIFEST).write_text(json.dumps(old))
    launch = mf.read_manifest(tmp_path).last
    assert (launch.nnodes, launch.node_rank, launch.slurm_job, launch.slurm) == (1, 0, None, None)
    submitted = replace(launch, slurm_job="42", slurm=SlurmOptions(partition="a100").record(), nnodes=2)
    mf.write_manifest(tmp_path, mf.Manifest("/w", "h", [submitted]))
    assert mf.read_manifest(tmp_path).last == submitted
    for bad in ({"slurm_job": "42; rm -rf ~"}, {"slurm_job": "-h"}, {"slurm": {"gpus_per_node": "8"}}, {"nnodes": 0}):
        (tmp_path / mf.MANIFEST).write_text(json.dumps({**old, "launches": [{**old["launches"][0], **bad}]}))
        with pytest.raises(mf.DamagedManifest):
            mf.read_manifest(tmp_path)
    later = {**old["launches"][0], "slurm": {"partition": "p", "account": "added later"}}
    (tmp_path / mf.MANIFEST).write_text(json.dumps({**old, "launches": [later]}))
    assert SlurmOptions.from_record(mf.read_manifest(tmp_path).last.slurm) == SlurmOptions(partition="p")


@pytest.mark.parametrize(
    "fields, state, words",
    [
        ("PENDING|Priority|", "PENDING", "Slurm job 7 pending (Priority)"),
        ("RUNNING|None|node[01-02]", "RUNNING", "Slurm job 7 running on node[01-02]"),
        ("CANCELLED by 0|None|n1", "CANCELLED", "Slurm job 7 CANCELLED on n1: scancel (not xtui's stop)"),
        ("TIMEOUT|TimeLimit|n1", "TIMEOUT", "Slurm job 7 TIMEOUT on n1: it reached its --time limit"),
        ("OUT_OF_MEMORY|OutOfMemory|n1", "OUT_OF_MEMORY", "more memory than the job asked for"),
        ("FAILED|NonZeroExitCode|n1", "FAILED", "Slurm job 7 FAILED on n1: NonZeroExitCode"),
    ],
)
def test_the_job_as_slurm_prints_it_in_words(fields, state, words) -> None:
    job = slurm._job("7", fields.split("|"))
    assert job.state == state and words in job.describe()
    assert job.active == (state in ("PENDING", "RUNNING")) and job.pending == (state == "PENDING")


def _slurm_run(tmp_path: Path, monkeypatch, job: SlurmJob | None, iters: list[int], stopped: bool = False) -> Run:
    """A work dir whose last launch went through Slurm, with Slurm answering `job`."""
    _log(tmp_path, iters, 100, time.time() - 10)
    launch = replace(_launch(999_999, 1.0, stopped), slurm_job="7", slurm=SlurmOptions().record())
    mf.write_manifest(tmp_path, mf.Manifest(str(tmp_path), "here", [launch]))
    monkeypatch.setattr(slurm, "job", lambda job_id, max_age=slurm.CACHE_S: job)
    run = Run(tmp_path)
    run.poll()
    return run


@pytest.mark.parametrize(
    "job, iters, state, cause",
    [
        (SlurmJob("7", "PENDING", "Resources"), [], RunStatus.QUEUED, "pending (Resources)"),
        (SlurmJob("7", "RUNNING", None, "n1"), [10], RunStatus.RUNNING, "running on n1"),
        (SlurmJob("7", "TIMEOUT", "TimeLimit", "n1"), [10], RunStatus.FAILED, "--time limit"),
        (SlurmJob("7", "OUT_OF_MEMORY", None, "n1"), [10], RunStatus.FAILED, "OUT_OF_MEMORY"),
        (SlurmJob("7", "NODE_FAIL", None, "n1"), [10], RunStatus.FAILED, "a node of the job failed"),
        (SlurmJob("7", "CANCELLED", None, "n1"), [10], RunStatus.STOPPED, "scancel"),
        (SlurmJob("7", "TIMEOUT", None, "n1"), [10, 100], RunStatus.FINISHED, None),  # the files first
        (None, [10], RunStatus.FAILED, "trainer gone at iteration 10"),  # Slurm forgot it: the files alone
    ],
)
def test_status_from_the_files_then_from_slurm(tmp_path, monkeypatch, job, iters, state, cause) -> None:
    status = _slurm_run(tmp_path, monkeypatch, job, iters).status()
    assert status.state == state and (cause is None or cause in status.cause), status
    assert status.pid is None


ACCOUNTING_KILL = """slurmstepd-vm: error: StepId=7.0 exceeded memory limit (351801344 > 157286400), being killed
slurmstepd-vm: error: Exceeded job memory limit
srun: error: vm: task 0: Killed
"""
CGROUP_KILL = (
    "slurmstepd: error: Detected 1 oom_kill event in StepId=7.0. Some of the step tasks have been OOM Killed.\n"
)


@pytest.mark.parametrize(
    "state, console, cause",
    [
        ("FAILED", ACCOUNTING_KILL, "Slurm job 7 OUT_OF_MEMORY on n1: Slurm killed it for using more memory than the job "
         "asked for (used 335 MiB of 150 MiB)"),
        ("OUT_OF_MEMORY", CGROUP_KILL, "Slurm job 7 OUT_OF_MEMORY on n1: Slurm killed it for using more memory than the "
         "job asked for"),
        ("FAILED", "srun: error: vm: task 0: Exited with exit code 1\n", "Slurm job 7 FAILED on n1: NonZeroExitCode"),
        ("TIMEOUT", ACCOUNTING_KILL, "Slurm job 7 TIMEOUT on n1: it reached its --time limit"),
    ],
)  # fmt: skip
def test_a_step_killed_for_its_memory_is_named_so_whatever_state_slurm_gives(
    tmp_path, monkeypatch, state, console, cause
) -> None:
    run = _slurm_run(tmp_path, monkeypatch, SlurmJob("7", state, "NonZeroExitCode", "n1"), [10])
    (tmp_path / mf.CONSOLE).write_text(f"### xtui launch 0\n{console}")
    run.poll()
    assert run.status() == Status(RunStatus.FAILED, cause)


def test_a_traceback_while_the_job_runs_is_failed_and_a_stop_by_xtui_is_stopped(tmp_path, monkeypatch) -> None:
    run = _slurm_run(tmp_path, monkeypatch, SlurmJob("7", "RUNNING", None, "n1"), [10])
    (tmp_path / mf.CONSOLE).write_text("Traceback (most recent call last):\nRuntimeError: NCCL error in: ...\n")
    run.poll()
    assert run.status().state == RunStatus.FAILED and "NCCL" in run.status().cause
    stopped = _slurm_run(tmp_path / "s", monkeypatch, SlurmJob("7", "CANCELLED"), [10], stopped=True)
    assert stopped.status().cause == "stopped by the user"
    assert stopped.summary()["slurm_job"] == "7"


def test_stop_of_a_job_that_ended_says_so(tmp_path, monkeypatch) -> None:
    _slurm_run(tmp_path, monkeypatch, SlurmJob("7", "COMPLETED", None, "n1"), [10, 100])
    with pytest.raises(LaunchError, match=r"not running \(Slurm job 7 COMPLETED on n1\)"):
        stop(tmp_path)


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    (tmp_path / "model").mkdir()
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"conversation": [{"input": "你是谁", "output": "我是小明"}]}) + "\n")
    return _config(tmp_path, tmp_path / "model", data)


def test_dry_run_prints_the_script_and_starts_nothing(cfg, tmp_path, capsys) -> None:
    work = tmp_path / "w"
    code = main(["train", str(cfg), "--work-dir", str(work), "--slurm", "--partition", "cpu", "--gpus-per-node", "0",
                 "--time", "10", "--sbatch-arg=--mem=4G", "--dry-run"])  # fmt: skip
    out = capsys.readouterr().out
    assert (
        code == 0 and out.startswith("#!/bin/bash\n") and "#SBATCH --partition=cpu" in out and "#SBATCH --mem=4G" in out
    )
    assert f"would write {work.resolve()}/xtui-slurm-0.sh" in out and not work.exists()


def test_dry_run_of_a_plain_and_a_torchrun_launch(cfg, tmp_path, capsys) -> None:
    work = tmp_path / "w"
    assert main(["train", str(cfg), "--work-dir", str(work), "--dry-run"]) == 0
    plain = capsys.readouterr().out.splitlines()
    assert plain[0].startswith("PYTHONUNBUFFERED=1 ") and plain[0].endswith(f"--work-dir {work.resolve()}")
    assert main(["train", str(cfg), "--work-dir", str(work), "--gpus", "2", "--devices", "0,1", "--dry-run"]) == 0
    ddp = capsys.readouterr().out
    assert "CUDA_VISIBLE_DEVICES=0,1 " in ddp and "torch.distributed.run --nproc-per-node 2" in ddp
    assert ddp.splitlines()[0].endswith("--launcher pytorch") and not work.exists()


def test_slurm_options_without_slurm_are_a_usage_error(cfg, tmp_path, capsys) -> None:
    assert main(["train", str(cfg), "--work-dir", str(tmp_path / "w"), "--partition", "gpu"]) == 2
    assert "--partition goes with --slurm" in capsys.readouterr().err
    assert (
        main(["train", str(cfg), "--work-dir", str(tmp_path / "w"), "--slurm", "--node-rank", "1", "--nnodes", "2"])
        == 2
    )
    assert "Slurm places the ranks itself" in capsys.readouterr().err


def test_a_host_without_sbatch_is_told_so_before_anything_is_written(cfg, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))
    assert main(["train", str(cfg), "--work-dir", str(tmp_path / "w"), "--slurm"]) == 2
    assert "sbatch not found" in capsys.readouterr().err and not (tmp_path / "w").exists()
