"""Curves: present metrics only (validation metrics too), `m` cycles them, `l` toggles a log y axis, summary line, redraws only on data, snapshots."""

from __future__ import annotations

import math

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Footer, Static
from textual_plotext import PlotextPlot

from engine.runs.events import TrainStep, Validation
from engine.runs.logs import read_events
from tests.support import FIXTURE_LOG
from tests.support.waiting import until
from tests.support.workdirs import add_validations, fixture_workdir
from themes import THEMES
from tui.widgets.curves import Curves

pytestmark = pytest.mark.anyio


def steps(last: int = 300) -> list[TrainStep]:
    """A smooth fixed run: warm-up then cosine lr reaching 0, decaying loss, no grad norm."""
    return [
        TrainStep(
            i,
            last,
            lr=2e-4 * min(1.0, i / 30) * (0.5 + 0.5 * math.cos(math.pi * i / last)),
            loss=2.5 * math.exp(-i / 80) + 0.3,
            memory=9000.0 + i,
            tokens_per_sec=4000 + 300 * math.sin(i / 20),
        )
        for i in range(10, last + 1, 10)
    ]


class CurvesApp(App[None]):
    """The curves alone with a footer, in xtui's dark theme."""

    def __init__(self, data: list[TrainStep]) -> None:
        super().__init__()
        self.data = data

    def compose(self) -> ComposeResult:
        yield Curves()
        yield Footer()

    def on_mount(self) -> None:
        for theme in THEMES:
            self.register_theme(theme)
        self.theme = "xtui-dark"
        curves = self.query_one(Curves)
        curves.add_steps(self.data)
        curves.focus()


def summary(app: App) -> str:
    return str(app.query_one("#curves-summary", Static).render())


async def test_metric_cycles_over_present_metrics_only() -> None:
    app = CurvesApp(steps())
    async with app.run_test(size=(80, 24)) as pilot:
        curves, plt = app.query_one(Curves), app.query_one(PlotextPlot).plt
        assert curves.metrics == ["loss", "lr", "tokens_per_sec"]
        assert curves.metric == "loss" and summary(app).startswith("loss 1/3")
        assert plt.monitor.y[0][0] == pytest.approx(steps()[0].loss)
        seen = []
        for _ in range(3):
            await pilot.press("m")
            seen.append(curves.metric)
        assert seen == ["lr", "tokens_per_sec", "loss"]
        await pilot.press("m")
        assert summary(app).startswith("lr 2/3") and plt.monitor.y[0][-1] == 0.0


async def test_log_scale_toggle() -> None:
    app = CurvesApp(steps())
    async with app.run_test(size=(80, 24)) as pilot:
        curves, plt = app.query_one(Curves), app.query_one(PlotextPlot).plt
        await pilot.press("m", "l")
        assert curves.log_scale and plt.monitor.yscale[0] == "log"
        assert "log scale (1 ≤ 0 not shown)" in summary(app)  # lr reaches 0 at the end
        assert len(plt.monitor.y[0]) == len(steps()) - 1
        await pilot.press("l")
        assert not curves.log_scale and plt.monitor.yscale[0] == "linear"
        assert "log scale" not in summary(app)


async def test_bindings_have_footer_descriptions() -> None:
    app = CurvesApp(steps())
    async with app.run_test(size=(80, 24)):
        shown = {b.binding.key: b.binding.description for b in app.active_bindings.values() if b.binding.show}
        assert shown["m"] == "Metric" and shown["l"] == "Log scale"


async def test_a_resume_from_an_older_checkpoint_drops_the_branch_it_left() -> None:
    app = CurvesApp(steps(100))
    async with app.run_test(size=(80, 24)) as pilot:
        curves, plt = app.query_one(Curves), app.query_one(PlotextPlot).plt
        curves.add_steps([TrainStep(50, 100, loss=0.05, memory=12000.0), TrainStep(110, 200, loss=0.2)])
        await pilot.pause()
        assert plt.monitor.x[0] == [10, 20, 30, 40, 50, 110]  # 60-100 were the old branch's
        text = summary(app)
        assert "last 0.2000" in text and "min 0.0500 @ 50" in text and "peak memory 12000 MiB" in text


