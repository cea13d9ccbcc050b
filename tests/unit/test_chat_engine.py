"""The chat engine without training: templates, sampling, streaming text, device plans, conversions, sources."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine import locations
from engine.chat.decoding import ContextFull, Decoder, Sampling, choose
from engine.chat.device import FOUR_BIT, GIB, HEADROOM, OVERHEAD, memory_need, plan, plan_load, stored_dtype
from engine.chat.generation import Generation, StopReason, TextStream
from engine.chat.models import (
    BASE,
    LoadedModel,
    LoadOptions,
    ModelError,
    ModelSource,
    SourceKind,
    load,
)
from engine.chat.spec import NO_TEMPLATE, SpecError, build_spec
from engine.errors import ChatError
from engine.gpu import GpuProcess, GpuReading
from engine.xtuner import convert
from engine.xtuner.templates import (
    TemplateError,
    Turn,
    render,
    system_of_config,
    template,
    template_of_config,
    templates,
)

STOP = "<eoa>"  # splits into five tokens with the demo tokenizer


# --- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tok():
    """The demo's tokenizer, trained on the demo's texts (each CJK character its own token; others as bytes)."""
    from engine.demo import build as demo
    from engine.demo import tinymodel

    rows = demo.self_cognition_rows("小测", repeats=1)
    return tinymodel.train_tokenizer([t for r in rows for c in r["conversation"] for t in (c["input"], c["output"])])


class ScriptedDecoder(Decoder):
    """A stand-in decoder whose logits make greedy decoding pick the scripted ids, one per step."""

    def __init__(self, script: list[int], vocab: int, capacity: int = 4096, fail_at: int | None = None) -> None:
        self.script, self.vocab, self.capacity, self.fail_at = script, vocab, capacity, fail_at
        self.key = None
        self.steps = 0

    def _logits(self, n: int):
        import torch

        logits = torch.zeros(1, self.vocab)
        logits[0, self.script[min(n, len(self.script) - 1)]] = 10.0
        return logits

    def prefill(self, input_ids=None, inputs_embeds=None):
        self.steps = 0
        return self._logits(0)

    def step(self, token):
        self.steps += 1
        if self.fail_at is not None and self.steps >= self.fail_at:
            raise RuntimeError("boom in the forward pass")
        return self._logits(self.steps)


def _prompt(length: int = 3) -> dict:
    import torch

    return {"input_ids": torch.ones(1, length, dtype=torch.long)}


def _pieces(stream: TextStream, ids: list[int]) -> list[str]:
    return [stream.push(i) for i in ids]


# --- templates ------------------------------------------------------------------------------------------------


def test_templates_match_xtuners_prompt_template() -> None:
    from xtuner.utils import PROMPT_TEMPLATE

    ours = templates()
    assert list(ours) == list(PROMPT_TEMPLATE)
    for name, raw in PROMPT_TEMPLATE.items():
        tpl = ours[name]
        assert tpl.name == name
        assert tpl.instruction == raw["INSTRUCTION"], name
        assert tpl.system == raw.get("SYSTEM", ""), name
        assert tpl.suffix == raw.get("SUFFIX", ""), name
        assert tpl.sep == raw.get("SEP", ""), name
        assert tpl.stop_words == tuple(raw.get("STOP_WORDS", ())), name


def _xtuner_layout(raw, history: list[Turn], prompt: str, system: str) -> str:
    """The text XTuner trains on for these turns (template_map_fn + encode_fn's order), ending before the answer."""
    from xtuner.dataset.map_fns import template_map_fn

    conversation = [{"input": t.prompt, "output": t.answer} for t in history] + [{"input": prompt, "output": ""}]
    if system:
        conversation[0]["system"] = system
    turns = template_map_fn({"conversation": conversation}, raw)["conversation"]
    return "".join(t["input"] + t["output"] + t["sep"] for t in turns[:-1]) + turns[-1]["input"]


@pytest.mark.parametrize("system", ["", "你是小测的助手"])
def test_render_lays_out_turns_as_xtuner_trains(system: str) -> None:
    from xtuner.utils import PROMPT_TEMPLATE

    history = [Turn("你是谁", "我是小测"), Turn("第二个问题", "第二个回答")]
    for name, raw in PROMPT_TEMPLATE.items():
        if system and "SYSTEM" not in raw:
            continue  # xtuner itself cannot lay out a system text for such a template
        expected = _xtuner_layout(raw, history, "第三个问题", system)
        assert render(template(name), history, "第三个问题", system) == expected, name
        assert render(template(name), [], "问", system) == _xtuner_layout(raw, [], "问", system), name


def test_render_of_internlm2_is_spelled_out() -> None:
    tpl = template("PROMPT_TEMPLATE.internlm2_chat")
    text = render(tpl, [Turn("a", "b")], "c", system="S")
    assert text == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n"
        "<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render(None, [Turn("a", "b")], "c") == "abc"
    assert tpl.stop_words == ("<|im_end|>",)


def test_template_lookup_and_config_reading() -> None:
    with pytest.raises(TemplateError, match="no prompt template named 'nope'"):
        template("nope")
    source = 'prompt_template = PROMPT_TEMPLATE.qwen_chat\nSYSTEM = "be brief"\n'
    assert template_of_config(source) == "qwen_chat"
    assert system_of_config(source) == "be brief"
    assert template_of_config("prompt_template = PROMPT_TEMPLATE.nope\n") is None
    assert system_of_config("SYSTEM = SYSTEM_TEMPLATE.alpaca\n") == ""


# --- sampling ---------------------------------------------------------------------------------------------------


def test_sampling_problems_name_each_bad_setting() -> None:
    assert Sampling().problems() == []
    assert Sampling(temperature=0, top_k=0, top_p=1.0).problems() == []
    cases = {
        "temperature": Sampling(temperature=-0.1),
        "top-p": Sampling(top_p=0),
        "top-k": Sampling(top_k=-1),
        "max new tokens": Sampling(max_new_tokens=0),
        "repetition penalty": Sampling(repetition_penalty=0),
    }
    for word, sampling in cases.items():
        found = sampling.problems()
        assert len(found) == 1 and word in found[0], (word, found)
    assert len(Sampling(temperature=101, top_p=1.5, top_k=-2, max_new_tokens=0, repetition_penalty=-1).problems()) == 5


def _logits(values):
    import torch

    return torch.tensor([values], dtype=torch.float32)


def _gen(seed: int = 0):
    import torch

    return torch.Generator().manual_seed(seed)


def test_greedy_and_top_k_1_are_argmax() -> None:
    import torch

    torch.manual_seed(0)
    for _ in range(20):
        logits = torch.randn(1, 50)
        seen = torch.zeros(50, dtype=torch.bool)
        best = int(logits.argmax())
        assert int(choose(logits, seen, Sampling(temperature=0), _gen())) == best
        for seed in range(5):
            picked = choose(logits, seen, Sampling(temperature=5.0, top_k=1, top_p=1.0), _gen(seed))
            assert int(picked) == best
            assert int(choose(logits, seen, Sampling(temperature=5.0, top_k=0, top_p=1e-6), _gen(seed))) == best


def test_sampling_is_seeded_and_spreads_with_temperature() -> None:
    import torch

    logits = _logits([1.0, 1.1, 0.9, 1.05])
    seen = torch.zeros(4, dtype=torch.bool)
    hot = Sampling(temperature=1.0, top_k=0, top_p=1.0)
    picks = [int(choose(logits, seen, hot, _gen(seed))) for seed in range(40)]
    assert len(set(picks)) > 1
    assert picks == [int(choose(logits, seen, hot, _gen(seed))) for seed in range(40)]
    top2 = Sampling(temperature=1.0, top_k=2, top_p=1.0)
    assert {int(choose(logits, seen, top2, _gen(seed))) for seed in range(40)} <= {1, 3}


def test_repetition_penalty_changes_the_choice() -> None:
    import torch

    seen = torch.tensor([True, False, False])
    logits = _logits([3.0, 2.9, -1.0])
    assert int(choose(logits, seen, Sampling(temperature=0), _gen())) == 0
    assert int(choose(logits, seen, Sampling(temperature=0, repetition_penalty=1.2), _gen())) == 1
    negative = _logits([-1.0, -1.1, -5.0])  # a seen token's negative logit is pushed further down
    assert int(choose(negative, seen, Sampling(temperature=0, repetition_penalty=1.2), _gen())) == 1
    assert (
        int(choose(logits, torch.zeros(3, dtype=torch.bool), Sampling(temperature=0, repetition_penalty=1.2), _gen()))
        == 0
    )


# --- streaming text ---------------------------------------------------------------------------------------------


def test_stop_word_split_across_tokens_is_held_back_and_never_shown(tok) -> None:
    ids = tok.encode("我是小测" + STOP + "后面的话", add_special_tokens=False)
    assert len(tok.encode(STOP, add_special_tokens=False)) > 1
    stream = TextStream(tok, [STOP])
    pieces = _pieces(stream, ids)
    assert "".join(pieces) == stream.text == "我是小测"
    assert stream.stopped
    assert not any("<" in p for p in pieces)
    assert stream.flush() == "" and stream.text == "我是小测"


def test_held_back_text_that_is_no_stop_word_comes_out(tok) -> None:
    ids = tok.encode("答<eo然后", add_special_tokens=False)
    stream = TextStream(tok, [STOP])
    shown = []
    for token in ids:
        shown.append(stream.push(token))
        if "".join(shown) == "答":
            assert stream.text == "答"  # "<", "<e", "<eo" stay held back
    assert "".join(shown) == "答<eo然后" and not stream.stopped
    tail_ids = tok.encode("结束<eo", add_special_tokens=False)
    stream = TextStream(tok, [STOP])
    assert "".join(_pieces(stream, tail_ids)) == "结束"
    assert stream.flush() == "<eo"
    assert stream.text == "结束<eo"


def test_cjk_characters_are_never_shown_half(tok) -> None:
    text = "猫狗鱼是小测的"  # 猫狗鱼 are not in the demo's data: three byte tokens each
    ids = tok.encode(text, add_special_tokens=False)
    assert len(ids) > len(text)
    stream = TextStream(tok, ["<|im_end|>"])
    pieces = [p for p in _pieces(stream, ids) if p]
    assert "".join(pieces) + stream.flush() == text
    assert all("\ufffd" not in p for p in pieces)
    assert set(pieces) >= {"猫", "狗", "鱼"}


def test_special_stop_token_ends_the_text(tok) -> None:
    ids = tok.encode("我是小测<|im_end|>我", add_special_tokens=False)
    stream = TextStream(tok, ["<|im_end|>"])
    assert "".join(_pieces(stream, ids)) == "我是小测" and stream.stopped


# --- generation with a scripted decoder -------------------------------------------------------------------------


def test_generation_stops_on_a_stop_word_and_keeps_it_out(tok) -> None:
    script = tok.encode("我是小测" + STOP + "多余", add_special_tokens=False)
    gen = Generation(ScriptedDecoder(script, len(tok)), tok, _prompt(), Sampling(temperature=0), [STOP])
    assert "".join(gen) == "我是小测" == gen.text
    assert gen.reason is StopReason.STOP and gen.tokens <= len(script) - 2


def test_generation_stops_on_eos_and_at_max_new_tokens(tok) -> None:
    script = tok.encode("我是小测", add_special_tokens=False) + [tok.eos_token_id] + [237] * 5
    gen = Generation(
        ScriptedDecoder(script, len(tok)), tok, _prompt(), Sampling(temperature=0), eos_ids=[tok.eos_token_id]
    )
    assert "".join(gen) == "我是小测" and gen.reason is StopReason.STOP and gen.tokens == 5
    endless = [237] * 100
    gen = Generation(ScriptedDecoder(endless, len(tok)), tok, _prompt(), Sampling(temperature=0, max_new_tokens=7))
    assert "".join(gen) == "小" * 7 and gen.reason is StopReason.LENGTH and gen.tokens == 7


def test_context_full_when_the_prompt_fills_the_context(tok) -> None:
    decoder = ScriptedDecoder([237] * 100, len(tok), capacity=10)
    with pytest.raises(ContextFull, match="10 positions"):
        list(Generation(decoder, tok, _prompt(10), Sampling(temperature=0)))
    with pytest.raises(ContextFull):
        list(Generation(decoder, tok, _prompt(12), Sampling(temperature=0)))
    gen = Generation(decoder, tok, _prompt(7), Sampling(temperature=0))
    assert "".join(gen) == "小" * 3 and gen.reason is StopReason.LENGTH  # the answer is cut where the context ends


def test_cancel_stops_at_once(tok) -> None:
    cancel = threading.Event()
    gen = Generation(ScriptedDecoder([237] * 100, len(tok)), tok, _prompt(), Sampling(temperature=0), cancel=cancel)
    for n, _ in enumerate(gen, start=1):
        if n == 3:
            cancel.set()
    assert (
        gen.reason is StopReason.CANCELLED and gen.tokens == 3 and gen.text == "小" * 3
    )  # nothing decoded after the set


def test_error_in_the_decoder_surfaces(tok) -> None:
    gen = Generation(ScriptedDecoder([237] * 100, len(tok), fail_at=3), tok, _prompt(), Sampling(temperature=0))
    with pytest.raises(RuntimeError, match="boom"):
        list(gen)
    assert gen.reason is None


# --- device plan ------------------------------------------------------------------------------------------------


def _gpu(index: int, free_gib: float, total_gib: float = 80, processes=()) -> GpuReading:
    total = int(total_gib * GIB)
    return GpuReading(index, "H200", total - int(free_gib * GIB), total, 0, 30, 100.0, 700.0, tuple(processes))


def test_plan_picks_the_gpu_with_most_free_memory() -> None:
    chosen = plan([_gpu(0, 5), _gpu(1, 60)], need=10 * GIB)
    assert chosen.fits and chosen.device == "cuda:1" and "60.0 GB free" in chosen.message
    assert plan([_gpu(0, 5), _gpu(1, 60)], need=4 * GIB, want=0).device == "cuda:0"


def test_plan_that_does_not_fit_names_the_training_run_and_offers_alternatives() -> None:
    training = GpuProcess(pid=4242, used_memory=70 * GIB)
    stranger = GpuProcess(pid=77, used_memory=5 * GIB)
    gpus = [_gpu(0, 4, processes=[training, stranger]), _gpu(1, 30)]
    verdict = plan(gpus, need=20 * GIB, want=0, need_4bit=3 * GIB, owners={4242: "demo/work"})
    assert not verdict.fits and verdict.device == "cuda:0"
    assert "demo/work" in verdict.message and "70.0 GB" in verdict.message and "4.0 GB free" in verdict.message
    assert verdict.alternatives == ("cuda:1", "4bit", "cpu")
    tight = plan(gpus, need=40 * GIB, want=0, need_4bit=8 * GIB, owners={4242: "demo/work"})
    assert tight.alternatives == ("cpu",)
    nobody = plan(gpus, need=20 * GIB, want=0)
    assert not nobody.fits and "training run" not in nobody.message


def test_plan_without_gpus_is_the_cpu() -> None:
    verdict = plan([], need=GIB)
    assert verdict.device == "cpu" and verdict.fits
    missing = plan([_gpu(0, 50)], need=GIB, want=3)
    assert not missing.fits and missing.alternatives == ("cpu",)
    unknown = GpuReading(0, None, None, None, None, None, None, None)
    assert plan([unknown], need=GIB).fits and "N/A" in plan([unknown], need=GIB).message


class _TwoGpus:
    """GPU 0 nearly full (a training run holds it), GPU 1 with room."""

    def read(self, with_processes: bool):
        return [_gpu(0, 4, processes=[GpuProcess(4242, 70 * GIB)]), _gpu(1, 30)], None


def test_plan_load_reads_the_gpus_and_moves_the_options_where_asked(tmp_path) -> None:
    from tests.support.fakes import NoGpus

    model = _model_folder(tmp_path / "model")
    (model / "config.json").write_text('{"torch_dtype": "float16"}')
    with (model / "model.safetensors").open("wb") as weights:
        weights.truncate(8 * GIB)  # sparse: the size is what counts
    source = ModelSource(SourceKind.BASE, model=model)
    on_gpu_0 = LoadOptions(device="cuda:0")
    full = plan_load(source, on_gpu_0, {4242: "demo/work"}, _TwoGpus())
    assert not full.fits and full.alternatives == ("cuda:1", FOUR_BIT, "cpu") and "demo/work" in full.message
    assert full.options(on_gpu_0, "cuda:1") == LoadOptions(device="cuda:1")
    assert full.options(on_gpu_0, FOUR_BIT) == LoadOptions(device="cuda:0", bits=4)
    assert full.options(on_gpu_0, "cpu") == LoadOptions(device="cpu")
    roomy = plan_load(source, LoadOptions(), backend=_TwoGpus())
    assert roomy.fits and roomy.options(LoadOptions()) == LoadOptions(device="cuda:1")
    assert plan_load(source, LoadOptions(device="cpu"), backend=_TwoGpus()) is None
    assert plan_load(source, LoadOptions(), backend=NoGpus()) is None
    checkpoint = ModelSource(SourceKind.CHECKPOINT, checkpoint=tmp_path / "iter_5.pth", config=tmp_path / "c.py")
    assert plan_load(checkpoint, LoadOptions(), backend=_TwoGpus()) is None  # no model folder to weigh yet


def test_memory_need_scales_the_stored_weights(tmp_path) -> None:
    (tmp_path / "config.json").write_text('{"torch_dtype": "float32"}')
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 4_000_000)
    (tmp_path / "notes.txt").write_bytes(b"\0" * 1_000_000)  # not weights
    assert stored_dtype(tmp_path) == "float32"
    assert memory_need(tmp_path, "float32") == int(4_000_000 * HEADROOM) + OVERHEAD
    assert memory_need(tmp_path, "float16") == int(2_000_000 * HEADROOM) + OVERHEAD
    assert OVERHEAD < memory_need(tmp_path, "float16", bits=4) < memory_need(tmp_path, "float16")
    (tmp_path / "config.json").write_text('{"torch_dtype": "bfloat16"}')
    assert memory_need(tmp_path, "float16") == int(4_000_000 * HEADROOM) + OVERHEAD
    (tmp_path / "config.json").write_text("not json")
    assert stored_dtype(tmp_path) == "float32"


