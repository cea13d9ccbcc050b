"""The run view's columnar series shows what the one-object-per-step series shows, fed batches of columns."""

from __future__ import annotations

import math

from engine.runs.events import TrainStep, TrainSteps, Validation
from engine.runs.logparse.columns import StepColumns
from tui.widgets.column_series import ColumnSeries
from tui.widgets.curves import RunSeries


def _steps() -> list[TrainStep]:
    """A run with gaps in its fields, a NaN loss and memory, then a resume from an older checkpoint (at 25 of 40)."""
    first = [
        TrainStep(i, 40, lr=1e-4, loss=2.0 / i, memory=float(i), grad_norm=None if i % 20 else 1.5)
        for i in range(5, 45, 5)
    ]
    first[3] = TrainStep(20, 40, lr=1e-4, loss=math.nan, memory=math.nan)
    resumed = [TrainStep(i, 40, lr=2e-4, loss=1.0 / i, tokens_per_sec=900.0 + i) for i in range(25, 45, 5)]
    return first + resumed


def _batches(steps: list[TrainStep], size: int) -> list[TrainSteps]:
    """The steps as TrainSteps batches of `size` rows of one StepColumns."""
    columns = StepColumns()
    for step in steps:
        columns.append(step)
    return [TrainSteps(columns, start, min(start + size, len(steps))) for start in range(0, len(steps), size)]


def _shown(series: RunSeries) -> tuple:
    """What the curves read off a series (values as their repr: a NaN is not equal to itself)."""
    points = {m: (list(series.points(m)[0]), [repr(y) for y in series.points(m)[1]]) for m in series.metrics}
    return series.metrics, points, list(series.steps), series.peak_memory, series.validations


def test_batches_of_columns_give_what_one_step_at_a_time_gives() -> None:
    steps = _steps()
    validations = [Validation(10, {"acc": 0.1}), Validation(30, {"acc": 0.3}), Validation(40, {"bleu": 0.4})]
    for size in (1, 3, 8, len(steps)):
        each, columns = RunSeries(), ColumnSeries()
        each.add_validations(validations)
        columns.add_validations(validations)
        for batch in _batches(steps, size):
            each.add_steps(list(batch))
            columns.add_steps(batch)
            assert _shown(columns) == _shown(each), size
    assert list(columns.steps) == [5, 10, 15, 20, 25, 30, 35, 40]  # the resumed branch's 25-40
    assert columns.validations == {10: {"acc": 0.1}}  # 30 and 40 were the branch it left


def test_a_stream_grows_the_lists_it_handed_out_in_place() -> None:
    series = ColumnSeries()
    batches = _batches([TrainStep(i, 100, loss=1.0 / i) for i in range(1, 101)], 10)
    series.add_steps(batches[0])
    xs, ys = series.points("loss")
    for batch in batches[1:]:
        series.add_steps(batch)
    assert series.points("loss") == (xs, ys) and series.points("loss")[0] is xs  # the same lists, grown
    assert xs == list(range(1, 101)) and ys[-1] == 0.01
    series.add_steps([TrainStep(50, 100, loss=0.5)])  # one TrainStep, a resume: the lists are built again
    assert series.points("loss")[0] is not xs and series.points("loss")[0][-1] == 50
