"""Runs side by side: marks on the dashboard, `v` opens them; one chart of any metric, one prompt's answers per run;
real fixture logs (an epoch run resumed, with validation lines; XTuner's older and newer hook order; a damaged work
dir; a queued run), at 80x24 and 120x40."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from textual_plotext import PlotextPlot

from engine.runs.events import Sample, TrainStep
from engine.runs.watch import RunStatus, Status
from tests.support.waiting import until
from tests.support.workdirs import add_validations, fixture_workdir
from tui.app import XtuiApp
from tui.messages import RunUpdate
from tui.screens.compare import CompareScreen, short_names
from tui.screens.dashboard import DashboardScreen
from tui.widgets.compare_chart import CompareChart
from tui.widgets.compare_samples import CompareSamples, nearest, shared_prompts
from tui.widgets.compared import ComparedRun
from tui.widgets.runs_table import RunsTable

pytestmark = pytest.mark.anyio
ROOT = Path("/tmp/xtui-compare-runs")  # fixed: names show on screen
SIZES = [(80, 24), (120, 40)]
QUEUED = ROOT / "queued"  # told by a RunUpdate only, as a Slurm job waiting for nodes would be


@pytest.fixture(autouse=True)
def runs(tmp_path, monkeypatch) -> dict[str, Path]:
    monkeypatch.setenv("XTUI_CONFIG", str(tmp_path / "settings.json"))
    shutil.rmtree(ROOT, ignore_errors=True)
    epochs = fixture_workdir(ROOT, "epochs", "xtuner-0.2.0-cpu-epochs.log", "xtuner-0.2.0-cpu-epochs-resumed.log")
    add_validations(min(epochs.glob("*/*.log")), {1: 0.25, 2: 0.5})
    dirs = {
        "epochs": epochs,
        "newer": fixture_workdir(ROOT, "newer", "xtuner-0.2.0-cpu-newer.log"),
        "older": fixture_workdir(ROOT, "older", "xtuner-0.2.0-cpu-older.log"),
        "damaged": ROOT / "damaged",
    }
    dirs["damaged"].mkdir()
    (dirs["damaged"] / "xtui-run.json").write_text("{cut", encoding="utf-8")
    yield dirs
    shutil.rmtree(ROOT, ignore_errors=True)


def _app() -> XtuiApp:
    return XtuiApp(roots=[ROOT], poll_s=0.05)


async def _listed(pilot, app: XtuiApp) -> RunsTable:
    """The dashboard's table once the four work dirs and the queued run are listed."""
    app.post_message(RunUpdate(QUEUED, [], Status(RunStatus.QUEUED, "Slurm job 7: waiting for nodes"), []))
    table = app.screen.query_one(RunsTable)
    await until(
        pilot, lambda: table.row_count == 5 and all(app.runs[Path(k)].status.state != "unknown" for k in table.keys)
    )
    await until(pilot, lambda: app.runs[ROOT / "epochs"].state.validations)
    return table


async def _mark(pilot, table: RunsTable, *work_dirs: Path) -> None:
    for work_dir in work_dirs:
        table.cursor = table.keys.index(str(work_dir))
        await pilot.press("space")


async def _compare(pilot, app: XtuiApp, *work_dirs: Path) -> CompareScreen:
    table = await _listed(pilot, app)
    await _mark(pilot, table, *work_dirs)
    await pilot.press("v")
    await until(pilot, lambda: isinstance(app.screen, CompareScreen))
    await pilot.pause()
    return app.screen


def _text(widget) -> str:
    return str(widget.render())


def _columns(screen: CompareScreen) -> dict[str, tuple[str, str]]:
    """Each run's column as shown: name -> (title, answer)."""
    titles = [_text(s) for s in screen.query(".compare-answer-title")]
    answers = [_text(s) for s in screen.query(".compare-answer-text")]
    return dict(zip(screen.names, zip(titles, answers, strict=True), strict=True))


async def test_space_marks_runs_in_any_state_and_v_opens_them(runs) -> None:
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        table = await _listed(pilot, app)
        order = [runs["damaged"], QUEUED, runs["newer"]]
        await _mark(pilot, table, *order)
        assert set(table.marked) == set(order) and len(table.marked) == 3
        marked_line = table.render_line(table.keys.index(str(QUEUED)) + 1).text
        assert marked_line.startswith("✓ queued")
        assert table.render_line(table.keys.index(str(runs["older"])) + 1).text.startswith("  finished")
        await _mark(pilot, table, runs["newer"])  # space again: unmarked
        assert runs["newer"] not in table.marked
        await _mark(pilot, table, runs["epochs"])
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen))
        assert app.screen.work_dirs == table.marked  # in the list's order
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen) and len(app.screen.query_one(RunsTable).marked) == 3


