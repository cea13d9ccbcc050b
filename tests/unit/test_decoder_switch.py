"""The switching decoder on the CPU: answers start on the quick decoder, a compiled one (dynamo, for real, in its
background thread) takes over between answers, never within one, and greedy answers stay the same across it."""

from __future__ import annotations

import threading

import pytest

from engine.chat.decoding import (
    EagerDecoder,
    Sampling,
    StaticDecoder,
    SwitchingDecoder,
    compile_elsewhere,
    compiled,
)
from engine.chat.models import LoadOptions, ModelSource, SourceKind, load
from engine.chat.session import ChatSession
from engine.xtuner.templates import template

EAGER_DYNAMO = {"backend": "eager", "fullgraph": True}  # torch.compile's tracing, without inductor's 30 s of codegen
QUESTIONS = ("你是谁", "你好", "再说一遍")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """The demo's tiny model on the CPU, never stopping early (no EOS, no stop words)."""
    from engine.demo.build import build_demo

    model = build_demo(tmp_path_factory.mktemp("switch")).model
    loaded = load(ModelSource(SourceKind.BASE, model=model), LoadOptions(device="cpu", decoder="eager"))
    loaded.eos_ids = lambda: []
    return loaded


def _session(loaded) -> ChatSession:
    session = ChatSession(loaded, template("internlm2_chat"), sampling=Sampling(temperature=0, max_new_tokens=24))
    session.stop_words = lambda: ()
    return session


def _switching(loaded, gate: threading.Event | None = None, fail: str | None = None) -> SwitchingDecoder:
    """An eager quick decoder; the built one compiled with dynamo once `gate` opens (or failing with `fail`)."""

    def build(stop):
        if gate is not None:
            assert gate.wait(60)
        if fail:
            raise RuntimeError(fail)
        return compiled(loaded.model, EAGER_DYNAMO, stop)

    return SwitchingDecoder(EagerDecoder(loaded.model), build)


def _answers(session: ChatSession, questions=QUESTIONS) -> list[str]:
    """Each question answered in turn, as one conversation."""
    return ["".join(session.reply(q)) for q in questions]


def test_answers_start_quick_and_the_compiled_decoder_takes_over_between_them_with_the_same_text(loaded) -> None:
    reference = _answers(_session(loaded))  # the whole conversation on the eager decoder
    gate = threading.Event()
    decoder = loaded.decoder = _switching(loaded, gate)
    try:
        decoder.warm_up()
        assert decoder.building and decoder.status == "eager (compiling…)"
        session = _session(loaded)
        first = "".join(session.reply(QUESTIONS[0]))
        assert decoder.live is decoder.quick and decoder.built is None
        gate.set()
        assert decoder.wait(120) and decoder.failure is None, decoder.failure
        assert isinstance(decoder.built, StaticDecoder) and decoder.status == "eager (compiled: next answer)"
        rest = _answers(session, QUESTIONS[1:])
        assert decoder.live is decoder.built and decoder.status == "compiled" and decoder.switched_at == 2
        assert [first, *rest] == reference and all(reference)
    finally:
        gate.set()
        loaded.decoder = EagerDecoder(loaded.model)


def test_a_build_done_mid_answer_waits_for_the_answer_to_end(loaded) -> None:
    gate, made = threading.Event(), threading.Event()

    def build(stop):
        assert gate.wait(60)
        decoder = compiled(loaded.model, EAGER_DYNAMO, stop)
        made.set()
        return decoder

    decoder = loaded.decoder = SwitchingDecoder(EagerDecoder(loaded.model), build)
    try:
        decoder.warm_up()
        session = _session(loaded)
        pieces = iter(session.reply(QUESTIONS[0]))
        answer = next(pieces)  # the answer holds the decoder from here to its end
        gate.set()
        assert made.wait(120)
        assert not decoder.wait(0.5) and decoder.built is None  # compiled, its capture waiting for the answer
        answer += "".join(pieces)
        assert decoder.live is decoder.quick and decoder.wait(60) and decoder.built is not None
        assert "".join(session.reply(QUESTIONS[1])) and decoder.live is decoder.built
        session.reset()
        assert "".join(session.reply(QUESTIONS[0])) == answer  # the same question, compiled: the same answer
    finally:
        gate.set()
        loaded.decoder = EagerDecoder(loaded.model)


def test_a_failing_build_leaves_the_quick_decoder_answering_and_says_why(loaded) -> None:
    decoder = loaded.decoder = _switching(loaded, fail="InductorError: no working C compiler")
    try:
        decoder.warm_up()
        assert decoder.wait(30)
        assert decoder.status == "eager (compile failed)" and "no working C compiler" in decoder.failure
        assert "".join(_session(loaded).reply(QUESTIONS[0])) and decoder.live is decoder.quick
    finally:
        loaded.decoder = EagerDecoder(loaded.model)


def test_a_child_process_compiles_a_saved_model_first_and_nothing_else(loaded) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    assert compile_elsewhere(loaded.model, EAGER_DYNAMO, timeout_s=300)  # the child loaded it, compiled every span
    unsaved = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                           num_attention_heads=2))  # fmt: skip
    assert not compile_elsewhere(unsaved, EAGER_DYNAMO)  # no folder to load it from: compiled here


def test_closing_stops_the_build_before_its_capture_and_kills_its_child(loaded) -> None:
    """A dropped model's build must not go on (its capture would overlap the next model's GPU work): close() stops it
    waiting for the gate, before compiling here; a child process compiling is killed at once."""
    import time

    gate = threading.Event()
    decoder = _switching(loaded, gate)
    decoder.warm_up()
    assert decoder.building and not decoder.close(0)  # asked to stop; the build is still at the gate
    gate.set()
    assert decoder.close(60) and decoder.built is None and decoder.failure is None
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    begin = time.monotonic()
    assert not compile_elsewhere(loaded.model, EAGER_DYNAMO, stop)  # killed: torch's import alone takes longer
    assert time.monotonic() - begin < 5
