"""engine.runs.logs on the real xtuner 0.2.0 console log, synthetic mmengine lines, and fuzzed input."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.runs.events import CheckpointSaved, DataloaderAdvance, Resumed, RunError, Sample, TrainStep
from engine.runs.logs import LogFollower, LogParser, ScalarsFollower, read_events, split_sample
from tests.support import FIXTURE_LOG

FIXTURE = FIXTURE_LOG
LOSSES = [11.6057, 11.5813, 11.5855, 11.3563, 11.0345, 10.9708, 10.9074, 10.8431]
PROMPTS = ["请你介绍一下你自己", "你是谁"]
TS = "2026/11/28 14:10:03 - mmengine - INFO - "

# What mmengine 0.10.6 + xtuner 0.2.0 print on `xtuner train ... --resume iter_20.pth` (messages from
# Runner.resume/load_checkpoint, CheckpointLoader and IterBasedTrainLoop.run), with a traceback-free restart.
RESUME_LOG = f"""\
{TS}Auto resumed from the latest checkpoint /tmp/ft/work/iter_20.pth.
Loads checkpoint by local backend from path: /tmp/ft/work/iter_20.pth
{TS}Load checkpoint from /tmp/ft/work/iter_20.pth
{TS}resumed epoch: 0, iter: 20
{TS}before_train in EvaluateChatHook.
{TS}Sample output:
<s><|im_start|>system
你是小明的助手<|im_end|>
<|im_start|>user
你是谁<|im_end|>
<|im_start|>assistant
我是小明的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦<|im_end|>

2026/11/28 14:10:05 - mmengine - INFO - Checkpoints will be saved to /tmp/ft/work.
2026/11/28 14:10:05 - mmengine - WARNING - Advance dataloader 20 steps to skip data that has already been trained
2026/11/28 14:10:09 - mmengine - INFO - Iter(train) [25/40]  lr: 8.6577e-05  eta: 0:00:07  time: 0.6715  \
data_time: 0.3930  memory: 9977  loss: 11.0345  tflops: 70.5750  tokens_per_sec: 4892.6372  grad_norm: 1.8634
"""

OOM_TRACEBACK = """\
Traceback (most recent call last):
  File "/tmp/site/xtuner/tools/train.py", line 360, in main
    runner.train()
  File "/tmp/site/torch/nn/modules/module.py", line 1773, in _wrapped_call_impl
    return self._call_impl(*args, **kwargs)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.95 GiB. GPU 0 has a total capacity of 139.72 GiB
"""

WEIGHTS_ONLY_TRACEBACK = """\
Traceback (most recent call last):
  File "/tmp/site/mmengine/runner/checkpoint.py", line 347, in load_from_local
    checkpoint = torch.load(filename, map_location=map_location)
