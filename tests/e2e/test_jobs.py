"""Jobs after training from the TUI, on the real tiny model: the demo trained for a few checkpoints, then from the
run view's checkpoints list a convert job, a merge job on its adapter, an export (each a detached `xtui` command whose log,
progress and state the jobs screen shows), the existing output folder kept unless the user says replace, and a chat
with the merged model from the jobs screen."""

from __future__ import annotations

import time

import pytest
from textual.widgets import DataTable, Static

from engine.demo.build import build_demo
from engine.runs.jobs import JobKind, JobState, list_jobs
from engine.xtuner import configs
from tests.support.fakes import NoGpus
from tests.support.waiting import until
from tui.app import XtuiApp
from tui.dialogs.confirm import ReplaceScreen
from tui.screens.chat import ChatScreen
from tui.screens.jobs import JobsScreen
from tui.screens.run import RunScreen
from tui.widgets.log_tail import LogTail

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]
TRAIN_TIMEOUT_S = 600
JOB_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The demo trained one epoch, saving every 20 iterations (LoRA on the tiny model)."""
    from engine.runs.launch import LaunchSpec, start
    from engine.runs.watch import Run

    demo = build_demo(tmp_path_factory.mktemp("jobs") / "demo", name="小测", cuda=False)
    source = demo.config.read_text(encoding="utf-8")
    demo.config.write_text(configs.edit_settings(source, {"max_epochs": "1", "save_steps": "20"}), encoding="utf-8")
    start(LaunchSpec(config=demo.config, work_dir=demo.work_dir, cwd=demo.folder, env={"OMP_NUM_THREADS": "1"}))
    run = Run(demo.work_dir)
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    for _ in run.follow(interval=0.3):
        assert time.monotonic() < deadline, "the demo ran past its time"
    assert run.status().state == "finished", run.status()
    return demo


def _detail(app) -> str:
    return str(app.screen.query_one("#job-detail", Static).render())


async def _finished(pilot, app, work_dir, kind: JobKind):
    """Wait for the newest job of `kind` to end; it must have finished."""

    def ended() -> bool:
        jobs = [j for j in list_jobs(work_dir) if j.kind is kind]
        return bool(jobs) and jobs[0].status().state is not JobState.RUNNING

    await until(pilot, ended, timeout=JOB_TIMEOUT_S)
    job = next(j for j in list_jobs(work_dir) if j.kind is kind)
    assert job.status().state is JobState.FINISHED, (job.status(), job.log.read_text())
    return job


async def test_convert_then_merge_from_the_checkpoints_list_then_chat_with_the_merged_model(trained, tmp_path) -> None:
    work_dir = trained.work_dir.resolve()
    app = XtuiApp(roots=[trained.folder], gpu_backend=NoGpus(), poll_s=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_run_screen(work_dir)
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.runs[work_dir].checkpoints, timeout=60)
        await pilot.press("4")
        table = app.screen.query_one("#checkpoint-table", DataTable)
        await until(pilot, lambda: table.row_count >= 2)
        newest = app.screen._selected_checkpoint()
        await pilot.press("down")  # the older checkpoint, picked in the list
        older = app.screen._selected_checkpoint()
        assert older is not None and older != newest

        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, JobsScreen), timeout=60)
        convert = await _finished(pilot, app, work_dir, JobKind.CONVERT)
        adapter = work_dir / f"{older.stem}_hf"
        assert convert.output == adapter and (adapter / "adapter_config.json").is_file()
        assert convert.argv[-4:] == ["--checkpoint", str(older), "--out", str(adapter)]
        await until(pilot, lambda: f"output {adapter}" in _detail(app) and "done:" in _detail(app))
        assert f"adapter in {adapter}" in _detail(app)
        log = app.screen.query_one(LogTail)
        await until(pilot, lambda: any("All done!" in line for line in log.lines))  # the converter's own lines

        await pilot.press("escape", "v")  # again: the folder exists, so the user is asked
        await until(pilot, lambda: isinstance(app.screen, ReplaceScreen), timeout=60)
        assert str(adapter) in str(app.screen.query_one("#dialog-text").render())
        await pilot.press("enter")  # Cancel has the focus: the folder is kept, nothing starts
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        assert len([j for j in list_jobs(work_dir) if j.kind is JobKind.CONVERT]) == 1 and adapter.is_dir()

        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, JobsScreen), timeout=60)
        merge = await _finished(pilot, app, work_dir, JobKind.MERGE)
        merged = work_dir / f"{older.stem}_merged"
        assert merge.output == merged and (merged / "model.safetensors").is_file()
        assert (merged / "tokenizer.json").is_file()
        await until(pilot, lambda: f"output {merged}" in _detail(app) and "done:" in _detail(app))

        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ChatScreen), timeout=60)
        chat = app.screen
        assert chat.spec.source.kind == "merged" and chat.spec.source.model == merged
        assert chat.template == "internlm2_chat"
        await until(pilot, lambda: chat.loaded is not None, timeout=120)

        await pilot.press("escape")  # back to the jobs
        await until(pilot, lambda: isinstance(app.screen, JobsScreen))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunScreen))
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, JobsScreen), timeout=60)
        export = await _finished(pilot, app, work_dir, JobKind.EXPORT)
        exported = work_dir / f"{older.stem}_export"
        assert export.output == exported and {"README.md", "model.safetensors", "xtuner_template.json"} <= {
            p.name for p in exported.iterdir()
        }
        assert len(list_jobs(work_dir)) == 3  # convert, merge, export: each on record
