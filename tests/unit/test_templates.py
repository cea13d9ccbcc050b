"""SUFFIX_AS_EOS: which templates end an answer with the tokenizer's EOS, and the prompt laid out as XTuner trains it."""

from __future__ import annotations

from engine.xtuner.templates import Turn, render, template, templates

EOS, BOS = "<E>", "<B>"


def test_suffix_as_eos_is_read_from_xtuner_and_gemma_alone_of_the_suffixed_needs_eos() -> None:
    from xtuner.utils import PROMPT_TEMPLATE

    for name, raw in PROMPT_TEMPLATE.items():
        assert templates()[name].suffix_as_eos is raw.get("SUFFIX_AS_EOS", False), name
    suffixed_with_eos = [t.name for t in templates().values() if t.suffix and t.needs_eos]
    assert suffixed_with_eos == ["gemma"]


def _encode_fn_text(raw, history: list[Turn], prompt: str) -> str:
    """The text of XTuner's training tokens for these turns (template_map_fn, then encode_fn's BOS/EOS/SEP order)."""
    from xtuner.dataset.map_fns import template_map_fn

    conversation = [{"input": t.prompt, "output": t.answer} for t in history] + [{"input": prompt, "output": ""}]
    turns = template_map_fn({"conversation": conversation}, raw)["conversation"]
    text, needs_bos = "", False  # the first BOS is the tokenizer's own (add_special_tokens)
    for turn in turns[:-1]:
        text += (BOS if needs_bos else "") + turn["input"] + turn["output"]
        needs_bos = turn["need_eos_token"]
        text += (EOS if needs_bos else "") + turn["sep"]
    return text + (BOS if needs_bos else "") + turns[-1]["input"]


def test_render_puts_eos_and_bos_between_turns_where_xtuner_trains_them() -> None:
    from xtuner.utils import PROMPT_TEMPLATE

    history = [Turn("你是谁", "我是小测"), Turn("第二个问题", "第二个回答")]
    for name, raw in PROMPT_TEMPLATE.items():
        assert render(template(name), history, "第三", "", EOS, BOS) == _encode_fn_text(raw, history, "第三"), name


def test_gemma_history_is_spelled_out_and_internlm2_has_no_extra_tokens() -> None:
    gemma = render(template("gemma"), [Turn("a", "b")], "c", "", EOS, BOS)
    assert gemma == (
        f"<start_of_turn>user\na<end_of_turn>\n<start_of_turn>model\nb<end_of_turn>{EOS}\n"
        f"{BOS}<start_of_turn>user\nc<end_of_turn>\n<start_of_turn>model\n"
    )
    internlm2 = render(template("internlm2_chat"), [Turn("a", "b")], "c", "", EOS, BOS)
    assert EOS not in internlm2 and BOS not in internlm2
    assert render(None, [Turn("a", "b")], "c", "", EOS, BOS) == f"ab{EOS}{BOS}c"
