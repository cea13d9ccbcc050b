"""Jobs after training: the record on disk read back like a run's (real detached processes), what a job of the
checkpoints list runs, the replace-folder question, and the jobs screen (Pilot and snapshots at 80x24 and 120x40)."""

from __future__ import annotations

import json
import pickle
import shutil
import sys
import time
import zipfile
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from engine.errors import XtuiError
from engine.gpu import GpuMonitor, HostReading
from engine.runs import jobs
from engine.runs.jobs import JobKind, JobState
from tests.support.fakes import FakeGpus, NoGpus
from tests.support.waiting import until
from tui.app import XtuiApp
from tui.dialogs.confirm import ReplaceScreen
from tui.screens.jobs import JobsScreen, plan
from tui.screens.run import RunScreen
from tui.widgets.log_tail import LogTail

pytestmark = pytest.mark.anyio
SNAP_ROOT = Path("/tmp/xtui-snapshot-jobs")  # fixed: paths show on screen
SIZES = [(80, 24), (120, 40)]
PROGRESS = "import sys, time\nfor i in range(0, 101, 20):\n    print(f'Loading: {i}%|##|', file=sys.stderr, flush=True)\n    time.sleep({delay})\n"


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.05)


def test_a_job_reads_back_running_with_its_progress_then_failed_with_the_cli_s_words(tmp_path) -> None:
    code = PROGRESS.replace("{delay}", "0.3") + "print('xtui: error: the disk filled up', file=sys.stderr)\nsys.exit(2)"
    job = jobs.start(tmp_path, JobKind.CONVERT, _python(code), tmp_path / "out", "convert iter_5.pth")
    _wait(lambda: (job.status().progress or 0) >= 0.2)
    running = job.status()
    assert running.state is JobState.RUNNING and running.exit_code is None and "Loading:" in running.message
    _wait(lambda: job.status().state is not JobState.RUNNING)
    ended = job.status()
    assert (ended.state, ended.exit_code, ended.message) == (JobState.FAILED, 2, "the disk filled up")
    (read,) = jobs.list_jobs(tmp_path)  # from disk, as another xtui would see it
    assert read.label == "convert iter_5.pth" and read.output == (tmp_path / "out").resolve()
    assert read.log.parent.parent == tmp_path / jobs.JOBS_DIR and read.status() == ended


def test_a_finished_job_a_stopped_one_and_one_output_folder_written_by_one_job_at_a_time(tmp_path) -> None:
    done = jobs.start(tmp_path, JobKind.MERGE, _python("print('merged model in /x')"), tmp_path / "a", "merge a")
    _wait(lambda: done.status().state is not JobState.RUNNING)
    assert done.status() == jobs.JobStatus(JobState.FINISHED, 0, "merged model in /x")

    slow = jobs.start(tmp_path, JobKind.EXPORT, _python("import time; time.sleep(60)"), tmp_path / "b", "export b")
    with pytest.raises(jobs.JobError, match="export b is already writing"):
        jobs.start(tmp_path, JobKind.EXPORT, _python("pass"), tmp_path / "b", "export b again")
    assert jobs.stop(slow, grace=2)
    stopped = slow.status()
    assert (stopped.state, stopped.message) == (JobState.STOPPED, "stopped before it finished")  # not "failed"
    with pytest.raises(jobs.JobError, match="is not running"):
        jobs.stop(slow)
    assert [j.label for j in jobs.list_jobs(tmp_path)] == ["export b", "merge a"]  # newest first


def test_a_job_whose_process_vanished_without_an_exit_code_is_failed_and_a_damaged_record_is_skipped(tmp_path) -> None:
    job = jobs.start(tmp_path, JobKind.CONVERT, _python("print('half way')"), tmp_path / "c", "convert c")
    _wait(lambda: job.status().state is not JobState.RUNNING)
    (job.folder / jobs.EXIT).unlink()  # as if the wrapper had been killed
    assert job.status().state is JobState.FAILED and job.status().message.startswith("ended without an exit code")
    (tmp_path / jobs.JOBS_DIR / "garbage").mkdir()
    (tmp_path / jobs.JOBS_DIR / "garbage" / jobs.RECORD).write_text("{not json")
    assert [j.label for j in jobs.list_jobs(tmp_path)] == ["convert c"]


