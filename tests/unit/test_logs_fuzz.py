"""Generated log variants: nothing raises, and a cut log fed in chunks gives a prefix of the whole log's events."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.runs.logs import LogParser

KEYS = ["lr: 1.0000e-04", "eta: 0:00:29", "time: 0.2465", "data_time: 0.0091", "memory: 9977", "loss: 1.0843",
        "grad_norm: 1.9794", "tflops: 58.1844", "tokens_per_sec: 4033.6550", "acc: 0.5"]  # fmt: skip
HEADS = ["2026/11/28 14:10:03 - mmengine - INFO - ", "11/28 13:52:00 - mmengine - \x1b[4m\x1b[37mINFO\x1b[0m - "]
TEMPLATES = [
    ("<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n", "<|im_end|>"),
    (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{q}<|eot_id|><|start_header_id|>assistant"
        "<|end_header_id|>\n\n",
        "<|eot_id|>",
    ),
    ("<|User|>:{q}\n<|Bot|>:", "</s>"),
]


@st.composite
def train_line(draw) -> str:
    """`Iter(train) [i/n]` or `Epoch(train) [e][i/n]` with some of the keys in some order."""
    n = draw(st.integers(1, 500))
    i = draw(st.integers(1, n))
    head = (
        f"Iter(train) [{i:>{len(str(n))}}/{n}]"
        if draw(st.booleans())
        else f"Epoch(train) [{draw(st.integers(1, 9))}][{i}/{n}]"
    )
    keys = draw(st.permutations(KEYS))[: draw(st.integers(0, len(KEYS)))]
    return "  ".join([head, *keys])


@st.composite
def sample(draw) -> str:
    """A `Sample output:` block in one of the templates, maybe without its end token or blank line."""
    prompt, end = draw(st.sampled_from(TEMPLATES))
    answer = draw(st.sampled_from(["我是小明", "one\n\ntwo", "", "\ufffd"]))
    tail = draw(st.sampled_from([end + "\n\n", "\n\n", "\n", end + "\n"]))
    return "Sample output:\n" + prompt.format(q="你是谁") + answer + tail


MESSAGES = st.one_of(
    train_line(), sample(),
    st.sampled_from([
        "Saving checkpoint at 20 iterations", "Saving checkpoint at 2 epochs", "resumed epoch: 1, iter: 22",
        "Load checkpoint from /w/epoch_1.pth", "Advance dataloader 20 steps", "before_train in EvaluateChatHook.",
        "after_train_iter in EvaluateChatHook.", "after_train in EvaluateChatHook.",
        "Config:\ntrain_cfg = dict(max_epochs=2, type='EpochBasedTrainLoop')\n        every_n_iters=10,",
        "Hooks will be executed in the following order:\nafter_train_iter:\n(NORMAL      ) EvaluateChatHook\n"
        "(BELOW_NORMAL) LoggerHook\n -------------------- ",
        "Epoch(val) [1][100/100]    accuracy/top1: 76.5000  time: 0.0200",
    ]),
)  # fmt: skip
PLAIN = st.sampled_from([
    "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    f()\nKeyError: 'x'",
    "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\nImportError: \nthe explanation\n",
    "[E ProcessGroupNCCL.cpp:458] [Rank 2] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1) ran",
    "E1128 14:05:00.123000 1234 torch/distributed/elastic/multiprocessing/api.py:869] failed (exitcode: 1) "
    "local_rank: 3 (pid: 5678) of binary: /usr/bin/python",
    "[2024-11-28 14:00:00,123] [INFO] [logging.py:128:log_dist] [Rank 0] step=10",
    "W1201 10:03:28.785000 21322 torch/distributed/run.py:982] ****", "  warnings.warn(", "", "<<<<<<< HEAD", "=======",
])  # fmt: skip


@st.composite
def log_text(draw) -> str:
    """A log of records and plain lines, with rank prefixes, NUL runs, CR or CRLF line ends."""
    parts = []
    for _ in range(draw(st.integers(1, 25))):
        if draw(st.integers(0, 3)):
            text = draw(st.sampled_from(HEADS)) + draw(MESSAGES)
            if draw(st.integers(0, 5)) == 0:
                text = "\x00" * draw(st.integers(1, 40)) + text
        else:
            text = draw(PLAIN)
        prefix = draw(st.sampled_from(["", "", "", "[rank1]:", "[default0]:", "[default1]:[rank1]: "]))
        parts.append("".join(prefix + line + "\n" for line in text.split("\n")))
    text = "".join(parts)
    return draw(st.sampled_from([text, text.replace("\n", "\r\n"), text.replace("\n", "\r", 1)]))


def _parse(text: str, cuts: list[int], flush: bool) -> list:
    parser = LogParser()
    events = []
    bounds = sorted({0, len(text), *(c for c in cuts if c < len(text))})
    for a, b in zip(bounds, bounds[1:], strict=False):
        events += parser.feed(text[a:b])
    return events + (parser.flush() if flush else [])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=log_text(), cut=st.floats(0, 1), chunks=st.lists(st.integers(0, 4000), max_size=6))
def test_a_cut_log_gives_a_prefix_of_the_whole_logs_events(text: str, cut: float, chunks: list[int]) -> None:
    whole = _parse(text, [], flush=True)
    assert _parse(text, chunks, flush=True) == whole
    cut_at = int(len(text) * cut)
    partial = _parse(text[:cut_at], chunks, flush=False)
    assert partial == whole[: len(partial)]
