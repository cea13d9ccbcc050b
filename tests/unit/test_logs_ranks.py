"""Several ranks in one console: per-rank prefixes, torchrun's and DeepSpeed's own lines, an error with its rank.

`xtuner-0.2.0-cpu-ranks-console.log` is a real `torchrun --nproc_per_node 2 --tee 3` run on CPU (gloo) where rank 1
failed an allocation at iteration 7 (tests/fixtures/make_reader_logs.py); the NCCL lines are in the form torch 2.x
prints them (as quoted in public bug reports).
"""

from __future__ import annotations

from engine.runs.events import RunError, Sample, TrainStep
from engine.runs.logs import LogParser, read_events
from tests.support import FIXTURES

TS = "2026/11/28 14:10:03 - mmengine - INFO - "
OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.95 GiB. GPU 3 has a total capacity of 139.72 GiB"
FRAMES = ['  File "/x/train.py", line 360, in main', "    runner.train()", '  File "/x/loop.py", line 9, in run']


def _feed_all(text: str) -> list:
    parser = LogParser()
    return parser.feed(text) + parser.flush()


def _errors(events: list) -> list[tuple[str, int | None]]:
    return [(e.cause, e.rank) for e in events if isinstance(e, RunError)]


def test_real_two_rank_console() -> None:
    events = read_events(FIXTURES / "xtuner-0.2.0-cpu-ranks-console.log")
    steps = [e for e in events if isinstance(e, TrainStep)]
    assert [s.iter for s in steps] == [5] and steps[0].max_iters == 11  # `[default0]:` before the timestamp
    assert [s.iter for s in events if isinstance(s, Sample)] == [0]
    errors = [e for e in events if isinstance(e, RunError)]
    assert [(e.cause, e.rank) for e in errors] == [
        ("traceback", 1),
        ("traceback", 0),
        ("rank_failed", 1),
        ("traceback", 1),
    ]
    assert "can't allocate memory" in errors[0].message and "Connection closed by peer" in errors[1].message
    assert errors[2].message == "rank 1 failed with exit code 1"
    assert errors[3].message.startswith("torch.distributed.elastic.multiprocessing.errors.ChildFailedError: ")


def test_interleaved_tracebacks_of_two_ranks_keep_their_rank() -> None:
    lines = []
    for frame in ["Traceback (most recent call last):", *FRAMES]:
        lines += [f"[rank3]: {frame}", f"[rank0]: {frame}"]
    lines += [f"[rank3]: {OOM}", "[rank0]: RuntimeError: Connection closed by peer"]
    errors = [e for e in _feed_all("\n".join(lines) + "\n") if isinstance(e, RunError)]
    assert [(e.cause, e.rank) for e in errors] == [("cuda_oom", 3), ("traceback", 0)]
    assert errors[0].message == OOM and "runner.train()" in errors[0].detail


def test_nccl_watchdog_timeouts_once_per_rank() -> None:
    work = "WorkNCCL(SeqNum=808, OpType=ALLREDUCE, NumelIn=9801523, NumelOut=9801523, Timeout(ms)=600000)"
    text = "".join(
        [
            f"[rank1]:[E626 06:24:44.903881913 ProcessGroupNCCL.cpp:616] [Rank 1] Watchdog caught collective operation "
            f"timeout: {work} ran for 600020 milliseconds before timing out.\n",
            "[rank1]:[E626 06:24:44.906457629 ProcessGroupNCCL.cpp:1785] [PG ID 0 PG GUID 0(default_pg) Rank 1] Exception "
            "(either an error or timeout) detected by watchdog at work: 808, last enqueued NCCL work: 811.\n",
            f"[E ProcessGroupNCCL.cpp:458] [Rank 0] Watchdog caught collective operation timeout: {work} ran for 1 ms.\n",
            f"[E ProcessGroupNCCL.cpp:458] [Rank 0] Watchdog caught collective operation timeout: {work} ran for 2 ms.\n",
            "Epoch 0:   6%|██     | 32040/500150 [6:28:43<94:39:17,  1.37it/s][E ProcessGroupNCCL.cpp:458] [Rank 7] "
            f"Watchdog caught collective operation timeout: {work} ran for 3 ms.\n",
        ]
    )
    errors = [e for e in _feed_all(text) if isinstance(e, RunError)]
    assert _errors(errors) == [("nccl_timeout", 1), ("nccl_timeout", 0), ("nccl_timeout", 7)]
    assert errors[0].message.startswith("[Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=808")


def test_torchrun_and_deepspeed_lines_are_not_sample_text() -> None:
    text = (
        "W1201 10:03:28.785000 21322 torch/distributed/run.py:982] *****************************************\n"
        "[2024-11-28 14:00:00,123] [INFO] [real_accelerator.py:219:get_accelerator] Setting ds_accelerator to cuda\n"
        f"{TS}Sample output:\n<|im_start|>user\n你是谁<|im_end|>\n<|im_start|>assistant\n我是小明\n"
        "[2024-11-28 14:00:09,001] [INFO] [logging.py:128:log_dist] [Rank 0] step=10, skipped=0, lr=[0.0002]\n"
        "[rank1]: stray stderr of another rank\n"
        f"{TS}Iter(train) [10/40]  lr: 1e-4  loss: 1.0\n"
    )
    sample, step = _feed_all(text)
    assert (sample.prompt, sample.answer, sample.complete) == ("你是谁", "我是小明", True)
    assert step.iter == 10


def test_an_error_record_from_a_rank_carries_it() -> None:
    (error,) = _feed_all(f"[rank2]:{TS.replace('INFO', 'ERROR')}/x/hook.py - after_iter - 3 - bad batch\n")
    assert (error.message, error.rank) == ("bad batch", 2)