# --- conversions ------------------------------------------------------------------------------------------------


def test_conversion_inputs_are_checked_before_anything_runs(tmp_path) -> None:
    config = tmp_path / "config.py"
    config.write_text("x = 1\n")
    ckpt = tmp_path / "iter_1.pth"
    ckpt.write_bytes(b"not really")
    out = tmp_path / "out"
    with pytest.raises(convert.ConvertError, match="config not found"):
        convert.pth_to_hf(tmp_path / "nope.py", ckpt, out)
    with pytest.raises(convert.ConvertError, match="checkpoint not found"):
        convert.pth_to_hf(config, tmp_path / "iter_2.pth", out)
    with pytest.raises(convert.ConvertError, match="no config.json"):
        convert.merge(tmp_path, tmp_path, out)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(convert.ConvertError, match="no adapter_config.json"):
        convert.merge(tmp_path, tmp_path, out)
    with pytest.raises(convert.ConvertError, match="not readable"):
        convert.checkpoint_hf(config, tmp_path / "iter_3.pth")
    assert not out.exists()


def test_an_existing_folder_is_never_overwritten(tmp_path) -> None:
    config = tmp_path / "config.py"
    config.write_text("x = 1\n")
    ckpt = tmp_path / "iter_1.pth"
    ckpt.write_bytes(b"x")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(convert.ConvertError, match="already exists"):
        convert.pth_to_hf(config, ckpt, out)
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(convert.ConvertError, match="already exists"):
        convert.merge(tmp_path / "base", tmp_path / "adapter", out)
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"] and (out / "mine.txt").read_text() == "keep"


