"""Logs of real runs of other loop kinds and XTuner versions: epochs, resumes, the hook order, scalars.json, validation.

The fixtures are real CPU runs of the tiny demo model (tests/fixtures/make_reader_logs.py): `newer` is XTuner 0.2.0,
`older` has EvaluateChatHook as XTuner <= 0.1.12 had it (before LoggerHook), `epochs` is mmengine's EpochBasedTrainLoop
with that older hook (the 0.1.9-era configs), 22 iterations per epoch.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.runs.events import CheckpointSaved, Resumed, Sample, TrainStep, Validation
from engine.runs.logs import LogParser, read_events
from tests.support import FIXTURES

TS = "2026/11/28 14:10:03 - mmengine - INFO - "


def _of(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def _feed_all(text: str) -> list:
    parser = LogParser()
    return parser.feed(text) + parser.flush()


def _fixture(name: str) -> list:
    return read_events(FIXTURES / f"xtuner-0.2.0-cpu-{name}")


def test_epoch_loop_gives_global_iterations_and_max_iters_from_max_epochs() -> None:
    events = _fixture("epochs.log")
    steps = _of(events, TrainStep)
    assert [(s.epoch, s.iter) for s in steps] == [(1, 5), (1, 10), (1, 15), (1, 20), (2, 27), (2, 32), (2, 37), (2, 42)]
    assert {s.max_iters for s in steps} == {44}  # max_epochs=2 from the config dump, 22 per epoch
    saved = _of(events, CheckpointSaved)
    assert [(c.epoch, c.iter) for c in saved] == [(1, 22), (2, 44)]
    scalars = _of(_fixture("epochs-scalars.json"), TrainStep)
    assert [(s.epoch, s.iter) for s in scalars] == [(s.epoch, s.iter) for s in steps]  # mmengine's own global count


def test_samples_of_each_epoch_get_their_global_iteration() -> None:
    samples = _of(_fixture("epochs.log"), Sample)
    # the old hook evaluates at batch 10 and 20 of each epoch, before LoggerHook writes that iteration
    assert [s.iter for s in samples] == [0, 10, 20, 32, 42, 44]
    assert all(s.prompt == "你是谁" and s.complete for s in samples)


def test_resume_of_an_epoch_loop_is_on_the_scale_of_the_steps_after_it() -> None:
    events = _fixture("epochs-resumed.log")
    (resumed,) = _of(events, Resumed)
    assert (resumed.iter, resumed.epoch) == (22, 1) and resumed.checkpoint.endswith("epoch_1.pth")
    assert [s.iter for s in _of(events, TrainStep)] == [27, 32, 37, 42]
    assert [s.iter for s in _of(events, Sample)] == [22, 32, 42, 44]
    assert [(c.epoch, c.iter) for c in _of(events, CheckpointSaved)] == [(2, 44)]


def test_resume_in_the_middle_of_an_epoch_counts_from_the_resume_point() -> None:
    text = (
        f"{TS}resumed epoch: 81, iter: 6966\n{TS}Epoch(train) [82][10/86]  lr: 1e-4  loss: 1.0\n"
        f"{TS}resumed epoch: 81, iter: 7000\n{TS}Epoch(train) [82][10/86]  lr: 1e-4  loss: 1.0\n"
    )
    assert [(type(e).__name__, e.iter) for e in _feed_all(text)] == [
        ("Resumed", 6966), ("TrainStep", 6976), ("Resumed", 7000), ("TrainStep", 7010)]  # fmt: skip


def test_newer_xtuner_places_samples_after_the_logged_line_and_at_the_final_iteration() -> None:
    events = _fixture("newer.log")
    assert [s.iter for s in _of(events, TrainStep)] == [5, 10, 15, 20]
    assert {s.max_iters for s in _of(events, TrainStep)} == {22}
    # every 10, and at the save of the last iteration (22, never logged), then after_train at 22
    assert [s.iter for s in _of(events, Sample)] == [0, 10, 20, 22, 22]
    assert [c.iter for c in _of(events, CheckpointSaved)] == [20, 22]


def test_older_xtuner_samples_belong_to_the_line_after_them() -> None:
    events = _fixture("older.log")
    samples = _of(events, Sample)
    assert [s.iter for s in samples] == [0, 10, 20, 22]
    kinds = [(type(e).__name__, e.iter) for e in events if isinstance(e, (Sample, TrainStep))]
    assert kinds.index(("Sample", 10)) == kinds.index(("TrainStep", 10)) - 1


def test_final_evaluation_of_a_long_run_belongs_to_the_final_iteration() -> None:
    dump = (
        "Config:\n    dict(\n        every_n_iters=500,\n        type='xtuner.engine.hooks.EvaluateChatHook'),\n"
        "default_hooks = dict(\n    checkpoint=dict(\n        by_epoch=False,\n        interval=500,\n"
        "        type='mmengine.hooks.CheckpointHook'),\n"
    )
    text = (
        f"{TS}{dump}{TS}Iter(train) [3110/3117]  lr: 1e-5  loss: 0.1\n{TS}after_train_iter in EvaluateChatHook.\n"
        f"{TS}Sample output:\n<|User|>:hi\n<|Bot|>:hello</s>\n\n{TS}Saving checkpoint at 3117 iterations\n"
        f"{TS}after_train in EvaluateChatHook.\n{TS}Sample output:\n<|User|>:hi\n<|Bot|>:bye</s>\n\n"
    )
    samples = _of(_feed_all(text), Sample)
    assert [(s.iter, s.answer) for s in samples] == [(3117, "hello"), (3117, "bye")]


def test_evaluations_between_logged_lines_get_their_own_iteration() -> None:
    dump = "Config:\n        every_n_iters=25,\n"
    text = (
        f"{TS}{dump}{TS}Iter(train) [20/100]  lr: 1  loss: 1\n{TS}after_train_iter in EvaluateChatHook.\n"
        f"{TS}Sample output:\nplain\n\n{TS}Iter(train) [30/100]  lr: 1  loss: 1\n{TS}Iter(train) [50/100]  lr: 1  loss: 1\n"
        f"{TS}after_train_iter in EvaluateChatHook.\n{TS}Sample output:\nplain\n\n"
    )
    assert [s.iter for s in _of(_feed_all(text), Sample)] == [25, 50]


def _scalars(tmp_path: Path, rows: list[dict]) -> list:
    path = tmp_path / "scalars.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return read_events(path)


def test_scalars_validation_records_are_validations_not_steps(tmp_path: Path) -> None:
    # mmengine's LoggerHook.after_val_epoch: the metrics and `step` (the epoch, log_metric_by_epoch), no `iter`
    rows = [
        {"lr": 1e-4, "loss": 2.0, "time": 0.5, "epoch": 1, "iter": 380, "step": 380},
        {"accuracy/top1": 76.5, "data_time": 0.01, "time": 0.02, "step": 1},
        {"lr": 1e-4, "loss": 1.5, "epoch": 2, "iter": 760, "step": 760},
        {"val/loss": 1.25, "step": 760},  # log_metric_by_epoch=False: the step is the iteration
    ]
    events = _scalars(tmp_path, rows)
    assert [type(e) for e in events] == [TrainStep, Validation, TrainStep, Validation]
    assert events[1] == Validation(380, {"accuracy/top1": 76.5, "data_time": 0.01, "time": 0.02}, 1)
    assert events[3] == Validation(760, {"val/loss": 1.25}, 2)
    assert (events[0].iter, events[0].epoch, events[0].extra) == (380, 1, {})


def test_log_validation_summary_is_a_validation() -> None:
    text = (
        f"{TS}Epoch(train) [1][380/381]  lr: 1e-4  loss: 2.0\n"
        f"{TS}Epoch(val) [1][ 50/100]    eta: 0:00:05  time: 0.0200  data_time: 0.0100\n"
        f"{TS}Epoch(val) [1][100/100]    eta: 0:00:00  time: 0.0200  data_time: 0.0100\n"
        f"{TS}Epoch(val) [1][100/100]    accuracy/top1: 76.5000  data_time: 0.0100  time: 0.0200\n"
        f"{TS}Iter(val) [20/20]    val/loss: 1.2500  data_time: 0.0100  time: 0.0200\n"
    )
    events = _feed_all(text)
    assert [type(e) for e in events] == [TrainStep, Validation, Validation]
    first, second = events[1:]
    assert (first.iter, first.epoch, first.metrics["accuracy/top1"]) == (381, 1, 76.5)
    assert (second.iter, second.epoch, second.metrics) == (
        380,
        None,
        {"val/loss": 1.25, "data_time": 0.01, "time": 0.02},
    )