@pytest.mark.parametrize("bad", [math.nan, math.inf])
async def test_a_nan_or_infinite_loss_is_named_not_drawn(bad) -> None:
    data = steps(100)[:5] + [TrainStep(60, 100, loss=bad), TrainStep(70, 100, loss=bad)]
    app = CurvesApp(data)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        plt = app.query_one(PlotextPlot).plt
        assert plt.monitor.x[0] == [10, 20, 30, 40, 50]
        text = summary(app)
        assert f"last {bad}" in text and "2 not finite, from iter 60" in text and "min " in text
        await pilot.press("l")  # a log axis too
        await pilot.pause()
        assert app.is_running


async def test_redraws_only_when_data_arrives() -> None:
    app = CurvesApp(steps())
    async with app.run_test(size=(80, 24)) as pilot:
        plot = app.query_one(PlotextPlot)
        await pilot.pause()
        renders = []
        original = plot.render
        plot.render = lambda: renders.append(1) or original()
        await pilot.pause(0.5)
        assert renders == []
        app.query_one(Curves).add_steps([TrainStep(250, 300, loss=0.1)])  # a resume: drawn at once
        await pilot.pause()
        assert renders and plot.plt.monitor.x[0][-1] == 250


async def test_a_stream_of_points_repaints_the_chart_at_most_every_replot_s_and_the_summary_each_time() -> None:
    app = CurvesApp(steps())
    async with app.run_test(size=(80, 24)) as pilot:
        curves, plot = app.query_one(Curves), app.query_one(PlotextPlot)
        curves.REPLOT_S = 1.0
        await pilot.pause(1.1)
        curves.add_steps([TrainStep(310, 1000, loss=0.2)])  # a second after the last drawing: drawn at once
        await pilot.pause()
        renders, refreshes = [], []
        original, refresh = plot.render, plot.refresh
        plot.render = lambda: renders.append(1) or original()
        plot.refresh = lambda *a, **k: refreshes.append(1) or refresh(*a, **k)
        for beat in range(5):  # one new point a beat, faster than REPLOT_S
            curves.add_steps([TrainStep(320 + 10 * beat, 1000, loss=0.1 - beat / 100)])
            await pilot.pause(0.05)
            assert f"last {0.1 - beat / 100:.4f}" in summary(app) and "↻ 1 s" in summary(app)
        assert renders == [] and refreshes == [] and plot.plt.monitor.x[0][-1] == 310
        await pilot.pause(1.0)
        assert len(refreshes) == 1 and renders and plot.plt.monitor.x[0][-1] == 360


class BeatApp(CurvesApp):
    """The curves under a line that changes on each beat, as the run view's progress line above its tabs does."""

    def compose(self) -> ComposeResult:
        yield Static("iter 0", id="above")
        yield from super().compose()