def test_a_failing_conversion_leaves_no_partial_folder(tmp_path) -> None:
    config = tmp_path / "config.py"
    config.write_text('raise RuntimeError("this config is broken")\n')
    ckpt = tmp_path / "iter_1.pth"
    ckpt.write_bytes(b"x")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(convert.ConvertError, match="(?s)pth_to_hf failed.*this config is broken"):
        convert.pth_to_hf(config, ckpt, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XTUI_CACHE", str(tmp_path / "c"))
    assert locations.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("XTUI_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert locations.cache_dir() == tmp_path / "xdg" / "xtui"


# --- model sources and loaded models ----------------------------------------------------------------------------


def _model_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_model_source_problems_for_each_kind(tmp_path) -> None:
    model = _model_folder(tmp_path / "model")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    llava = tmp_path / "llava"
    (llava / "projector").mkdir(parents=True)
    nothing = tmp_path / "nothing"

    for kind in (SourceKind.BASE, SourceKind.MERGED):
        assert ModelSource(kind, model=model).problems() == []
        assert "no config.json" in ModelSource(kind, model=nothing).problems()[0]
        assert "no config.json" in ModelSource(kind).problems()[0]
    assert ModelSource(SourceKind.ADAPTER, model=model, adapter=adapter).problems() == []
    assert "no adapter_config.json" in " ".join(
        ModelSource(SourceKind.ADAPTER, model=model, adapter=nothing).problems()
    )
    assert len(ModelSource(SourceKind.ADAPTER, model=nothing).problems()) == 2
    ckpt = tmp_path / "iter_5.pth"
    ckpt.write_bytes(b"x")
    config = tmp_path / "config.py"
    config.write_text("x = 1\n")
    assert ModelSource(SourceKind.CHECKPOINT, checkpoint=ckpt, config=config).problems() == []
    found = ModelSource(SourceKind.CHECKPOINT, checkpoint=tmp_path / "iter_9.pth").problems()
    assert len(found) == 2 and "checkpoint not found" in found[0] and "config not found" in found[1]
    assert ModelSource(SourceKind.LLAVA, model=model, llava=llava, visual_encoder=tmp_path).problems() == []
    assert "visual encoder" in ModelSource(SourceKind.LLAVA, model=model, llava=llava).problems()[0]
    assert "no projector/" in ModelSource(SourceKind.LLAVA, model=model, llava=nothing).problems()[0]
    assert ModelSource(SourceKind.CHECKPOINT, checkpoint=ckpt, config=config).label == "checkpoint: iter_5.pth"
    assert ModelSource(SourceKind.ADAPTER, model=model, adapter=adapter).label == "adapter: adapter"


def test_load_options_problems_name_each_bad_choice() -> None:
    assert LoadOptions().problems() == [] and LoadOptions(device="cuda:1", dtype="bfloat16", bits=4).problems() == []
    found = LoadOptions(device="gpu", dtype="int8", bits=8, decoder="fastest").problems()
    assert [p.split()[0] for p in found] == ["device", "dtype", "bits", "decoder"]


def test_chat_errors_are_chat_errors_not_value_errors() -> None:
    from engine.chat.images import ImageError
    from engine.chat.llava import LlavaError
    from engine.chat.transcripts import TranscriptError

    for error in (ModelError, LlavaError, ContextFull, TranscriptError, ImageError, SpecError):
        assert issubclass(error, ChatError) and not issubclass(error, ValueError), error


def test_load_refuses_what_cannot_work_before_loading(tmp_path) -> None:
    with pytest.raises(ModelError, match="no config.json"):
        load(ModelSource(SourceKind.BASE, model=tmp_path / "nothing"))
    model = _model_folder(tmp_path / "model")
    with pytest.raises(ModelError, match="4-bit loading needs a GPU"):
        load(ModelSource(SourceKind.BASE, model=model), LoadOptions(device="cpu", bits=4))
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA device"):
            load(ModelSource(SourceKind.BASE, model=model), LoadOptions(device="cuda:0"))
    with pytest.raises(ModelError, match="cannot load"):
        load(ModelSource(SourceKind.BASE, model=model), LoadOptions(device="cpu"))


class _FakeTokenizer:
    eos_token_id = 2


class _FakeGenerationConfig:
    def __init__(self) -> None:
        self.eos_token_id = [2, 5]


class _FakeModel:
    generation_config = _FakeGenerationConfig()


def test_loaded_model_eos_and_variants_without_adapters(tmp_path) -> None:
    loaded = LoadedModel(_FakeModel(), _FakeTokenizer(), ModelSource(SourceKind.BASE, model=tmp_path), "cpu")
    assert loaded.eos_ids() == [2, 5]
    with loaded.variant(BASE):  # nothing to switch off: the model as it is
        pass
    with pytest.raises(ModelError, match="no adapter_config.json"):
        loaded.add_adapter("second", tmp_path)
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelError, match="has no adapter"):
        loaded.add_adapter("second", tmp_path)


def test_ab_takes_a_second_adapter_not_a_whole_model(tmp_path) -> None:
    loaded = LoadedModel(_FakeModel(), _FakeTokenizer(), ModelSource(SourceKind.BASE, model=tmp_path), "cpu")
    said = []
    with pytest.raises(ModelError, match="merged: model is a whole model"):
        loaded.add_compare(ModelSource(SourceKind.MERGED, model=tmp_path / "model"), said.append)
    assert said == ["loading merged: model for A/B"]


# --- what to chat with: one builder for the command line and the setup form ----------------------------------

RUN_CONFIG = "prompt_template = PROMPT_TEMPLATE.qwen_chat\nSYSTEM = '你是小测的助手'\n"


def _run(root: Path, *iters: int, config: str | None = RUN_CONFIG) -> Path:
    """A work dir as `xtuner train` leaves it: a log folder, the dumped config and `iter_N.pth` checkpoints."""
    import torch

    run = (root / "work").resolve()
    (run / "20261128_140000").mkdir(parents=True)
    (run / "20261128_140000" / "20261128_140000.log").write_text("")
    if config is not None:
        (run / "qwen_lora.py").write_text(config)
    for n in iters:
        torch.save({"iter": n}, run / f"iter_{n}.pth")
    return run


def test_a_run_chats_with_its_latest_good_checkpoint_in_its_configs_template_and_system(tmp_path) -> None:
    run = _run(tmp_path, 100, 200)
    (run / "iter_200.pth").write_bytes(b"cut short")  # the newest is broken: the one before it is chatted with
    spec = build_spec(run=run)
    assert spec.source == ModelSource(
        SourceKind.CHECKPOINT, checkpoint=run / "iter_100.pth", config=run / "qwen_lora.py"
    )
    assert (spec.template, spec.system, spec.compare) == ("qwen_chat", "你是小测的助手", None)
    chosen = build_spec(run=run, template="internlm2_chat", system="")
    assert (chosen.template, chosen.system) == ("internlm2_chat", "")
    assert build_spec(run=run, template=NO_TEMPLATE).template is None


def test_checkpoints_named_relative_to_a_run_are_found_in_it(tmp_path, monkeypatch) -> None:
    run = _run(tmp_path, 100, 200)
    monkeypatch.chdir(tmp_path)  # not the run
    spec = build_spec(run=run, checkpoint=Path("iter_100.pth"), compare=Path("iter_200.pth"))
    assert spec.source.checkpoint == run / "iter_100.pth"
    assert spec.compare == ModelSource(
        SourceKind.CHECKPOINT, checkpoint=run / "iter_200.pth", config=run / "qwen_lora.py"
    )
    (tmp_path / "iter_300.pth").write_bytes(b"x")  # not in the run but here: this one
    assert build_spec(run=run, checkpoint=Path("iter_300.pth")).source.checkpoint == tmp_path.resolve() / "iter_300.pth"
    form = build_spec(SourceKind.CHECKPOINT, checkpoint=run / "iter_100.pth", template="qwen_chat")
    assert form == build_spec(run=run, checkpoint=Path("iter_100.pth"))  # the checkpoint's run gives the config


def test_the_paths_given_say_the_kind(tmp_path, monkeypatch) -> None:
    model = _model_folder(tmp_path / "model")
    adapters = [tmp_path / "adapter-a", tmp_path / "adapter-b"]
    for adapter in adapters:
        adapter.mkdir()
        (adapter / "adapter_config.json").write_text("{}")
    llava = tmp_path / "llava"
    (llava / "projector").mkdir(parents=True)
    (llava / "visual_encoder").mkdir()
    monkeypatch.chdir(tmp_path)
    base = build_spec(model=Path("model"))
    assert base == build_spec(SourceKind.BASE, model=model)
    assert base.source == ModelSource(SourceKind.BASE, model=model) and base.template == "internlm2_chat"
    assert build_spec(SourceKind.MERGED, model=model).source.kind is SourceKind.MERGED
    assert build_spec(model=model, llava=llava).source == ModelSource(SourceKind.LLAVA, model=model, llava=llava)
    ab = build_spec(model=model, adapter=adapters[0], compare=Path("adapter-b"))
    assert ab.source == ModelSource(SourceKind.ADAPTER, model=model, adapter=adapters[0])
    assert ab.compare == ModelSource(SourceKind.ADAPTER, model=model, adapter=adapters[1])


def test_bad_input_is_a_one_line_spec_error_saying_what_to_change(tmp_path) -> None:
    model = _model_folder(tmp_path / "model")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    run = _run(tmp_path / "run", 100)
    cases = [
        (
            {"kind": "lora", "model": model},
            "unknown model kind 'lora' (one of base, adapter, merged, checkpoint, llava)",
        ),
        ({"model": tmp_path / "nothing"}, "not a model folder (no config.json)"),
        ({"kind": SourceKind.BASE, "model": model, "adapter": adapter}, "adapter folder not used with kind base"),
        ({"model": model, "compare": adapter}, "A/B second not used with kind base (it takes: model folder)"),
        ({"run": run, "adapter": adapter}, "adapter folder not used with kind checkpoint"),
        ({"kind": SourceKind.CHECKPOINT}, "a checkpoint chat needs a checkpoint or a run's work dir"),
        ({"run": _run(tmp_path / "new")}, "has no complete checkpoint yet"),
        ({"run": _run(tmp_path / "bare", 100, config=None)}, "no config found for"),
        ({"run": run, "checkpoint": Path("iter_9.pth")}, f"checkpoint not found: {run / 'iter_9.pth'}"),
        ({"run": run, "compare": adapter}, "A/B beside a checkpoint takes another checkpoint"),
        ({"model": model, "options": LoadOptions(device="gpu")}, "device must be auto, cpu or cuda:N (not 'gpu')"),
        ({"model": model, "options": LoadOptions(decoder="fastest")}, "decoder must be one of auto, eager"),
        ({"model": model, "template": "nope"}, "no prompt template named 'nope'; xtuner has: default,"),
    ]
    for arguments, words in cases:
        with pytest.raises(SpecError) as caught:
            build_spec(**arguments)
        assert words in str(caught.value) and "\n" not in str(caught.value), arguments


def test_a_failing_compile_falls_back_to_cuda_graphs_and_says_so(monkeypatch) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from engine.chat import decoding
    from engine.chat.models import ready_decoder

    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, max_position_embeddings=64))  # fmt: skip
    warmed = []

    def warm_up(decoder, steps: int = 4) -> None:
        warmed.append(decoder.mode)
        if decoder.mode == "compile":
            raise RuntimeError("InductorError: no working C compiler")

    monkeypatch.setattr(decoding, "warm_up", warm_up)
    said = []
    decoder = ready_decoder(model, "compile", said.append)
    assert decoder.mode == "graph" and warmed == ["compile", "graph"]
    assert "compiling" in said[0] and "torch.compile failed" in said[1] and "no working C compiler" in said[1]
    assert isinstance(decoding.make_decoder(model), decoding.EagerDecoder)  # auto on the CPU
    with pytest.raises(ValueError, match="decoder must be one of"):
        decoding.make_decoder(model, "fastest")


