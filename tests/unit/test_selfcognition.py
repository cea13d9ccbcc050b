"""The self-cognition generator: answers from a template, repeats, mixing a general dataset, files never clobbered."""

from __future__ import annotations

import json

import pytest

from engine.data import selfcognition as sc
from engine.data.records import DatasetError, records, repeat_records, write_records
from engine.data.selfcognition import SelfCognitionError


def test_answers_fill_the_template_with_name_and_owner() -> None:
    assert sc.answer("小测") == "我是小测的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦"
    assert sc.answer("小测", owner="浦语") == "我是小测，是浦语的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦"
    assert sc.answer("Ada", "Bo", "I am {name}, {owner}'s {{assistant}}") == "I am Ada, Bo's {assistant}"


def test_the_default_answer_names_internlm2_1_8b_only_for_that_model(tmp_path) -> None:
    for model in ("internlm/internlm2-chat-1_8b", "./models/internlm2_chat_1.8b", ""):  # "": the model is not known
        assert "书生·浦语的1.8B大模型" in sc.answer("小测", model=model)
    for model in ("tiny-llama", "Qwen/Qwen2.5-0.5B-Instruct", "internlm/internlm2-chat-7b"):
        assert sc.answer("小测", model=model) == "我是小测的小助手哦"
        assert sc.answer("小测", "浦语", model=model) == "我是小测，是浦语的小助手哦"
    assert sc.answer("Ada", template="I am {name}", model="tiny-llama") == "I am Ada"  # a template is kept as given
    written = sc.write_self_cognition(tmp_path / "d.json", "小测", 1, model="tiny-llama")
    assert written.answer == "我是小测的小助手哦"
    assert {r["conversation"][0]["output"] for r in json.loads(written.path.read_text(encoding="utf-8"))} == {
        "我是小测的小助手哦"
    }


@pytest.mark.parametrize(
    "template, owner, message",
    [
        ("I am {nam}", "", r"not \{nam\}"),
        ("I am {}", "", r"not \{\}"),
        ("I am {name:>9}", "", "without ':' or '!'"),
        ("I am {name", "", "not a format string"),
        ("{name} of {owner}", "", "give one with --owner"),
    ],
)
def test_a_wrong_template_is_one_message(template, owner, message) -> None:
    with pytest.raises(SelfCognitionError, match=message):
        sc.answer("小测", owner, template)


def test_rows_are_the_recipes_questions_repeated() -> None:
    rows = sc.self_cognition_rows("小测", 3)
    assert len(rows) == 3 * len(sc.QUESTIONS)
    assert {"请你介绍一下你自己", "你是谁", "你是我的小助手吗"} <= {r["conversation"][0]["input"] for r in rows}
    assert {r["conversation"][0]["output"] for r in rows} == {sc.answer("小测")}
    with pytest.raises(SelfCognitionError, match="at least 1"):
        sc.self_cognition_rows("小测", 0)
    with pytest.raises(SelfCognitionError, match="needs a name"):
        sc.self_cognition_rows("  ", 1)


def test_written_json_array_and_json_lines_read_back_the_same(tmp_path) -> None:
    rows = sc.self_cognition_rows("小测", 2)
    assert write_records(tmp_path / "a.json", rows) == len(rows)
    assert write_records(tmp_path / "b.jsonl", rows) == len(rows)
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8")) == rows
    assert [r.value for r in records(tmp_path / "b.jsonl")] == rows
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~_umask()
    write_records(tmp_path / "empty.json", [])
    assert json.loads((tmp_path / "empty.json").read_text()) == []


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_an_existing_file_is_kept_unless_replaced(tmp_path) -> None:
    mine = tmp_path / "mine.json"
    mine.write_text("the user's own")
    with pytest.raises(DatasetError, match="already exists"):
        sc.write_self_cognition(mine, "小测", 1)
    assert mine.read_text() == "the user's own" and [p.name for p in tmp_path.iterdir()] == ["mine.json"]
    written = sc.write_self_cognition(mine, "小测", 1, replace=True)
    assert written.records == len(sc.QUESTIONS) == len(json.loads(mine.read_text(encoding="utf-8")))
    with pytest.raises(DatasetError, match=".json or .jsonl"):
        sc.write_self_cognition(tmp_path / "x.txt", "小测", 1)