async def test_a_beat_renders_the_summary_not_the_plot_which_still_redraws_on_points_a_metric_and_a_resize() -> None:
    app = BeatApp(steps())
    async with app.run_test(size=(80, 24)) as pilot:
        curves, plot, summary = app.query_one(Curves), app.query_one(PlotextPlot), app.query_one("#curves-summary")
        curves.REPLOT_S = 2.0
        await pilot.pause(2.1)
        curves.add_steps([TrainStep(310, 1000, loss=0.2)])  # past REPLOT_S: drawn at once
        await pilot.pause()
        rendered: dict[str, list] = {"plot": [], "summary": [], "chart": []}
        for name, widget in (("plot", plot), ("summary", summary)):
            widget.render_lines = lambda crop, was=widget.render_lines, seen=rendered[name]: seen.append(1) or was(crop)
        plot.render = lambda was=plot.render: rendered["chart"].append(1) or was()
        for beat in range(4):  # the summary line and the line above change, the chart waits for REPLOT_S
            curves.add_steps([TrainStep(320 + 10 * beat, 1000, loss=0.1 - beat / 100)])
            app.query_one("#above", Static).update(f"iter {320 + 10 * beat}")
            await pilot.pause(0.05)
            assert len(rendered["summary"]) == beat + 1
        assert rendered["plot"] == [] and rendered["chart"] == [] and plot.plt.monitor.x[0][-1] == 310
        await until(pilot, lambda: rendered["chart"], timeout=5)  # REPLOT_S after the last drawing
        assert rendered["plot"] and plot.plt.monitor.x[0][-1] == 350
        for change in (lambda: pilot.press("m"), lambda: pilot.resize_terminal(100, 30)):
            rendered["plot"].clear(), rendered["chart"].clear()
            await change()
            await pilot.pause()
            assert rendered["plot"] and rendered["chart"]
        assert curves.metric == "lr" and plot.size.width == 100


async def test_the_summary_counts_a_stream_on_from_the_last_beat() -> None:
    app = CurvesApp(steps(100))
    async with app.run_test(size=(80, 24)) as pilot:
        curves = app.query_one(Curves)
        for step in [TrainStep(110, 200, loss=math.nan), TrainStep(120, 200, loss=0.01), TrainStep(130, 200, loss=0.5)]:
            curves.add_steps([step])
            await pilot.pause()
        assert "last 0.5000  min 0.0100 @ 120  1 not finite, from iter 110" in summary(app)
        curves.add_steps([TrainStep(105, 200, loss=1.5)])  # a resume before the NaN: counted again
        await pilot.pause()
        assert "last 1.5000  min 1.0163 @ 100  peak" in summary(app)


def test_a_beat_repaints_only_the_summary_cells_that_changed() -> None:
    from textual.geometry import Region

    from tui.widgets.curves import _changed_cells

    before = "loss 1/4  last 11.5855  min 10.8431 @ 70  peak memory 9977 MiB"
    assert _changed_cells(before, before.replace("11.5855", "11.0342")) == Region(18, 0, 4, 1)  # '5855' to '0342'
    assert _changed_cells(before, before.replace("11.5855", "9.5855")) == Region(15, 0, len(before) - 15, 1)  # moved
    assert _changed_cells(before, before + "  ↻ 60 s") == Region(len(before), 0, 8, 1)
    assert not _changed_cells(before, before)


async def test_a_300k_iteration_run_hands_plotext_a_widths_worth_of_points_in_bounded_time() -> None:
    long = [TrainStep(i, 300_000, loss=2.0 + math.sin(i / 997), lr=1e-4) for i in range(10, 300_001, 10)]
    long[12_345] = TrainStep(123_460, 300_000, loss=50.0, lr=1e-4)  # a spike survives the thinning
    app = CurvesApp(long)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        curves, plt = app.query_one(Curves), app.query_one(PlotextPlot).plt
        xs, ys = plt.monitor.x[0], plt.monitor.y[0]
        assert len(xs) <= 2 * 80 + 1 and max(ys) == 50.0 and (xs[-1], ys[-1]) == (300_000, long[-1].loss)
        curves.REPLOT_S = 0.0  # each new point drawn
        for beat in range(10):
            curves.add_steps([TrainStep(300_010 + 10 * beat, 400_000, loss=1.0 + beat)])
            app.query_one(PlotextPlot).render()
        assert plt.monitor.y[0][-1] == 10.0 and len(plt.monitor.x[0]) <= 2 * 80 + 1


async def test_hidden_plot_waits_until_shown() -> None:
    app = CurvesApp(steps(100))
    async with app.run_test(size=(80, 24)) as pilot:
        curves, plt = app.query_one(Curves), app.query_one(PlotextPlot).plt
        await pilot.pause()
        curves.display = False
        await pilot.pause()
        curves.add_steps([TrainStep(110, 200, loss=0.2)])
        assert plt.monitor.x[0][-1] == 100  # not replotted while hidden
        curves.display = True
        await pilot.pause()
        await pilot.pause()
        assert plt.monitor.x[0][-1] == 110 and "last 0.2000" in summary(app)