async def test_compare_asks_for_two_marked_runs(runs) -> None:
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        table = await _listed(pilot, app)
        await pilot.press("v")
        await _mark(pilot, table, runs["newer"])
        await pilot.press("v")
        await pilot.pause()
        said = [n.message for n in app._notifications]
        assert said == [
            "Mark two runs or more with space to compare them (no runs are marked).",
            "Mark two runs or more with space to compare them (one run is marked).",
        ]
        assert isinstance(app.screen, DashboardScreen)


async def test_palette_lists_compare_marked_runs() -> None:
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        await _listed(pilot, app)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Compare marked runs" in titles


async def test_one_chart_one_line_per_run_by_global_iteration(runs) -> None:
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _compare(pilot, app, runs["epochs"], runs["newer"], runs["damaged"], QUEUED)
        chart, plt = screen.query_one(CompareChart), screen.query_one(PlotextPlot).plt
        assert chart.metric == "loss"
        assert chart.metrics == ["loss", "lr", "grad_norm", "val:accuracy"]
        epochs, newer = plt.monitor.x  # no line for the runs without data
        assert epochs == [5, 10, 15, 20, 27, 32, 37, 42]  # epoch 2's [2][5/22] is iteration 27
        assert newer == [5, 10, 15, 20]
        legend = _text(screen.query_one("#compare-legend"))
        assert "■ epochs 1.7399" in legend and "■ newer 4.0546" in legend
        assert "damaged no data (damaged)" in legend and "queued no data (queued)" in legend
        await pilot.press("m", "m", "m")
        assert chart.metric == "val:accuracy" and plt.monitor.x == [[22, 44]] and plt.monitor.y == [[0.25, 0.5]]
        legend = _text(screen.query_one("#compare-legend"))
        assert "■ epochs 0.5" in legend and "newer no accuracy (val)" in legend
        assert _text(screen.query_one("#curves-summary")).startswith("accuracy (val) 4/4")


async def test_a_running_run_draws_its_new_steps_on_the_beat(runs) -> None:
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _compare(pilot, app, runs["newer"], QUEUED)
        plt = screen.query_one(PlotextPlot).plt
        assert len(plt.monitor.x) == 1
        started = [TrainStep(5, 100, loss=3.0), TrainStep(10, 100, loss=2.5)]
        app.post_message(RunUpdate(QUEUED, started, Status(RunStatus.RUNNING, pid=1), []))
        await until(pilot, lambda: len(plt.monitor.x) == 2)
        assert plt.monitor.x[screen.work_dirs.index(QUEUED)] == [5, 10]
        assert "■ queued 2.5000 running" in _text(screen.query_one("#compare-legend"))
        entries = [entry.strip() for entry in _text(screen.query_one("#compare-legend")).split("■")]
        assert "newer 4.0546" in entries  # finished: no word; the order is the dashboard's, which may move
        app.post_message(RunUpdate(QUEUED, [], Status(RunStatus.FAILED, "rank 1: out of memory"), []))
        await until(pilot, lambda: "■ queued 2.5000 failed" in _text(screen.query_one("#compare-legend")))


async def test_samples_side_by_side_at_the_nearest_iteration(runs) -> None:
    app = _app()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _compare(pilot, app, runs["epochs"], runs["newer"], runs["damaged"])
        await pilot.press("2")
        samples = screen.query_one(CompareSamples)
        assert samples.has_focus and samples.prompt == "你是谁"
        assert samples.iterations == [0, 10, 20, 22, 32, 42, 44]
        assert not screen.query_one("#compare-answer-row").has_class("stacked")  # three columns fit 120
        head = _text(screen.query_one("#compare-samples-head"))
        assert "prompt 1/1 (2 of 3 runs) 你是谁" in head and "iteration 44 (latest of 7 evaluations)" in head
        shown = _columns(screen)
        assert shown["epochs"] == (
            "■ epochs  iter 44",
            "叫是模的模型assist是小明<?>是",
        )  # the resumed start's (the last logged at 44); <?> stands for U+FFFD
        assert shown["newer"][0] == "■ newer  iter 22 (nearest)"
        assert shown["damaged"] == ("■ damaged", "no data (damaged)")
        await pilot.press("left", "left")
        shown = _columns(screen)
        assert (shown["epochs"][0], shown["newer"][0]) == ("■ epochs  iter 32", "■ newer  iter 22 (nearest)")
        assert "iteration 32 (5 of 7 evaluations)" in _text(screen.query_one("#compare-samples-head"))
        await pilot.press("home")
        shown = _columns(screen)
        assert (shown["epochs"][0], shown["newer"][0]) == ("■ epochs  iter 0", "■ newer  iter 0")
        await pilot.press("end")
        assert samples.iteration is None  # the latest again, and it follows new evaluations