_pickle.UnpicklingError: Weights only load failed. This file can still be loaded, to do so you have two options, \
\x1b[1mdo those steps only if you trust the source of the checkpoint\x1b[0m. 
\t(1) In PyTorch 2.6, we changed the default value of the `weights_only` argument in `torch.load` from `False` \
to `True`.
\tWeightsUnpickler error: Unsupported global: GLOBAL mmengine.logging.history_buffer.HistoryBuffer

Check the documentation of torch.load to learn more about types accepted by default with weights_only
"""


def _feed_all(text: str) -> list:
    parser = LogParser()
    return parser.feed(text) + parser.flush()


def _of(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


@pytest.fixture(scope="module")
def fixture_events() -> list:
    return read_events(FIXTURE)


def test_fixture_train_steps(fixture_events: list) -> None:
    steps = _of(fixture_events, TrainStep)
    assert [s.iter for s in steps] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert [s.loss for s in steps] == LOSSES
    assert {s.max_iters for s in steps} == {40}
    assert [s.memory for s in steps] == [9449] * 3 + [9977] * 5
    assert [s.grad_norm is not None for s in steps] == [False] * 3 + [True] * 5
    first = steps[0]
    assert (first.lr, first.eta, first.time, first.data_time) == (2.0e-4, 29.0, 0.8475, 0.0096)
    assert (first.tflops, first.tokens_per_sec, first.extra, first.at) == (50.4012, 3494.0818, {}, "11/28 13:52:24")
    assert steps[3].grad_norm == 1.8634


def test_fixture_samples_checkpoints_and_no_errors(fixture_events: list) -> None:
    samples = _of(fixture_events, Sample)
    assert [s.iter for s in samples] == [0, 0, 20, 20, 40, 40, 40, 40]
    assert [s.prompt for s in samples] == PROMPTS * 4
    assert [s.answer for s in samples] == ["", "D", "\ufffd", "", "", "\ufffd", "", ""]  # `time` output is dropped
    assert samples[0].at == "11/28 13:52:18"
    assert [c.iter for c in _of(fixture_events, CheckpointSaved)] == [20, 40]
    assert not _of(fixture_events, RunError)
    kinds = [type(e).__name__ for e in fixture_events]
    assert kinds.index("CheckpointSaved") == kinds.index("Sample", 4) + 2  # samples at 20 come before the save


def test_work_dir_date_format_gives_the_same_events(fixture_events: list) -> None:
    text = re.sub(r"^(\d\d/\d\d \d\d:)", r"2026/\1", FIXTURE.read_text(encoding="utf-8"), flags=re.M)
    events = _feed_all(text)
    assert len(events) == len(fixture_events)
    for mine, theirs in zip(events, fixture_events, strict=True):
        assert mine.at == "2026/" + theirs.at
        assert mine.to_json() | {"at": None} == theirs.to_json() | {"at": None}


def test_resume_lines() -> None:
    events = _feed_all(RESUME_LOG)
    assert events[0] == Resumed(20, "/tmp/ft/work/iter_20.pth", "2026/11/28 14:10:03", epoch=0)
    answer = "我是小明的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦"
    assert events[1] == Sample(20, "你是谁", answer, "2026/11/28 14:10:03")  # the system block is dropped
    assert events[2] == DataloaderAdvance(20, "2026/11/28 14:10:05")
    assert isinstance(events[3], TrainStep) and events[3].iter == 25 and len(events) == 4


def test_flexible_runner_resume_takes_the_auto_resume_path() -> None:
    text = f"{TS}Auto resumed from the latest checkpoint /w/iter_40.pth.\n{TS}resumed epoch: 1, iter: 40\n"
    assert _feed_all(text) == [Resumed(40, "/w/iter_40.pth", "2026/11/28 14:10:03", epoch=1)]


def test_train_line_variants() -> None:
    lines = [
        "Iter(train) [5/40]  loss: 2.5  lr: 1e-4  custom_metric: 7  eta: 1 day, 2:03:04  memory: n/a",
        "Iter(train) [ 6/40]  time: 0.1  data_time: 0.02  eta: 3 days, 0:00:01  loss: nan  grad_norm: inf",
        "Iter(train) [ 7/40]  lr: 2.0000e-04  eta: 0:00:29  time: 0.8475  data_time: 0.0096  loss: abc  tflops: 1.0",
        "Iter(train) [ 8/40]",
        "Epoch(train)  [1][ 5/40]  lr: 2.0000e-04  eta: 0:00:29  time: 0.8475  data_time: 0.0096  loss: 1.5",
    ]
    steps = _feed_all("".join(TS + line + "\n" for line in lines))
    a, b, c, d, e = steps
    assert (a.iter, a.max_iters, a.loss, a.lr, a.eta, a.memory) == (5, 40, 2.5, 1e-4, 93784.0, None)
    assert a.extra == {"custom_metric": 7.0}
    assert b.eta == 3 * 86400 + 1 and b.loss != b.loss and b.grad_norm == float("inf")
    assert (c.loss, c.tflops, c.memory, c.eta) == (None, 1.0, None, 29.0)  # non-numeric loss skipped, no memory on CPU
    assert (d.iter, d.loss) == (8, None)
    assert (e.iter, e.max_iters, e.loss, e.extra, e.epoch) == (5, None, 1.5, {}, 1)


def test_coloured_levels_and_error_lines() -> None:
    text = (
        "11/28 13:52:00 - mmengine - \x1b[4m\x1b[37mINFO\x1b[0m - Saving checkpoint at 3 iterations\n"
        "11/28 13:52:01 - mmengine - \x1b[31m\x1b[4m\x1b[5mERROR\x1b[0m - /x/runner.py - train - 17 - it broke\n"
        "2026/11/28 13:52:02 - mmengine - ERROR - bare message\n"
    )
    saved, colored, plain = _feed_all(text)
    assert saved == CheckpointSaved(3, "11/28 13:52:00")
    assert (colored.cause, colored.message, colored.at) == ("error", "it broke", "11/28 13:52:01")
    assert (plain.cause, plain.message) == ("error", "bare message")


def test_cuda_oom_traceback() -> None:
    parser = LogParser()
    head, last = OOM_TRACEBACK.rsplit("torch.", 1)
    assert parser.feed(head) == []
    (error,) = parser.feed("torch." + last)  # emitted when its final line arrives, not at flush
    assert error.cause == "cuda_oom"
    assert error.message.startswith("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.95 GiB")
    assert error.detail.startswith("Traceback (most recent call last):") and "runner.train()" in error.detail
    assert parser.flush() == []


def test_weights_only_traceback_under_torchrun_prefix() -> None:
    text = "".join(f"[rank0]: {line}\n" for line in WEIGHTS_ONLY_TRACEBACK.splitlines())
    (error,) = _feed_all(TS + "Load checkpoint from /w/iter_20.pth\n" + text)
    assert error.cause == "weights_only"
    assert error.message.startswith("_pickle.UnpicklingError: Weights only load failed.")
    assert "\x1b" not in error.message


def test_chained_traceback_and_bounded_detail() -> None:
    frames = "".join(f'  File "f.py", line {i}, in g\n    g()\n' for i in range(200))
    text = (
        f"Traceback (most recent call last):\n{frames}KeyError: 'x'\n\nDuring handling of the above exception, "
        'another exception occurred:\n\nTraceback (most recent call last):\n  File "t.py", line 1\n'
        "RuntimeError: boom\n"
    )
    first, second = _feed_all(text)
    assert (first.cause, first.message, second.message) == ("traceback", "KeyError: 'x'", "RuntimeError: boom")
    assert len(first.detail.splitlines()) <= 50


def test_unfinished_traceback_and_sample_are_emitted_at_flush() -> None:
    parser = LogParser()
    events = parser.feed(
        f"{TS}Sample output:\n<|User|>:hi\n<|Bot|>:hello</s>\n\nTraceback (most recent call last):\n"
        '  File "x.py", line 3, in f\n'
    )
    assert events == [Sample(0, "hi", "hello", "2026/11/28 14:10:03")]
    (error,) = parser.flush()
    assert error.cause == "traceback" and error.message == 'File "x.py", line 3, in f'


def test_huge_numbers_deep_json_and_stray_words_do_not_raise(tmp_path: Path) -> None:
    digits = "9" * 5000  # past int()'s default 4300-digit limit
    text = (
        f"{TS}Iter(train) [{digits}/{digits}]  lr: 1  loss: 1\n{TS}Saving checkpoint at {digits} iterations\n"
        f"{TS}Iter(train) [1/40]  lr: 1  eta: {digits}:00:00  loss: {digits}\n"
    )
    (step,) = _feed_all(text)
    assert (step.iter, step.max_iters, step.eta, step.loss) == (1, 40, None, float("inf"))
    path = tmp_path / "scalars.json"
    path.write_text("[" * 100_000 + "\n" + json.dumps({"iter": int("9" * 4000), "loss": 10**400}) + "\n")
    assert [e.iter for e in read_events(path)] == [int("9" * 4000)]
    stray = "Traceback (most recent call last):\nHello\nWorld: not an exception line at all\n"
    assert [e.message for e in _feed_all(stray)] == ["World: not an exception line at all"]


def test_carriage_returns_and_garbage() -> None:
    text = (
        "Map (num_proc=32):   0%|          | 0/9000\rMap: 100%|██████████| 9000/9000\r"
        f"{TS}Saving checkpoint at 9 iterations\r\n"
        "\x00\x01garbage: 1.0 Iter(train) [1/2]\n"
        f"{TS}Iter(train) [\n{TS}Iter(train) [x/y]  loss: 1\n{TS}resumed epoch: x\n{TS}\n" + "x" * 1_000_000
    )
    assert _feed_all(text) == [CheckpointSaved(9, "2026/11/28 14:10:03")]


@pytest.mark.parametrize(
    ("text", "prompt", "answer"),
    [
        (
            "<s><|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na<|im_end|>",
            "q",
            "a",
        ),
        (
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nsys<|eot_id|><|start_header_id|>user"
            "<|end_header_id|>\n\nq<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\na<|eot_id|>",
            "q",
            "a",
        ),
        ("<|System|>:sys\n<|User|>:q\n<|Bot|>:a</s>", "q", "a"),
        ("<|User|>:q<eoh>\n<|Bot|>:a<eoa>", "q", "a"),
        ("<s>[INST] <<SYS>>\n You are helpful.\nsys\n<</SYS>>\n [/INST] [INST] q [/INST] a </s>", "q", "a"),
        ("[INST] sys [/INST]\n[INST] q [/INST]a", "q", "a"),
        ("<|user|>\nq<|end|>\n<|assistant|>\na<|end|>", "q", "a"),
        ("<start_of_turn>user\nq<end_of_turn>\n<start_of_turn>model\na<end_of_turn>", "q", "a"),
        ("<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n\n\n", "q", ""),
        ("plain words <s>\n", "", "plain words"),
    ],
)
def test_split_sample_templates(text: str, prompt: str, answer: str) -> None:
    assert split_sample(text) == (prompt, answer)


def _small_log() -> bytes:
    """A log with every kind of event and multi-byte text, for the split-anywhere tests."""
    text = FIXTURE.read_text(encoding="utf-8")
    start = text.index("11/28 13:52:28 - mmengine - INFO - Iter(train) [20/40]")
    end = text.index("\n", text.index("Saving checkpoint at 20 iterations"))
    return (
        text[start : end + 1] + 'Traceback (most recent call last):\n  File "t.py", line 1\n'
        "torch.OutOfMemoryError: CUDA out of memory.\n"
    ).encode()


def test_split_at_every_byte_gives_the_same_events(tmp_path: Path) -> None:
    data = _small_log()
    path = tmp_path / "run.log"
    path.write_bytes(data)
    whole = read_events(path)
    assert [type(e) for e in whole] == [TrainStep, Sample, Sample, CheckpointSaved, RunError]
    assert whole[1] == Sample(20, "请你介绍一下你自己", "\ufffd", "11/28 13:52:29")  # 3-byte characters
    for cut in range(len(data) + 1):
        path.write_bytes(data[:cut])
        follower = LogFollower(path)
        events = follower.poll()
        with open(path, "ab") as fh:
            fh.write(data[cut:])
        events += follower.poll() + follower.flush()
        assert events == whole, cut
        assert follower.offset == len(data)


def test_appends_are_read_incrementally(tmp_path: Path) -> None:
    path = tmp_path / "20261128_141003" / "20261128_141003.log"
    follower = LogFollower(path)
    assert follower.poll() == [] and follower.offset == 0  # not there yet
    path.parent.mkdir()
    first = f"{TS}Saving checkpoint at 20 iterations\n{TS}Iter(train) [21/40]  loss: 1.0\n{TS}Sav"
    path.write_text(first, encoding="utf-8")
    assert [type(e) for e in follower.poll()] == [CheckpointSaved, TrainStep]
    assert follower.offset == len(first)
    assert follower.poll() == []
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("ing checkpoint at 40 iterations\n")
    assert follower.poll() == [CheckpointSaved(40, "2026/11/28 14:10:03")]
    assert follower.offset == path.stat().st_size


def test_truncated_or_replaced_file_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text(f"{TS}Saving checkpoint at 20 iterations\n{TS}Saving checkpoint at 30 iterations\n")
    follower = LogFollower(path)
    assert len(follower.poll()) == 2
    path.write_text(f"{TS}Saving checkpoint at 5 iterations\n")  # truncated
    assert follower.poll() == [CheckpointSaved(5, "2026/11/28 14:10:03")]
    replacement = tmp_path / "y.log"
    replacement.write_text(f"{TS}Saving checkpoint at 6 iterations\n{TS}Saving checkpoint at 7 iterations\n")
    os.replace(replacement, path)  # a new file, longer than what was read
    assert [e.iter for e in follower.poll()] == [6, 7]


def test_start_at_offset(tmp_path: Path) -> None:
    path = tmp_path / "xtui-console.log"
    old = f"{TS}Saving checkpoint at 20 iterations\n"
    path.write_text(old + f"{TS}Saving checkpoint at 40 iterations\n")
    assert LogFollower(path, offset=len(old)).poll() == [CheckpointSaved(40, "2026/11/28 14:10:03")]


def test_scalars_follower(tmp_path: Path) -> None:
    path = tmp_path / "vis_data" / "scalars.json"
    path.parent.mkdir()
    rows = [
        {"lr": 2e-4, "data_time": 0.0096, "loss": 11.6057, "time": 0.8475, "iter": 5, "memory": 9449, "step": 5},
        {
            "loss": 11.3,
            "grad_norm": 1.8634,
            "tflops": 48.38,
            "tokens_per_sec": 3353.97,
            "iter": 20,
            "step": 20,
            "acc": 0.5,
            "note": "text",
            "flag": True,
        },
    ]
    text = json.dumps(rows[0]) + "\nnot json\n[1, 2]\n" + json.dumps(rows[1])
    path.write_text(text[:40])
    follower = ScalarsFollower(path)
    assert follower.poll() == []
    path.write_text(text)
    (first,) = follower.poll()
    assert (first.iter, first.max_iters, first.loss, first.memory, first.grad_norm) == (5, None, 11.6057, 9449.0, None)
    (second,) = follower.flush()  # the last line has no newline yet
    assert (second.iter, second.grad_norm, second.tflops, second.extra) == (20, 1.8634, 48.38, {"acc": 0.5})
    assert [e.iter for e in read_events(path)] == [5, 20]


LOGGY = st.sampled_from(
    [
        TS,
        "11/28 13:52:00 - mmengine - ERROR - ",
        "Iter(train) [ 5/40]  ",
        "Epoch(train) [1][5/40]  ",
        "lr: ",
        "1.0e-4",
        "eta: ",
        "1 day, 2:03:04",
        "  loss: ",
        "11.6",
        "memory: 9449  ",
        "nan",
        "Sample output:",
        "Traceback (most recent call last):",
        "[rank0]: ",
        '  File "x"',
        "KeyError: 'x'",
        "<|im_start|>user\n",
        "<|im_start|>assistant\n",
        "[INST]",
        "[/INST]",
        "<|User|>:",
        "<|Bot|>:",
        "resumed epoch: 0, iter: ",
        "Advance dataloader ",
        "Saving checkpoint at ",
        " iterations",
        "Load checkpoint from ",
        "\n",
        "\r",
        "\r\n",
        "\n\n",
        "你是谁",
        "\ufffd",
        "\x1b[31m",
        " ",
        ":",
        "[",
        "]",
    ]
)
TEXT = st.lists(st.one_of(LOGGY, st.text(max_size=8)), max_size=60).map("".join)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT, cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=8))
def test_fuzz_text_in_chunks_never_raises_and_matches_whole(text: str, cuts: list[int]) -> None:
    parser = LogParser()
    events = []
    bounds = sorted({0, len(text), *(c for c in cuts if c < len(text))})
    for a, b in zip(bounds, bounds[1:], strict=False):
        events += parser.feed(text[a:b])
    events += parser.flush()
    assert events == _feed_all(text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=300), TEXT.map(str.encode)), cut=st.integers(min_value=0, max_value=300))
def test_fuzz_bytes_through_the_followers_never_raise(tmp_path: Path, data: bytes, cut: int) -> None:
    for kind in (LogFollower, ScalarsFollower):
        path = tmp_path / f"fuzz-{kind.__name__}"
        path.write_bytes(data[:cut])
        follower = kind(path)
        events = follower.poll()
        path.write_bytes(data)
        events += follower.poll() + follower.flush()
        if kind is LogFollower:
            assert events == read_events(path)


def test_samples_after_the_final_save_belong_to_the_final_iteration() -> None:
    text = (
        "2026/11/28 15:10:10 - mmengine - INFO - Iter(train) [270/273]  lr: 1.0000e-05  loss: 0.0312\n"
        "2026/11/28 15:10:11 - mmengine - INFO - Saving checkpoint at 273 iterations\n"
        "2026/11/28 15:10:11 - mmengine - INFO - after_train in EvaluateChatHook.\n"
        "2026/11/28 15:10:12 - mmengine - INFO - Sample output:\n"
        "<s><|im_start|>user\n你是谁<|im_end|>\n<|im_start|>assistant\n我是小明<|im_end|>\n\n"
        "2026/11/28 15:10:13 - mmengine - INFO - done\n"
    )
    samples = [e for e in LogParser().feed(text) if isinstance(e, Sample)]
    assert [(s.iter, s.prompt, s.answer) for s in samples] == [(273, "你是谁", "我是小明")]
