"""Dataset files read as a stream: every record checked, record-precise errors, bounded memory, hostile files."""

from __future__ import annotations

import json
import os
import re
import tracemalloc

import pytest

from engine.data import records as datasets
from engine.data.records import DatasetError, records
from engine.xtuner.config_check import dataset_problem

ROW = {"conversation": [{"input": "你是谁", "output": "我是小明的小助手"}]}


def test_an_array_and_json_lines_give_the_same_records(tmp_path) -> None:
    rows = [ROW, {"x": [1, 2.5, None]}, 7, "s"]
    (tmp_path / "a.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n")
    assert [r.value for r in records(tmp_path / "a.json")] == rows == [r.value for r in records(tmp_path / "b.jsonl")]
    assert [r.line for r in records(tmp_path / "a.json")] == [2, 10, 17, 18]


def test_records_cut_by_the_read_chunks_are_whole(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(datasets, "_CHUNK", 7)
    rows = [12345678901234, ROW, [1, [2, [3]]], "a long string across chunks", 0.125]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    assert [r.value for r in records(tmp_path / "a.json")] == rows


@pytest.mark.parametrize(
    "text, expected",
    [
        ('[{"a": 1}, {"a": 2} {"a": 3}]', "after record 2: expected ',' or ']' at line 1"),
        ('[{"a": 1},\n{"a": 2},\n{"a": \n]', "record 3 (line 3) is not JSON"),
        ('[{"a": 1}', "expected ',' or ']' at the end of the file"),
        ('{"a": 1}', None),
    ],
)
def test_errors_name_the_record_and_its_line(tmp_path, text, expected) -> None:
    path = tmp_path / "d.json"
    path.write_text(text)
    if expected is None:
        assert [r.value for r in records(path)] == [{"a": 1}]
        return
    with pytest.raises(DatasetError, match=re.escape(expected)):
        list(records(path))


def test_bad_json_far_past_the_first_rows_is_found(tmp_path) -> None:
    path = tmp_path / "d.jsonl"
    lines = [json.dumps(ROW, ensure_ascii=False)] * 20_000
    lines[15_000] = '{"conversation": [{"input": "a", "output": "b"}'
    path.write_text("\n".join(lines) + "\n")
    assert "record 15001 (line 15001) is not JSON" in dataset_problem(path, needs_conversation=True)
    lines[15_000] = json.dumps({"messages": []})
    path.write_text("\n".join(lines) + "\n")
    assert "record 15001 (line 15001) is not {" in dataset_problem(path, needs_conversation=True)


def test_deep_nesting_and_bad_bytes_are_messages(tmp_path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" + "[" * 100_000 + "]" * 100_000 + "]")
    assert "record 1 (line 1) is not JSON: nested too deeply" in dataset_problem(deep, needs_conversation=False)
    (tmp_path / "deep.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    assert "nested too deeply" in dataset_problem(tmp_path / "deep.jsonl", needs_conversation=False)
    gbk = tmp_path / "gbk.jsonl"
    gbk.write_bytes(json.dumps(ROW, ensure_ascii=False).encode("gbk") + b"\n")
    assert "is not UTF-8 text" in dataset_problem(gbk, needs_conversation=True)


def test_a_fifo_or_a_device_is_refused_at_once(tmp_path) -> None:
    os.mkfifo(tmp_path / "fifo.jsonl")
    assert "not a regular file" in dataset_problem(tmp_path / "fifo.jsonl", needs_conversation=True)
    (tmp_path / "zero.jsonl").symlink_to("/dev/zero")
    assert "not a regular file" in dataset_problem(tmp_path / "zero.jsonl", needs_conversation=True)


def test_a_large_dataset_is_checked_in_bounded_memory(tmp_path) -> None:
    line = json.dumps({"conversation": [{"input": "问" * 200, "output": "答" * 400}]}, ensure_ascii=False)
    for name, text in (
        ("big.jsonl", "\n".join([line] * 30_000)),
        ("big.json", "[" + ",\n".join([line] * 30_000) + "]"),
    ):
        path = tmp_path / name
        path.write_text(text)
        size = path.stat().st_size
        tracemalloc.start()
        assert dataset_problem(path, needs_conversation=True) is None
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert size > 50e6 and peak < 12e6, (name, size, peak)