async def test_samples_stack_at_80_columns_and_a_prompt_one_run_lacks(runs, tmp_path) -> None:
    lora = fixture_workdir(ROOT, "lora", "xtuner-0.2.0-h200-lora-console.log")
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        table = screen = None
        app.post_message(RunUpdate(QUEUED, [], Status(RunStatus.QUEUED), []))
        table = app.screen.query_one(RunsTable)
        await until(
            pilot,
            lambda: table.row_count == 6 and app.runs[lora].state.samples and app.runs[runs["older"]].state.samples,
        )
        await _mark(pilot, table, lora, runs["older"], QUEUED)
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen))
        screen = app.screen
        await pilot.press("2")
        await pilot.pause()
        assert screen.query_one("#compare-answer-row").has_class("stacked")
        samples = screen.query_one(CompareSamples)
        assert samples.prompts == ["你是谁", "请你介绍一下你自己"]
        await pilot.press("p")
        assert samples.prompt == "请你介绍一下你自己"
        answers = {name: answer for name, (_, answer) in _columns(screen).items()}
        assert answers == {"lora": "(empty)", "older": "no sample of this prompt", "queued": "no data (queued)"}


async def test_runs_without_data_say_so_and_every_key_is_safe(runs) -> None:
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _compare(pilot, app, runs["damaged"], QUEUED)
        assert _text(screen.query_one("#curves-summary")) == "No training steps in these runs yet."
        legend = _text(screen.query_one("#compare-legend")).split("  ")  # in the order the rows were marked, which
        assert sorted(legend) == ["■ damaged no data (damaged)", "■ queued no data (queued)"]  # depends on arrival
        await pilot.press("m", "l", "2", "p", "P", "left", "right", "home", "end", "down", "pagedown", "1")
        assert _text(screen.query_one("#compare-samples-head")) == "No evaluation samples in these runs yet."
        assert sorted(answer for _, answer in _columns(screen).values()) == ["no data (damaged)", "no data (queued)"]
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_runs_in_every_state_can_be_marked_and_compared() -> None:
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        table = await _listed(pilot, app)
        fakes = [ROOT / f"run-{state}" for state in RunStatus]
        for state, work_dir in zip(RunStatus, fakes, strict=True):
            app.post_message(RunUpdate(work_dir, [], Status(state), []))
        await until(pilot, lambda: table.row_count == 5 + len(fakes))
        await _mark(pilot, table, *fakes)
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen))
        await pilot.pause()
        legend = _text(app.screen.query_one("#compare-legend"))
        assert all(f"run-{state} no data ({state})" in legend for state in RunStatus)


def test_nearest_and_shared_prompts() -> None:
    samples = [Sample(10, "a", "x"), Sample(20, "a", "y"), Sample(20, "a", "y again"), Sample(30, "b", "z")]
    assert nearest(samples, "a", 15).answer == "x"  # as near: the earlier
    assert nearest(samples, "a", 99).answer == "y again"  # at one iteration: the last logged
    assert nearest(samples, "c", 10) is None
    runs = [ComparedRun("r1", "finished", [], [], samples), ComparedRun("r2", "running", [], [], samples[3:])]
    assert shared_prompts(runs) == [("b", 2), ("a", 1)]


def test_short_names_tell_the_runs_apart() -> None:
    assert short_names([Path("/x/a/run1"), Path("/x/b/run2")]) == ["run1", "run2"]
    assert short_names([Path("/x/a/run"), Path("/x/b/run")]) == ["a/run", "b/run"]
    assert short_names([Path("/x/a/run"), Path("/y/a/run")]) == ["/x/a/run", "/y/a/run"]


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40"])
@pytest.mark.parametrize("tab", ["chart", "samples"])
def test_snapshot(snap_compare, runs, size, tab) -> None:
    app = _app()

    async def opened(pilot) -> None:
        await _compare(pilot, app, runs["epochs"], runs["newer"], runs["damaged"])
        if tab == "samples":
            await pilot.press("2", "left")
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=opened)


async def test_after_a_resume_from_an_older_checkpoint_the_abandoned_branch_is_not_compared(runs) -> None:
    from engine.runs.events import Resumed

    app = _app()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _compare(pilot, app, runs["newer"], QUEUED)
        first = [Sample(it, "你是谁", f"first branch {it}") for it in (10, 20, 30)]
        app.post_message(RunUpdate(QUEUED, first, Status(RunStatus.RUNNING, pid=1), []))
        await pilot.press("2")
        samples = screen.query_one(CompareSamples)
        await until(pilot, lambda: 30 in samples.iterations)
        resumed = [Resumed(10), Sample(10, "你是谁", "again 10"), Sample(20, "你是谁", "second branch 20")]
        app.post_message(RunUpdate(QUEUED, resumed, Status(RunStatus.RUNNING, pid=1), []))
        await until(pilot, lambda: 30 not in samples.iterations)  # 30 was of the branch left behind
        head, answer = _columns(screen)["queued"]
        assert head.startswith("■ queued  iter 20") and answer == "second branch 20"
