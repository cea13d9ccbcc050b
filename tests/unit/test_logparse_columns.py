"""The columnar path (LogParser.feed_bytes: train lines in bulk into StepColumns) gives what the event path gives."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.runs.events import Event, Resumed, Started, TrainStep, TrainSteps, spread_steps
from engine.runs.logparse.bulk import TrainLineScanner
from engine.runs.logparse.columns import StepColumns
from engine.runs.logs import LogFollower, LogParser
from engine.runs.watch import RunState
from tests.unit.test_logs_fuzz import HEADS, log_text

FIXTURES = sorted(Path(__file__).resolve().parent.parent.joinpath("fixtures").glob("*.log"))
USUAL = (
    "Iter(train) [{i:>{w}}/{n}]  lr: {lr}  eta: {eta}  time: {a}  data_time: {b}  memory: {mem}  loss: {loss}  "
    "tflops: {c}  tokens_per_sec: {d}  grad_norm: {g}"
)
SHORT = "Iter(train) [{i:>{w}}/{n}]  lr: {lr}  grad_norm: {g}  loss: {loss}"
NUMBERS = st.one_of(
    st.floats(0, 1e5).map(lambda x: f"{x:.4f}"),
    st.floats(1e-12, 1e3).map(lambda x: f"{x:.4e}"),
    st.sampled_from(["nan", "inf", "-inf", "-0.0000", "0", "1.", ".5", "1e+22", "1e-23", "1_0", "12345678901234567",
                     "1234567890.123456", "9.9999e-308", "+1.5", "1e5", "1.5E-3", "0x1", "1..2", "--1", "١٢"]),
)  # fmt: skip
ETAS = st.one_of(
    st.integers(0, 10**6).map(lambda s: f"{s // 3600}:{s // 60 % 60:02}:{s % 60:02}"),
    st.integers(1, 12).map(lambda d: f"{d} day{'s' if d > 1 else ''}, 3:04:05"),
    st.sampled_from(["0:00:29", "100:00:00", "1 days, 1:02:03", "soon"]),
)


def _canon(events: list[Event]) -> list[str]:
    """Events as JSON text (a NaN equals a NaN, -0.0 differs from 0.0), batches spread into their steps."""
    return [json.dumps(e.to_json(), sort_keys=True, ensure_ascii=False) for e in spread_steps(events)]


def _by_events(data: bytes, cuts: list[int], flush: bool = True) -> list[Event]:
    """The event path, fed as LogFollower feeds it: each chunk decoded on its own."""
    parser, decoder = LogParser(), codecs.getincrementaldecoder("utf-8")(errors="replace")
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    events = [e for a, b in zip(bounds, bounds[1:]) for e in parser.feed(decoder.decode(data[a:b]))]
    return events + (parser.flush() if flush else [])


def _by_columns(data: bytes, cuts: list[int], flush: bool = True) -> list[Event]:
    """The columnar path, fed the raw bytes in the same chunks (in bulk however few lines a chunk completes)."""
    parser = LogParser()
    parser.few_lines = 0
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    events = [e for a, b in zip(bounds, bounds[1:]) for e in parser.feed_bytes(data[a:b])]
    return events + (parser.flush() if flush else [])


def test_every_fixture_reads_the_same_both_ways_and_the_train_lines_go_in_bulk() -> None:
    bulk = 0
    for path in FIXTURES:
        data = path.read_bytes()
        for cuts in ([], [1 << 20], list(range(0, len(data), 4093))):
            got = _by_columns(data, cuts)
            assert _canon(got) == _canon(_by_events(data, cuts)), (path.name, cuts[:2])
        whole = LogFollower(path, columns=True)
        events = whole.poll() + whole.flush()
        assert not any(isinstance(e, TrainStep) for e in events)  # every step came in a batch
        bulk += sum(len(e) for e in events if isinstance(e, TrainSteps) and isinstance(e.columns, StepColumns))
    assert bulk > 0


@st.composite
def train_run(draw) -> str:
    """Consecutive train lines of one layout with drawn numbers: usual ones, odd ones, some no float() reads."""
    n = draw(st.integers(1, 10**7))
    w = draw(st.sampled_from([len(str(n)), 1, 9]))
    template = draw(st.sampled_from([USUAL, SHORT]))
    head = draw(st.sampled_from([*HEADS, "[rank1]:" + HEADS[0], "\x00\x00" + HEADS[0]]))
    lines = []
    for _ in range(draw(st.integers(1, 12))):
        values = {k: draw(NUMBERS) for k in ("lr", "a", "b", "c", "d", "g", "loss")}
        i = draw(st.integers(0, n))
        lines.append(head + template.format(i=i, w=w, n=n, eta=draw(ETAS), mem=draw(st.integers(0, 10**16)), **values))
    return "\n".join(lines) + "\n"


@st.composite
def mixed_log(draw) -> bytes:
    """Runs of train lines between the fuzz test's records, with its prefixes, NUL runs and line ends."""
    parts = [draw(st.one_of(train_run(), log_text())) for _ in range(draw(st.integers(1, 6)))]
    text = "".join(p if p.endswith(("\n", "\r")) else p + "\n" for p in parts)
    text = draw(st.sampled_from([text, text.replace("\n", "\r\n"), text[:-1]]))
    return text.encode("utf-8")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=mixed_log(), chunks=st.lists(st.integers(0, 6000), max_size=6), cut=st.floats(0, 1))
def test_generated_logs_read_the_same_both_ways_whole_and_cut(data: bytes, chunks: list[int], cut: float) -> None:
    whole = _canon(_by_events(data, []))
    assert _canon(_by_columns(data, [])) == whole
    assert _canon(_by_columns(data, chunks)) == whole
    partial = _canon(_by_columns(data[: int(len(data) * cut)], chunks, flush=False))
    assert partial == whole[: len(partial)]