@pytest.mark.parametrize("kv_heads", [2, 4])
def test_eager_decoder_matches_hf_attention_past_the_caches_first_room(kv_heads: int, monkeypatch) -> None:
    """The growing cache and grouped attention give HF's logits, token after token, across a buffer doubling."""
    import torch
    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from engine.chat.decoding import EagerDecoder
    from engine.chat.kv_cache import GROUPED_SDPA, ROOM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=kv_heads,
                                         max_position_embeddings=1024, attn_implementation="sdpa")).eval()  # fmt: skip
    prompt = torch.randint(0, 64, (1, 30))
    decoder = EagerDecoder(model)
    assert model.config._attn_implementation == GROUPED_SDPA  # this model's setting; HF's own entry stays
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is sdpa_attention_forward
    grouped, calls = ALL_ATTENTION_FUNCTIONS[GROUPED_SDPA], []
    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS, GROUPED_SDPA, lambda *a, **kw: calls.append(1) or grouped(*a, **kw))
    with torch.inference_mode():
        ours = [decoder.prefill(input_ids=prompt)]
        tokens = [ours[0].argmax(-1)]
        for _ in range(ROOM):
            ours.append(decoder.step(tokens[-1]))
            tokens.append(ours[-1].argmax(-1))
        model.config._attn_implementation = "eager"  # HF's plain attention, heads repeated, over its DynamicCache
        cache = DynamicCache()
        theirs = [model(input_ids=prompt, past_key_values=cache).logits[:, -1]]
        theirs += [model(input_ids=t.view(1, 1), past_key_values=cache).logits[:, -1] for t in tokens[:-1]]
    assert decoder._cache.get_seq_length() == ROOM + 30 == cache.get_seq_length()
    assert len(calls) == 2 * (ROOM + 1)  # both layers, the prompt and every step, ran the grouped attention
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert torch.allclose(a, b, atol=1e-5), step