def _run_dir(root: Path, base: Path | None = None) -> Path:
    """A work dir with a config and two complete-looking checkpoints (torch zip files holding data.pkl)."""
    work_dir = root / "work"
    work_dir.mkdir(parents=True)
    named = f"pretrained_model_name_or_path = {str(base)!r}\n" if base else ""
    (work_dir / "config.py").write_text(f"{named}prompt_template = 'internlm2_chat'\n")
    for n in (10, 20):
        with zipfile.ZipFile(work_dir / f"iter_{n}.pth", "w") as zf:
            zf.writestr(f"iter_{n}/data.pkl", pickle.dumps({}))
    (work_dir / "last_checkpoint").write_text(str(work_dir / "iter_20.pth"))
    return work_dir


def test_what_each_job_of_a_checkpoint_runs_and_why_a_merge_cannot_run_yet(tmp_path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    work_dir = _run_dir(tmp_path, base)
    convert = plan(work_dir, JobKind.CONVERT, Path("iter_10.pth"))  # relative to the run
    assert convert.argv[1:] == ["-m", "tui.cli", "convert", str(work_dir), "--checkpoint",
                                str(work_dir / "iter_10.pth"), "--out", str(work_dir / "iter_10_hf")]  # fmt: skip
    assert convert.base == base and convert.label == "convert iter_10.pth"
    export = plan(work_dir, JobKind.EXPORT, None)  # the latest good one
    assert export.out == work_dir / "iter_20_export" and "--checkpoint" in export.argv
    with pytest.raises(XtuiError, match="iter_20.pth is not converted yet: convert it first"):
        plan(work_dir, JobKind.MERGE, None)
    (work_dir / "iter_20_hf").mkdir()
    (work_dir / "iter_20_hf" / "adapter_config.json").write_text("{}")
    merge = plan(work_dir, JobKind.MERGE, None)
    assert merge.argv[3:] == [
        "merge",
        str(base),
        str(work_dir / "iter_20_hf"),
        "--out",
        str(work_dir / "iter_20_merged"),
    ]
    shutil.rmtree(base)
    with pytest.raises(XtuiError, match="is not a model folder here"):
        plan(work_dir, JobKind.MERGE, None)


async def test_convert_asks_before_replacing_an_output_folder_then_the_job_s_failure_shows_its_cause(tmp_path) -> None:
    work_dir = _run_dir(tmp_path)
    old = work_dir / "iter_20_hf"
    old.mkdir()
    (old / "keep.txt").write_text("mine")
    app = XtuiApp(roots=[tmp_path], open_run=work_dir, gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        await pilot.press("4")
        await until(pilot, lambda: app.screen.query_one("#checkpoint-table", DataTable).row_count == 2)
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, ReplaceScreen))
        assert f"{old} already exists" in str(app.screen.query_one("#dialog-text").render())
        await pilot.press("escape")  # kept, nothing started
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        assert (old / "keep.txt").is_file() and not jobs.list_jobs(work_dir)

        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, ReplaceScreen))
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, JobsScreen), timeout=30)
        assert not old.exists()
        screen = app.screen
        await until(pilot, lambda: screen.jobs and screen.jobs[0][1].state is JobState.FAILED, timeout=240)
        detail = str(screen.query_one("#job-detail", Static).render())
        assert f"output {old}" in detail and "failed:" in detail and "pth_to_hf failed" in detail
        assert any("xtui: error:" in line for line in screen.query_one(LogTail).lines)
        await pilot.press("c")  # nothing to chat with
        await pilot.pause(0.2)
        assert isinstance(app.screen, JobsScreen)