def test_a_long_line_is_cut_as_the_event_path_cuts_it() -> None:
    line = HEADS[0] + USUAL.format(i=5, w=2, n=40, lr="1e-4", eta="0:00:01", a=1, b=2, mem=3, loss=4, c=5, d=6, g=7)
    data = ((line + "\n") * 3 + line + " " * 70000 + "x" * 70000 + "\n" + (line + "\n") * 2).encode()
    for cuts in ([], [100, 70000, 150000], list(range(0, len(data), 999))):
        assert _canon(_by_columns(data, cuts)) == _canon(_by_events(data, cuts))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.builds(
            TrainStep,
            st.integers(-(2**70), 2**70),
            st.none() | st.integers(0, 2**64),
            st.none() | st.floats(allow_nan=True),
            st.none() | st.floats(),
            extra=st.dictionaries(st.sampled_from(["acc", "x"]), st.floats(allow_nan=False), max_size=1),
            at=st.none() | st.sampled_from(["", "11/28 13:52:00", "2026/11/28 14:00:52", "２０２６/11/28 14:00:52"]),
            epoch=st.none() | st.integers(0, 99),
        ),
        max_size=20,
    )
)
def test_step_columns_give_back_the_steps_put_in(steps: list[TrainStep]) -> None:
    cols = StepColumns()
    for step in steps:
        cols.append(step)
    assert [json.dumps(s.to_json()) for s in cols] == [json.dumps(s.to_json()) for s in steps]
    more = StepColumns()
    more.extend(cols, 1, max(len(cols) - 1, 1))
    assert [json.dumps(s.to_json()) for s in more] == [json.dumps(s.to_json()) for s in steps[1 : len(steps) - 1]]


def _state(events: list[Event]) -> RunState:
    state = RunState()
    for event in events:
        state.apply(event)
    return state


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=mixed_log(), chunks=st.lists(st.integers(0, 6000), max_size=4))
def test_run_state_from_batches_is_the_state_from_one_step_each(data: bytes, chunks: list[int]) -> None:
    events = _by_columns(data, chunks)
    starts = [Started("a.log"), *events[: len(events) // 2], Resumed(3), Started("b.log"), *events[len(events) // 2 :]]
    batched, each = _state(starts), _state(spread_steps(starts))
    for name in ("first_iter", "max_iters", "nonfinite_since", "start_step", "done_iter", "reached_max"):
        assert getattr(batched, name) == getattr(each, name), name
    assert _canon(batched.steps[:]) == _canon(each.steps[:])
    assert _canon([batched.last] if batched.last else []) == _canon([each.last] if each.last else [])


def _curve_one_by_one(steps: list[TrainStep], name: str) -> tuple[list[int], list[float]]:
    """What the curves widget keeps, step by step: a step at or before the newest held drops those from it on."""
    held: dict[int, TrainStep] = {}
    for step in steps:
        if held and step.iter <= next(reversed(held)):
            held = {it: s for it, s in held.items() if it < step.iter}
        held[step.iter] = step
    kept = [(it, getattr(s, name)) for it, s in held.items() if getattr(s, name) is not None]
    return [it for it, _ in kept], [v for _, v in kept]


@given(st.lists(st.tuples(st.integers(0, 30), st.none() | st.floats(0, 10)), max_size=40))
def test_a_curve_keeps_what_the_curves_widget_keeps(rows: list[tuple[int, float | None]]) -> None:
    steps = [TrainStep(it, loss=loss) for it, loss in rows]
    state = _state(steps)
    xs, ys = state.curve("loss")
    assert (xs.tolist(), ys.tolist()) == _curve_one_by_one(steps, "loss")


def test_equal_length_shapes_interleaved_with_samples_read_the_same_both_ways_and_in_bulk() -> None:
    head = "2026/11/28 14:00:52 - mmengine - INFO - "
    line = head + "Iter(train) [{i:>3}/100]  lr: 1.0000e-04  grad_norm: {g}  loss: {loss}"
    sample = (
        head + "Sample output:\n<s><|im_start|>user\n你是谁<|im_end|>\n<|im_start|>assistant\n我是小助手<|im_end|>\n\n"
    )
    usual = [line.format(i=i, g=g, loss=loss) for i, g, loss in ((5, "1.2345", "12.345"), (15, "12.345", "1.2345"),
             (100, "0.5000", "123.45"), (7, "9.9999", "99.999"))]  # fmt: skip
    assert len({len(u) for u in usual}) == 1  # one length, four shapes
    odd = [line.format(i=9, g="1.23a5", loss="12.345"), line.format(i=8, g="nan", loss="1.2345")]
    lines = []
    for n in range(40):
        lines.append(usual[n % 4] + "\n")
        if n % 3 == 0:
            lines.append(sample)
        if n % 5 == 0:
            lines.append(odd[n % 2] + "\n" + head + f"Saving checkpoint at {n} iterations\n")
    data = "".join(lines).encode()
    for cuts in ([], list(range(0, len(data), 777)), list(range(0, len(data), 61))):
        assert _canon(_by_columns(data, cuts)) == _canon(_by_events(data, cuts))
    scanner = TrainLineScanner()
    scanner.scan(data)  # learns the shapes
    starts, _, steps = scanner.scan(data)
    taken = {data[a : data.index(b"\n", a)].decode() for a in starts.tolist()}
    assert len(steps) == 40 and taken == set(usual)
    assert [s.iter for s in steps] == [(5, 15, 100, 7)[n % 4] for n in range(40)]
