"""`xtui data new|check|repeat`: the recipe's dataset written and checked from the command line; errors as one line."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tui.cli import main

ROW = {"conversation": [{"input": "你是谁", "output": "我是小测的小助手"}]}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from engine.demo.build import build_demo

    return build_demo(tmp_path_factory.mktemp("demo"), name="小测", cuda=False)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_new_writes_the_dataset_and_never_overwrites_without_force(capsys, tmp_path) -> None:
    out = tmp_path / "self.json"
    code, text, _ = _run(capsys, "data", "new", out, "--name", "小测", "--owner", "浦语", "--repeat", "2")
    assert code == 0 and f"wrote {out}: 24 records" in text and "我是小测，是浦语的小助手" in text
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert len(rows) == 24 and rows[0]["conversation"][0]["output"].startswith("我是小测，是浦语的小助手")
    code, _, err = _run(capsys, "data", "new", out, "--name", "别的", "--repeat", "1")
    assert code == 2 and err.count("\n") == 1 and "already exists (--force replaces it)" in err
    assert len(json.loads(out.read_text(encoding="utf-8"))) == 24
    code, _, _ = _run(capsys, "data", "new", out, "--name", "别的", "--repeat", "1", "--answer", "{name}!", "--force")
    assert code == 0 and json.loads(out.read_text(encoding="utf-8"))[0]["conversation"][0]["output"] == "别的!"


def test_new_mixes_a_general_file_by_ratio(capsys, tmp_path) -> None:
    general = tmp_path / "alpaca.json"
    general.write_text(json.dumps([{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(5)]))
    code, _, err = _run(capsys, "data", "new", tmp_path / "m.jsonl", "--name", "小测", "--mix", general)
    assert code == 2 and "--mix and --ratio go together" in err
    code, text, _ = _run(
        capsys, "data", "new", tmp_path / "m.jsonl", "--name", "小测", "--repeat", "1", "--mix", general, "--ratio", "1"
    )
    assert code == 0 and "5 general conversations" in text and "(asked for 12; the file has 5)" in text
    assert len((tmp_path / "m.jsonl").read_text(encoding="utf-8").splitlines()) == 17


def test_check_names_each_bad_record_and_exits_1(capsys, tmp_path) -> None:
    path = tmp_path / "d.jsonl"
    rows = [ROW, ROW, {"conversation": [{"input": "a"}]}, ROW, {"messages": []}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    code, text, err = _run(capsys, "data", "check", path)
    assert code == 1 and not err
    assert f"{path}: 5 records, 3 turns, conversation format (needs dataset_map_fn=None)" in text
    assert "problems in 2 records:" in text and "  record 3 (line 3): conversation[0].output is missing" in text
    assert "record 5 (line 5) is not" in text and "Traceback" not in text
    path.write_text(json.dumps(ROW, ensure_ascii=False) + "\n" + '{"conversation": [\n')
    code, text, _ = _run(capsys, "data", "check", path)
    assert code == 1 and "record 2 (line 2) is not JSON" in text and "the rest of the file was not checked" in text


def test_check_json_is_strict_and_complete(capsys, tmp_path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps([ROW, {"messages": [{"role": "user", "content": "x"}]}]), encoding="utf-8")
    code, text, _ = _run(capsys, "data", "check", path, "--json")
    found = json.loads(text)
    assert code == 1 and found["ok"] is False and found["report"]["format"] == "conversation"
    assert found["report"]["problems"][0]["number"] == 2 and found["report"]["path"] == str(path)


def test_a_missing_file_is_one_line(capsys, tmp_path) -> None:
    code, _, err = _run(capsys, "data", "check", tmp_path / "nope.json")
    assert code == 2 and err.count("\n") == 1 and "cannot read" in err


def test_check_with_the_config_counts_tokens_and_renders_records(capsys, demo) -> None:
    code, text, _ = _run(capsys, "data", "check", demo.data, "--config", demo.config)
    assert code == 0, text
    assert f"config {demo.config} sets dataset_map_fn=None: reads it" in text
    assert f"tokens (tokenizer of {demo.model}, template internlm2_chat, max_length 128):" in text
    assert "none longer than max_length" in text and "packed into ~" in text and "█" in text
    assert "  | <s><|im_start|>user\n  | 你是谁<|im_end|>\n  | <|im_start|>assistant\n  | ⟦我是小测的小助手" in text


def test_control_characters_in_records_are_printed_escaped(capsys, demo, tmp_path) -> None:
    path = tmp_path / "esc.jsonl"
    path.write_text(json.dumps({"conversation": [{"input": "\x1b]0;pwned\x07", "output": "ok"}]}) + "\n")
    code, text, _ = _run(capsys, "data", "check", path, "--config", demo.config)
    assert code == 0 and "\x1b" not in text and "\\x1b]0;pwned\\x07" in text


def test_a_config_in_another_format_exits_1(capsys, demo, tmp_path) -> None:
    path = tmp_path / "alpaca.jsonl"
    path.write_text(json.dumps({"instruction": "a", "input": "", "output": "b"}) + "\n")
    code, text, _ = _run(capsys, "data", "check", path, "--config", demo.config)
    assert code == 1 and "alpaca format (needs dataset_map_fn=alpaca_map_fn)" in text
    assert "sets dataset_map_fn=None: does not read it" in text


def test_llava_images_are_checked_and_repeat_writes_n_times(capsys, tmp_path) -> None:
    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "a.png")
    turns = [{"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "black"}]
    data = tmp_path / "llava.json"
    data.write_text(
        json.dumps([{"image": "a.png", "conversations": turns}, {"image": "b.png", "conversations": turns}], indent=1)
    )
    code, text, _ = _run(capsys, "data", "check", data)
    assert (
        code == 1
        and "llava format (needs dataset_map_fn=llava_map_fn)" in text
        and "record 1 (line 2): image cannot be used: no such file" in text
    )
    code, text, _ = _run(capsys, "data", "check", data, "--image-folder", tmp_path / "images")
    assert code == 1 and "images: 2 distinct" in text and "record 2 (line " in text and "record 1 " not in text
    code, text, _ = _run(capsys, "data", "repeat", data, tmp_path / "rep.json", "3")
    assert code == 0 and "6 records" in text and len(json.loads((tmp_path / "rep.json").read_text())) == 6
    code, _, err = _run(capsys, "data", "repeat", data, tmp_path / "rep.json", "3")
    assert code == 2 and "already exists" in err
