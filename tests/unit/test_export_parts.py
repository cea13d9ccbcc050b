"""What an export writes besides the model: the prompt template (xtuner's fields and a chat template) and the card."""

from __future__ import annotations

import json

import pytest

from engine.runs.events import Sample, TrainStep
from engine.runs.model_card import latest_samples, model_card
from engine.xtuner.model_template import CONFIG_COPY, TEMPLATE_FILE, chat_template, template_of_model, write_template
from engine.xtuner.templates import Turn, render, template, templates


@pytest.fixture(scope="module")
def tokenizer():
    """A word-level tokenizer: enough for transformers to render a chat template."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]")))


@pytest.mark.parametrize("name", list(templates()))
def test_the_chat_template_lays_out_a_conversation_as_xtuner_does(name, tokenizer) -> None:
    tpl = template(name)
    for system in ("", "你是小测"):
        messages = [{"role": "system", "content": system}] if system else []
        messages += [{"role": "user", "content": "你是谁"}, {"role": "assistant", "content": "我是小测"},
                     {"role": "user", "content": 'say "{hi}" \\n'}]  # fmt: skip
        shown = tokenizer.apply_chat_template(messages, chat_template=chat_template(tpl), tokenize=False)
        assert shown == render(tpl, [Turn("你是谁", "我是小测")], 'say "{hi}" \\n', system)


def test_a_model_folder_carries_its_template(tmp_path) -> None:
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 128}))
    write_template(tmp_path, template("qwen_chat"))
    settings = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert settings["model_max_length"] == 128 and settings["chat_template"] == chat_template(template("qwen_chat"))
    assert json.loads((tmp_path / TEMPLATE_FILE).read_text())["STOP_WORDS"] == ["<|im_end|>", "<|endoftext|>"]
    assert template_of_model(tmp_path) == "qwen_chat"
    converted = tmp_path / "adapter"
    converted.mkdir()
    (converted / CONFIG_COPY).write_text("prompt_template = PROMPT_TEMPLATE.llama3_chat\n")
    assert template_of_model(converted, tmp_path) == "llama3_chat" and template_of_model(tmp_path / "none") is None


def _sample(iteration: int, prompt: str, answer: str) -> Sample:
    return Sample(iteration, prompt, answer)


def test_the_card_says_where_the_model_comes_from_and_what_it_answered(tmp_path) -> None:
    from engine.demo.build import demo_config

    config = tmp_path / "config.py"
    config.write_text(demo_config(tmp_path / "tiny-llama", tmp_path / "data.jsonl", cuda=False))
    steps = [TrainStep(10, 273, loss=2.5), TrainStep(250, 273, loss=0.05), TrainStep(270, 273, loss=0.03)]
    samples = [_sample(100, "你是谁", "我是谁"), _sample(250, "你是谁", "我是小测"), _sample(250, "你好", "你好|`x`"),
               _sample(273, "你是谁", "later")]  # fmt: skip
    card = model_card("my-model", config, steps, samples, 250, 273, "internlm2_chat", {"r": 8, "lora_alpha": 16})
    assert card.base == str(tmp_path / "tiny-llama") and card.data == (str(tmp_path / "data.jsonl"),)
    assert card.loss == 0.05 and [s.answer for s in card.samples] == ["我是小测", "你好|`x`"]
    names = dict(card.settings)
    assert names["max_length"] == "128" and names["lr"] == "2e-3"
    assert not any("path" in n or "evaluation" in n for n in names)
    text = card.markdown()
    assert text.startswith("---\nlibrary_name: transformers\n") and f'base_model: "{tmp_path / "tiny-llama"}"' in text
    assert (
        "LoRA (r=8, alpha=16) merged into the base model" in text and "250 of 273 iterations; final loss 0.0500" in text
    )
    assert "## Sample answers (EvaluateChatHook, iteration 250)" in text and "> 我是小测" in text
    assert "| lr | `2e-3` |" in text and "`internlm2_chat`" in text and 'from_pretrained("my-model"' in text


def test_samples_are_the_last_evaluation_up_to_the_checkpoint() -> None:
    samples = [_sample(20, "a", "1"), _sample(40, "a", "2"), _sample(40, "b", "3"), _sample(40, "a", "4")]
    assert [s.answer for s in latest_samples(samples, 39)] == ["1"]
    assert [s.answer for s in latest_samples(samples, None)] == ["4", "3"] and latest_samples(samples, 5) == ()