async def test_real_log_and_clear() -> None:
    data = [e for e in read_events(FIXTURE_LOG) if isinstance(e, TrainStep)]
    app = CurvesApp(data)
    async with app.run_test(size=(80, 24)) as pilot:
        curves = app.query_one(Curves)
        assert curves.metrics == ["loss", "lr", "grad_norm", "tokens_per_sec"]
        assert "last 10.8431" in summary(app) and "peak memory 9977 MiB" in summary(app)
        assert "10.8" in str(app.query_one(PlotextPlot).render())
        curves.clear()
        await pilot.pause()
        assert summary(app) == "No training steps yet." and curves.metric is None
        await pilot.press("m", "l")  # nothing to show: no error


@pytest.mark.parametrize("size, press", [((80, 24), ()), ((120, 40), ("m", "l"))], ids=["80x24", "120x40-lr-log"])
def test_snapshot(snap_compare, size, press) -> None:
    assert snap_compare(CurvesApp(steps()), terminal_size=size, press=press)


async def test_validation_metrics_are_curves_of_their_own(tmp_path) -> None:
    # a real epoch run's log, with the lines mmengine's ValLoop writes after each epoch's save
    work_dir = fixture_workdir(tmp_path, "epochs", "xtuner-0.2.0-cpu-epochs.log")
    log = next(work_dir.glob("*/*.log"))
    add_validations(log, {1: 0.25, 2: 0.5})
    events = read_events(log)
    app = CurvesApp([e for e in events if isinstance(e, TrainStep)])
    async with app.run_test(size=(80, 24)) as pilot:
        curves, plt = app.query_one(Curves), app.query_one(PlotextPlot).plt
        curves.add_validations([e for e in events if isinstance(e, Validation)])
        assert curves.metrics == ["loss", "lr", "grad_norm", "val:accuracy"]  # not its data_time or time
        await pilot.press("m", "m", "m")
        assert curves.metric == "val:accuracy" and summary(app).startswith(
            "accuracy (val) 4/4  last 0.5  min 0.25 @ 22"
        )
        assert plt.monitor.x == [[22, 44]] and plt.monitor.y == [[0.25, 0.5]]  # at each epoch's last global iteration
        curves.add_steps(
            [TrainStep(30, 44, loss=1.0)]
        )  # a resume from epoch 1: epoch 2's validation was the old branch's
        await pilot.pause()
        assert plt.monitor.x == [[22]] and summary(app).startswith("accuracy (val) 4/4  last 0.25")


async def test_a_validation_without_an_iteration_is_left_out() -> None:
    app = CurvesApp([])
    async with app.run_test(size=(80, 24)) as pilot:
        curves = app.query_one(Curves)
        curves.add_validations([Validation(None, {"val/loss": 1.0}), Validation(40, {"val/loss": 0.8})])
        await pilot.pause()
        assert curves.metric == "val:val/loss" and app.query_one(PlotextPlot).plt.monitor.x == [[40]]
        assert summary(app).startswith("val/loss (val) 1/1  last 0.8")


async def test_the_run_view_plots_a_runs_validation_metrics(tmp_path) -> None:
    from tests.support.fakes import NoGpus
    from tui.app import XtuiApp
    from tui.screens.run import RunScreen

    work_dir = fixture_workdir(tmp_path, "epochs", "xtuner-0.2.0-cpu-epochs.log")
    add_validations(next(work_dir.glob("*/*.log")), {1: 0.25, 2: 0.5})
    app = XtuiApp(roots=[tmp_path], open_run=work_dir, gpu_backend=NoGpus(), poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.record(work_dir).state.validations)
        await pilot.pause()
        assert app.screen.query_one(Curves).metrics[-1] == "val:accuracy"