def _record(work_dir: Path, name: str, label: str, out: str, code: int | None, log: str, started: float) -> None:
    """A job as a finished (or failed) one leaves its folder: record, log, exit code."""
    folder = work_dir / jobs.JOBS_DIR / name
    folder.mkdir(parents=True)
    record = {"kind": name.split("-")[2], "label": label, "argv": ["xtui"], "out": out, "base": None,
              "template": "internlm2_chat", "pid": 4194000, "create_time": 1.0, "started": started}  # fmt: skip
    (folder / jobs.RECORD).write_text(json.dumps(record))
    (folder / jobs.LOG).write_text(log)
    if code is not None:
        (folder / jobs.EXIT).write_text(f"{code}\n")


@pytest.fixture
def snap_jobs(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    shutil.rmtree(SNAP_ROOT, ignore_errors=True)
    work_dir = SNAP_ROOT / "work"
    log = "converting /tmp/xtui-snapshot-jobs/work/iter_20.pth with config.py\n  | Loading: 100%|##|\n  | All done!\n"
    _record(work_dir, "20261201-120000-convert-0", "convert iter_20.pth", str(work_dir / "iter_20_hf"), 0,
            log + f"adapter in {work_dir / 'iter_20_hf'}; merge it: xtui merge BASE ...\n", 1796126400.0)  # fmt: skip
    _record(work_dir, "20261201-120500-merge-0", "merge iter_20_hf", str(work_dir / "iter_20_merged"), 2,
            "merging\nxtui: error: not enough free disk for iter_20_merged: free some space\n", 1796126700.0)  # fmt: skip
    yield work_dir
    shutil.rmtree(SNAP_ROOT, ignore_errors=True)
    monkeypatch.delenv("TZ")
    time.tzset()


def _fixed_app() -> XtuiApp:
    """The app with fixed GPU and host readings (what shows under a dialog never changes)."""
    host = HostReading(12.0, 6 << 30, 24 << 30, 80 << 30, str(SNAP_ROOT))
    monitor = GpuMonitor(backend=FakeGpus(), disk_path=SNAP_ROOT, read_host=lambda path: host)
    return XtuiApp(roots=[SNAP_ROOT], monitor=monitor, poll_s=0.1)


@pytest.mark.parametrize("size", SIZES)
def test_jobs_screen(snap_compare, size, snap_jobs) -> None:
    app = _fixed_app()

    async def opened(pilot) -> None:
        app.push_screen(JobsScreen(snap_jobs, poll_s=0.1))
        await until(pilot, lambda: isinstance(app.screen, JobsScreen) and len(app.screen.jobs) == 2)
        await pilot.press("down")  # the older, finished one: its log and result
        await until(pilot, lambda: any("All done!" in line for line in app.screen.query_one(LogTail).lines))

    assert snap_compare(app, terminal_size=size, run_before=opened)


def test_replace_dialog(snap_compare, snap_jobs) -> None:
    app = _fixed_app()

    async def opened(pilot) -> None:
        app.push_screen(JobsScreen(snap_jobs, poll_s=0.1))
        await until(pilot, lambda: isinstance(app.screen, JobsScreen) and len(app.screen.jobs) == 2)
        app.push_screen(ReplaceScreen(snap_jobs / "iter_20_hf", "convert iter_20.pth"))
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=opened)


@pytest.mark.parametrize(
    "ago, progress, state, shown",
    [
        (20, None, JobState.RUNNING, "<1 min"),
        (125, None, JobState.RUNNING, "2 min"),
        (3700, None, JobState.RUNNING, "1 h 01"),
        (125, 0.4, JobState.RUNNING, "40%"),
        (125, None, JobState.FINISHED, ""),
    ],
)
def test_a_running_job_without_a_bar_shows_its_time_so_far(ago, progress, state, shown, tmp_path) -> None:
    from tui.screens.jobs import _row

    job = jobs.Job(JobKind.MERGE, "merge iter_40", [], "out", None, None, 1, 0.0, time.time() - ago, tmp_path)
    assert _row(job, jobs.JobStatus(state, None, "", progress))[2] == shown