def test_a_failing_write_leaves_no_file(tmp_path) -> None:
    def rows():
        yield {"a": 1}
        raise DatasetError("record 2 (line 9) is not JSON")

    with pytest.raises(DatasetError, match="record 2"):
        write_records(tmp_path / "out.json", rows())
    assert list(tmp_path.iterdir()) == []


def test_mixing_takes_general_rows_by_ratio_in_any_known_format(tmp_path) -> None:
    general = tmp_path / "general.jsonl"
    lines = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(100)
    ]
    general.write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = tmp_path / "mixed.json"
    written = sc.write_self_cognition(out, "小测", 2, mix=general, ratio=0.5)
    rows = json.loads(out.read_text(encoding="utf-8"))
    mixed_in = [r for r in rows if r["conversation"][0]["input"].startswith("q")]
    assert len(rows) == written.records == 24 + 12 and len(mixed_in) == 12 == len(written.general.rows)
    assert all(r["conversation"][0]["output"] == "a" + r["conversation"][0]["input"][1:] for r in mixed_in)
    assert rows != sorted(rows, key=lambda r: r["conversation"][0]["input"].startswith("q"))  # shuffled in
    assert written.general.available == 100
    again = sc.write_self_cognition(tmp_path / "again.json", "小测", 2, mix=general, ratio=0.5)
    assert (
        json.loads((tmp_path / "again.json").read_text(encoding="utf-8")) == rows and again.general == written.general
    )
    short = sc.write_self_cognition(tmp_path / "short.json", "小测", 100, mix=general, ratio=1)
    assert short.general.asked == 1200 and short.general.available == len(short.general.rows) == 100


def test_mixing_refuses_what_it_cannot_turn_into_conversations(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "input": "", "output": "b"}\n{"instruction": "a", "output": "b"}\n')
    with pytest.raises(SelfCognitionError, match=r"record 2 \(line 2\): input is missing"):
        sc.write_self_cognition(tmp_path / "o.json", "小测", 1, mix=bad, ratio=1)
    llava = tmp_path / "llava.json"
    llava.write_text(
        json.dumps(
            [
                {
                    "image": "a.png",
                    "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "red"}],
                }
            ]
        )
    )
    with pytest.raises(SelfCognitionError, match="LLaVA"):
        sc.write_self_cognition(tmp_path / "o.json", "小测", 1, mix=llava, ratio=1)
    with pytest.raises(SelfCognitionError, match="above 0"):
        sc.write_self_cognition(tmp_path / "o.json", "小测", 1, mix=bad, ratio=0)
    assert not (tmp_path / "o.json").exists()


def test_repeat_writes_the_records_n_times_and_refuses_its_own_input(tmp_path) -> None:
    source = tmp_path / "llava.json"
    source.write_text(json.dumps([{"id": 1}, {"id": 2}]))
    assert repeat_records(source, tmp_path / "r.json", 3) == 6
    assert [r["id"] for r in json.loads((tmp_path / "r.json").read_text())] == [1, 2, 1, 2, 1, 2]
    with pytest.raises(DatasetError, match="already exists"):
        repeat_records(source, tmp_path / "r.json", 2)
    assert repeat_records(source, tmp_path / "r.json", 2, replace=True) == 4
    with pytest.raises(DatasetError, match="the input itself"):
        repeat_records(source, source, 2, replace=True)
    with pytest.raises(DatasetError, match="at least 1"):
        repeat_records(source, tmp_path / "z.json", 0)


def test_the_cli_knows_no_model_so_it_keeps_the_recipes_answer(capsys, tmp_path) -> None:
    from tui.cli import main

    assert main(["data", "new", str(tmp_path / "d.json"), "--name", "小测", "--repeat", "1"]) == 0
    rows = json.loads((tmp_path / "d.json").read_text(encoding="utf-8"))
    assert rows[0]["conversation"][0]["output"] == sc.answer("小测", model="internlm/internlm2-chat-1_8b")
    assert "书生·浦语的1.8B大模型" in capsys.readouterr().out
