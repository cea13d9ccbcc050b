"""Damaged, cut or odd text read right: garbage before a timestamp, cut samples, multi-line exceptions, CRLF, GBK,
merge conflicts, very long lines, and paths that are FIFOs or links to /dev/zero."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from engine.runs.events import CheckpointSaved, RunError, Sample, TrainStep
from engine.runs.logs import LogFollower, LogParser, TextFollower, read_events
from tests.support import FIXTURES
from tests.support.waiting import returns_within

TS = "2026/11/28 14:10:03 - mmengine - INFO - "
AT = "2026/11/28 14:10:03"
NEWER = FIXTURES / "xtuner-0.2.0-cpu-newer.log"
# What Python prints when transformers' requires_backends fails (run here with sacremoses missing).
IMPORT_ERROR = """\
Traceback (most recent call last):
  File "/tmp/imp.py", line 9, in <module>
    FlaubertTokenizer()
  File "/tmp/imp.py", line 6, in __init__
    requires_backends(self, ["sacremoses"])
  File "/venv/lib/python3.11/site-packages/transformers/utils/import_utils.py", line 1678, in requires_backends
    raise ImportError("".join(failed))
ImportError:{SPACE}
FlaubertTokenizer requires the sacremoses library but it was not found in your environment. You can install it with pip:
`pip install sacremoses`. Please note that you may need to restart your runtime after installation.

""".format(SPACE=" ")
LLAMA3 = (
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n你是谁<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)


def _feed_all(text: str) -> list:
    parser = LogParser()
    return parser.feed(text) + parser.flush()


def test_garbage_or_nul_bytes_before_a_timestamp_do_not_hide_the_line() -> None:
    text = (
        f"\x00\x00\x00{TS}Iter(train) [5/40]  lr: 1e-4  loss: 1.0\n"
        f"Map: 100%|██████████| 9/9 \x1b[0m{TS}Saving checkpoint at 5 iterations\n"
    )
    step, saved = _feed_all(text)
    assert (step.iter, step.loss, step.at) == (5, 1.0, AT)
    assert saved == CheckpointSaved(5, AT)


def test_a_cut_sample_header_waits_and_is_marked_incomplete_at_the_end() -> None:
    parser = LogParser()
    assert parser.feed(f"{TS}Sample output:\n") == []
    assert parser.feed("<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n") == []
    assert parser.flush() == [Sample(0, "q", "", AT, complete=False)]
    parser = LogParser()
    parser.feed(f"{TS}Sample output:\n")
    assert parser.flush() == [Sample(0, "", "", AT, complete=False)]


def test_a_last_llama3_sample_keeps_its_answer_past_the_templates_blank_line() -> None:
    (ended,) = _feed_all(f"{TS}Sample output:\n{LLAMA3}我是小明<|eot_id|>\n")
    assert (ended.prompt, ended.answer, ended.complete) == ("你是谁", "我是小明", True)
    (cut,) = _feed_all(f"{TS}Sample output:\n{LLAMA3}我是小明，\n")
    assert (cut.answer, cut.complete) == ("我是小明，", False)
    (paragraphs,) = _feed_all(
        f"{TS}Sample output:\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\none\n\ntwo<|im_end|>\n"
    )
    assert paragraphs.answer == "one\n\ntwo"


def test_a_multi_line_exception_message_keeps_its_explanation() -> None:
    parser = LogParser()
    assert parser.feed(IMPORT_ERROR.removesuffix("\n")) == []  # the message may go on until its blank line
    (error,) = parser.feed("\n")
    assert error.cause == "traceback"
    assert error.message.startswith("ImportError: FlaubertTokenizer requires the sacremoses library")
    assert error.message.endswith("restart your runtime after installation.")
    (at_end,) = _feed_all(IMPORT_ERROR.rstrip("\n"))  # the text ends inside the message
    assert at_end.message == error.message


def test_crlf_gives_the_same_events(tmp_path: Path) -> None:
    whole = read_events(NEWER)
    path = tmp_path / "crlf.log"
    path.write_bytes(NEWER.read_bytes().replace(b"\n", b"\r\n"))
    assert read_events(path) == whole


def test_gbk_bytes_break_nothing(tmp_path: Path) -> None:
    path = tmp_path / "gbk.log"
    path.write_bytes(
        f"{TS}Sample output:\n".encode()
        + "<|User|>:你是谁\n<|Bot|>:我是小明</s>\n\n".encode("gbk")
        + f"{TS}Iter(train) [5/40]  lr: 1e-4  loss: 1.0\n".encode()
        + "中文".encode("gbk")
        + b"\n"
    )
    sample, step = read_events(path)
    assert isinstance(sample, Sample) and "\ufffd" in sample.answer + sample.prompt
    assert (step.iter, step.loss) == (5, 1.0)


def test_a_merge_conflicted_log_breaks_nothing(tmp_path: Path) -> None:
    ours = f"{TS}Iter(train) [5/40]  lr: 1e-4  loss: 1.0\n{TS}Sample output:\n<|User|>:q\n<|Bot|>:a</s>\n"
    theirs = f"{TS}Iter(train) [6/40]  lr: 1e-4  loss: 2.0\n"
    events = _feed_all(f"<<<<<<< HEAD\n{ours}=======\n{theirs}>>>>>>> other\n{TS}Saving checkpoint at 6 iterations\n")
    assert [type(e) for e in events] == [TrainStep, Sample, TrainStep, CheckpointSaved]
    assert (events[1].prompt, events[1].answer) == ("q", "a")


def test_long_lines_cost_linear_time() -> None:
    start = time.perf_counter()
    (step,) = _feed_all(f"{TS}Iter(train) [5/40]  lr: 1e-4  {'a' * 20_000}  loss: 2.0\n")
    assert time.perf_counter() - start < 0.5  # the old key/value regex took 2.9 s here
    assert step.iter == 5
    start = time.perf_counter()
    parser = LogParser()
    huge = "x" * (10 << 20)
    for i in range(0, len(huge), 1 << 20):
        parser.feed(huge[i : i + (1 << 20)])  # one 10 MB line arriving in 1 MiB chunks
    events = parser.feed(f"\n{TS}Iter(train) [7/40]  lr: 1e-4  {huge}\n{TS}Saving checkpoint at 7 iterations\n")
    events += parser.flush()
    assert time.perf_counter() - start < 5
    assert [type(e) for e in events] == [TrainStep, CheckpointSaved]


@pytest.mark.parametrize("follower", [LogFollower, TextFollower])
def test_a_fifo_or_a_device_at_the_log_path_is_skipped_without_blocking(tmp_path: Path, follower: type) -> None:
    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo)
    assert returns_within(follower(fifo).poll) == []
    zero = tmp_path / "zero.log"
    zero.symlink_to("/dev/zero")
    assert returns_within(follower(zero).poll) == []
    assert returns_within(lambda: read_events(fifo)) == []


def test_errors_keep_their_timestamp_and_no_event_is_lost_after_garbage() -> None:
    text = f"\x00\x00{TS.replace('INFO', 'ERROR')}/x/runner.py - train - 17 - it broke\n{TS}Saving checkpoint at 3 iterations\n"
    error, saved = _feed_all(text)
    assert isinstance(error, RunError) and (error.message, error.at) == ("it broke", AT)
    assert saved.iter == 3
