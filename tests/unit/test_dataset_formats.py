"""Dataset formats: detection, record-precise problems, LLaVA images, and token lengths as XTuner encodes them."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from engine.data.formats import DatasetFormat, detect, format_read_by, record_problems, to_conversation
from engine.data.records import DatasetUnreadable
from engine.data.report import inspect_dataset
from engine.demo import tinymodel
from engine.xtuner.config_check import dataset_problem
from engine.xtuner.templates import template
from engine.xtuner.token_lengths import _lengths, _pieces, histogram

CONVERSATION = {
    "conversation": [
        {"input": "你是谁", "output": "我是小测"},
        {"input": "再说一遍", "output": "我是小测", "system": "你是助手"},
    ]
}
OPENAI = {
    "messages": [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
}
ALPACA = {"instruction": "Add", "input": "1 and 2", "output": "3"}
LLAVA = {
    "image": "red.png",
    "conversations": [{"from": "human", "value": "What colour?\n<image>"}, {"from": "gpt", "value": "red"}],
}


def _jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


@pytest.mark.parametrize(
    "row, fmt, map_fn",
    [
        (CONVERSATION, "conversation", "None"),
        (OPENAI, "openai", "openai_map_fn"),
        (ALPACA, "alpaca", "alpaca_map_fn"),
        (LLAVA, "llava", "llava_map_fn"),
    ],
)
def test_each_format_is_told_apart_and_names_its_map_fn(row, fmt, map_fn) -> None:
    assert detect(row) == fmt and record_problems(row, DatasetFormat(fmt)) == []
    assert format_read_by(map_fn) == fmt and format_read_by(f"'xtuner.dataset.map_fns.{map_fn}'") == fmt
    assert detect({"text": "x"}) is None and detect([1]) is None and format_read_by("oasst1_map_fn") is None


def test_turns_are_what_the_map_fns_make() -> None:
    assert to_conversation(OPENAI, DatasetFormat.OPENAI) == [{"input": "hi", "output": "hello", "system": "S"}]
    assert to_conversation(ALPACA, DatasetFormat.ALPACA) == [{"input": "Add\n1 and 2", "output": "3", "system": ""}]
    assert to_conversation(LLAVA, DatasetFormat.LLAVA)[0]["input"] == "<image>\nWhat colour?"
    assert to_conversation(CONVERSATION, DatasetFormat.CONVERSATION)[1]["system"] == "你是助手"


@pytest.mark.parametrize(
    "row, fmt, expected",
    [
        ({"conversation": []}, "conversation", "conversation is empty"),
        ({"conversation": [{"input": "a"}]}, "conversation", "conversation[0].output is missing"),
        (
            {"conversation": [{"input": 5, "output": "b"}]},
            "conversation",
            "conversation[0].input is a number, not text",
        ),
        ({"conversation": ["a"]}, "conversation", "conversation[0] is text, not an object"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "openai", "messages[0].role is 'tool': openai_map_fn takes"),
        ({"messages": [{"role": "user", "content": "x"}]}, "openai", "has no assistant message"),
        ({"instruction": "a", "output": "b"}, "alpaca", "input is missing"),
        (
            {"image": "a.png", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "b"}]},
            "llava",
            "has an image and 0 <image> tokens",
        ),
        (
            {"conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "b"}]},
            "llava",
            "has no image but 1 <image>",
        ),
        ({"conversations": [{"from": "bot", "value": "b"}]}, "llava", "conversations[0].from is 'bot'"),
        (OPENAI, "conversation", 'is not {"conversation": [{"input": ..., "output": ...}]} but in the openai format'),
        (7, "alpaca", "is a number, not a JSON object"),
    ],
)
def test_problems_name_the_field_and_the_fault(row, fmt, expected) -> None:
    assert expected in " / ".join(str(p) for p in record_problems(row, DatasetFormat(fmt)))


def test_a_report_counts_records_and_lists_problems_by_record_and_line(tmp_path) -> None:
    rows = [CONVERSATION] * 30
    rows[4] = {"conversation": [{"input": "a"}]}
    rows[20] = OPENAI
    path = tmp_path / "d.json"
    path.write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")
    report = inspect_dataset(path)
    assert report.format == "conversation" and report.map_fn == "None" and report.records == 30
    assert report.turns == 28 * 2 and report.bad_records == 2 and report.complete and not report.ok
    first, second = (str(p) for p in report.problems)
    assert first.startswith("record 5 (line ") and first.endswith(": conversation[0].output is missing")
    assert second.startswith("record 21 (line ") and "but in the openai format" in second
    assert inspect_dataset(path, listed=1).problems == report.problems[:1]


def test_bad_json_part_way_is_a_problem_and_an_unopenable_file_an_error(tmp_path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ALPACA) + "\n" + '{"instruction": \n')
    report = inspect_dataset(path)
    assert report.records == 1 and not report.complete
    assert [str(p) for p in report.problems] == ["record 2 (line 2) is not JSON: Expecting value"]
    with pytest.raises(DatasetUnreadable, match="cannot read"):
        inspect_dataset(tmp_path / "missing.json")
    (tmp_path / "empty.jsonl").write_text("\n")
    assert not inspect_dataset(tmp_path / "empty.jsonl").ok
    assert dataset_problem(tmp_path / "empty.jsonl", needs_conversation=True).endswith("no records")


def test_llava_images_must_exist_and_open_each_checked_once(tmp_path) -> None:
    Image.new("RGB", (8, 8), (200, 0, 0)).save(tmp_path / "red.png")
    (tmp_path / "broken.png").write_bytes((tmp_path / "red.png").read_bytes()[:-30])  # cut off its end
    rows = [LLAVA] * 50 + [dict(LLAVA, image="broken.png"), dict(LLAVA, image="gone.png")]
    _jsonl(tmp_path / "llava.jsonl", rows)
    report = inspect_dataset(tmp_path / "llava.jsonl", image_folder=tmp_path)
    assert report.format == "llava" and report.images == 3 and report.bad_records == 2
    broken, gone = (str(p) for p in report.problems)
    assert broken.startswith("record 51 (line 51): image cannot be used: ") and "damaged or truncated" in broken
    assert gone.startswith("record 52 (line 52): image cannot be used: no such file") and "gone.png" in gone
    assert inspect_dataset(tmp_path / "llava.jsonl").images == 0  # no folder: images not looked at


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    tinymodel.train_tokenizer(["你是谁", "我是小测的小助手", "hello world", "Add 1 and 2"]).save_pretrained(folder)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("name", ["internlm2_chat", "default", "llama2_chat", "gemma", "qwen_chat"])
def test_token_lengths_are_those_of_xtuners_own_encoder(tokenizer, name) -> None:
    from xtuner.dataset.map_fns import alpaca_map_fn, openai_map_fn, template_map_fn
    from xtuner.dataset.utils import encode_fn
    from xtuner.utils import PROMPT_TEMPLATE

    for row, fmt, map_fn in (
        (CONVERSATION, "conversation", dict),
        (OPENAI, "openai", openai_map_fn),
        (ALPACA, "alpaca", alpaca_map_fn),
    ):
        example = template_map_fn(map_fn(json.loads(json.dumps(row))), PROMPT_TEMPLATE[name])
        expected = len(encode_fn(example, tokenizer, 10**6)["input_ids"])
        segments = _pieces(
            to_conversation(row, DatasetFormat(fmt)), template(name), tokenizer.bos_token, tokenizer.eos_token
        )
        assert _lengths(tokenizer, [segments]) == [expected], (name, fmt)
        assert "".join(s.text for s in segments if s.trained).startswith(
            to_conversation(row, DatasetFormat(fmt))[0]["output"]
        )


def test_histogram_bins_and_the_cut_bin() -> None:
    bins = histogram([10, 11, 12, 20, 30], max_length=100)
    assert (
        sum(b.count for b in bins) == 5 and bins[0].low == 10 and bins[-1].high == 30 and not any(b.cut for b in bins)
    )
    cut = histogram([10, 50, 150, 300], max_length=100)
    assert cut[-1] == type(cut[-1])(101, 300, 2, True) and sum(b.count for b in cut[:-1]) == 2 and cut[-2].high == 100
    assert histogram([], 10) == () and histogram([7, 7], 10)[0].count == 2
