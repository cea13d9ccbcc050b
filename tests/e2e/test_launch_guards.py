"""Launch guards with the real trainer on the tiny model: one launch per work dir, never two runs' histories mixed."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import pytest

from engine.demo.build import build_demo
from engine.runs.launch import LaunchSpec, WorkDirUsed, start, stop
from engine.runs.workdir import WorkDir
from tests.support import ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("guards") / "demo", name="小测")


def test_two_launches_at_the_same_instant_start_one_trainer(demo, tmp_path) -> None:
    work = tmp_path / "w"
    argv = [sys.executable, "-m", "tui.cli", "train", str(demo.config), "--work-dir", str(work)]
    procs = [
        subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    results = [(p.wait(60), p.stderr.read()) for p in procs]
    try:
        codes = sorted(code for code, _ in results)
        assert codes == [0, 2], results
        refused = next(err for code, err in results if code == 2)
        assert "a run is alive" in refused or "already holds a run" in refused
        assert len(WorkDir.open(work).manifest.launches) == 1
    finally:
        stop(work, grace=5)


def test_a_fresh_launch_into_a_used_work_dir_asks_for_a_new_one(demo, tmp_path) -> None:
    work = tmp_path / "w"
    start(LaunchSpec(config=demo.config, work_dir=work, cwd=demo.folder))
    assert stop(work, grace=5)
    with pytest.raises(WorkDirUsed, match=r"already holds a run: resume it .* such as .*w-2"):
        start(LaunchSpec(config=demo.config, work_dir=work, cwd=demo.folder))
    assert len(WorkDir.open(work).manifest.launches) == 1


def test_a_config_edited_after_the_launch_is_not_the_runs(demo, tmp_path) -> None:
    import time

    from mmengine.config import Config

    work = tmp_path / "w"
    start(LaunchSpec(config=demo.config, work_dir=work, cwd=demo.folder))
    dumped = work / demo.config.name  # mmengine's copy, written as the run starts
    try:
        deadline = time.monotonic() + 120
        while (
            b"optim_wrapper" not in (dumped.read_bytes() if dumped.is_file() else b"") and time.monotonic() < deadline
        ):
            time.sleep(0.5)  # until mmengine has written the whole dump
    finally:
        stop(work, grace=5)
    assert dumped.is_file() and WorkDir.open(work).config() == demo.config  # unchanged: the project's file
    original = demo.config.read_bytes()
    try:
        demo.config.write_bytes(original.replace(b"lr = 2e-3", b"lr = 5e-1"))  # the next run's settings
        assert WorkDir.open(work).config() == dumped
        assert Config.fromfile(str(dumped)).optim_wrapper.optimizer.lr == 2e-3  # what the run trained with
        opened = WorkDir.open(work)  # a launch recorded by an xtui that kept no hash: the file's time tells
        opened.record(replace(opened.manifest, launches=[replace(opened.last, config_sha256=None)]))
        assert WorkDir.open(work).config() == dumped
        os.utime(demo.config, (opened.last.started_at - 1,) * 2)
        assert WorkDir.open(work).config() == demo.config
    finally:
        demo.config.write_bytes(original)