def test_a_model_on_other_attention_keeps_it() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from engine.chat.decoding import EagerDecoder

    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, attn_implementation="eager"))  # fmt: skip
    EagerDecoder(model)
    assert model.config._attn_implementation == "eager"


def test_static_steps_read_their_span_of_the_cache_match_hf_and_compile_once(monkeypatch) -> None:
    """A step (and the prefill) reads the first 256 or 512 positions of a 1024 cache, not all, with HF's logits,
    across the change of span; compiled, the span is a dynamic size: one frame for all spans."""
    import torch
    from torch._dynamo.testing import CompileCounter
    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from engine.chat.decoding import StaticDecoder
    from engine.chat.kv_cache import GROUPED_SDPA

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=1024, attn_implementation="sdpa")).eval()  # fmt: skip
    prompt = torch.randint(0, 64, (1, 30))
    counter = CompileCounter()
    plain = StaticDecoder(model, "graph")
    compiled = StaticDecoder(model, "compile", compile_options={"backend": counter, "fullgraph": True})
    assert list(plain._spans) == [256, 512, 1024]
    grouped, read = ALL_ATTENTION_FUNCTIONS[GROUPED_SDPA], []

    def spy(*args, kv_span=None, **kwargs):
        read.append(None if kv_span is None else kv_span.shape[0])
        return grouped(*args, kv_span=kv_span, **kwargs)

    runs = []
    for decoder in (plain, compiled):
        with torch.inference_mode(), monkeypatch.context() as patch:
            if decoder is plain:
                patch.setitem(ALL_ATTENTION_FUNCTIONS, GROUPED_SDPA, spy)
            ours = [decoder.prefill(input_ids=prompt)]
            tokens = [ours[0].argmax(-1)]
            for _ in range(250):
                ours.append(decoder.step(tokens[-1]))
                tokens.append(ours[-1].argmax(-1))
        runs.append((ours, tokens))
    assert read[:2] == [256, 256] and set(read[2:]) == {256, 512} and read.count(512) == 2 * (30 + 250 - 256)
    assert counter.frame_count == 1
    with torch.inference_mode():
        model.config._attn_implementation = "eager"  # HF's plain attention over its DynamicCache
        cache = DynamicCache()
        tokens = runs[0][1]
        theirs = [model(input_ids=prompt, past_key_values=cache).logits[:, -1]]
        theirs += [model(input_ids=t.view(1, 1), past_key_values=cache).logits[:, -1] for t in tokens[:-1]]
    for ours, ids in runs:
        assert [int(t) for t in ids] == [int(t) for t in tokens]
        for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert torch.allclose(a, b, atol=1e-5), step
