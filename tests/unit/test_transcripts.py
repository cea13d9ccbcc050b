"""Transcripts: round trips (CJK, A/B, every Exchange field), no overwrite, broken files, listing order, data folder."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from engine import locations
from engine.chat.decoding import Sampling
from engine.chat.generation import StopReason
from engine.chat.session import Exchange
from engine.chat.transcripts import (
    Column,
    Transcript,
    TranscriptError,
    list_transcripts,
    load,
    save,
)
from engine.xtuner.templates import Turn

SAVED_AT = 1795858496.0  # 2026-11-28 09:34:56 UTC


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def chat(label: str = "tiny-llama (adapter)", saved_at: float = SAVED_AT, question: str = "请你介绍一下你自己"):
    exchanges = (
        Exchange(Turn(question, "我是XTuner小助手，由上海AI实验室开发。"), None, StopReason.STOP, 17, 233.5),
        Exchange(Turn("What is in the picture?", "A cat."), "/data/cat.jpg", StopReason.CANCELLED, 3, None),
    )
    return Transcript(
        label=label, template="internlm2_chat", system="你是一个乐于助人的助手。\nBe brief.",
        sampling=Sampling(temperature=0.0, top_p=0.9, top_k=0, max_new_tokens=64, repetition_penalty=1.1, seed=7),
        columns=(Column("adapter", exchanges),), saved_at=saved_at,
    )  # fmt: skip


def test_round_trip_keeps_everything_cjk_included(tmp_path) -> None:
    original = chat()
    path = save(original, tmp_path)
    assert path.name == "20261128-093456-tiny-llama-adapter.json"
    assert "我是XTuner小助手" in path.read_text(encoding="utf-8")  # readable, not \u-escaped
    assert load(path) == original
    assert [e.reason for e in load(path).columns[0].exchanges] == [StopReason.STOP, StopReason.CANCELLED]
    assert '"reason": "cancelled"' in path.read_text(encoding="utf-8")  # the enum is saved as its plain word


def test_ab_round_trip_and_empty_template(tmp_path) -> None:
    one = chat().columns[0]
    original = Transcript("merged vs base", None, "", Sampling(), (one, Column("base", one.exchanges[:1])), SAVED_AT)
    assert load(save(original, tmp_path)) == original
    info = list_transcripts(tmp_path)[0]
    assert (info.label, info.exchanges, info.first_question) == ("merged vs base", 2, "请你介绍一下你自己")
    assert not info.broken


def test_saves_never_overwrite(tmp_path) -> None:
    paths = [save(chat(question=f"q{n}"), tmp_path) for n in range(3)]
    assert [p.name for p in paths] == [
        "20261128-093456-tiny-llama-adapter.json",
        "20261128-093456-tiny-llama-adapter-2.json",
        "20261128-093456-tiny-llama-adapter-3.json",
    ]
    assert [load(p).columns[0].exchanges[0].turn.prompt for p in paths] == ["q0", "q1", "q2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temporary files left


def test_label_without_safe_characters_gets_a_plain_name(tmp_path) -> None:
    assert save(chat(label="模型"), tmp_path).name == "20261128-093456-chat.json"


def test_load_says_what_is_wrong(tmp_path) -> None:
    with pytest.raises(TranscriptError, match="no such file"):
        load(tmp_path / "gone.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "xtui-transcript",', encoding="utf-8")
    with pytest.raises(TranscriptError, match=r"bad.json: not valid JSON \(line 1"):
        load(bad)
    data = json.loads(save(chat(), tmp_path).read_text(encoding="utf-8"))
    cases = [
        ([1, 2], "not an xtui transcript"),
        ({**data, "version": 99}, "version 99 is not one this xtui reads"),
        ({**data, "label": 3}, "'label' has the wrong type"),
        ({k: v for k, v in data.items() if k != "columns"}, "has no 'columns'"),
        ({**data, "sampling": {"top_p": "high"}}, "sampling: 'top_p' has the wrong type"),
        ({**data, "columns": [{"name": "a", "exchanges": [{"prompt": "hi"}]}]}, "column 1, exchange 1 has no 'answer'"),
        (
            {
                **data,
                "columns": [{"name": "a", "exchanges": [{**data["columns"][0]["exchanges"][0], "reason": "tired"}]}],
            },
            "column 1, exchange 1: 'reason' is 'tired', not one of stop, length, cancelled",
        ),
    ]
    for content, message in cases:
        bad.write_text(json.dumps(content), encoding="utf-8")
        with pytest.raises(TranscriptError, match=message):
            load(bad)


def test_sampling_missing_keys_take_defaults(tmp_path) -> None:
    path = save(chat(), tmp_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["sampling"] = {"temperature": 1, "future_knob": True}
    path.write_text(json.dumps(data), encoding="utf-8")
    assert load(path).sampling == Sampling(temperature=1.0)


def test_listing_newest_first_with_broken_files(tmp_path) -> None:
    older = save(chat(label="old", saved_at=SAVED_AT - 3600, question="first?"), tmp_path)
    newer = save(chat(label="new", saved_at=SAVED_AT), tmp_path)
    broken = tmp_path / "broken.json"
    broken.write_text("not json", encoding="utf-8")
    os.utime(broken, (SAVED_AT - 60, SAVED_AT - 60))
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")
    infos = list_transcripts(tmp_path)
    assert [i.path for i in infos] == [newer, broken, older]
    assert [i.label for i in infos] == ["new", "broken.json", "old"]
    assert infos[2].first_question == "first?" and infos[2].exchanges == 2
    assert infos[1].broken and infos[1].error.startswith("not valid JSON") and infos[1].saved_at == SAVED_AT - 60


def test_listing_a_missing_folder_is_empty(tmp_path) -> None:
    assert list_transcripts(tmp_path / "nothing") == []


def test_data_folder_from_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XTUI_DATA", str(tmp_path / "data"))
    assert locations.transcripts_dir() == tmp_path / "data" / "transcripts"
    path = save(chat())
    assert path.parent == tmp_path / "data" / "transcripts" and list_transcripts()[0].path == path
    monkeypatch.delenv("XTUI_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert locations.transcripts_dir() == tmp_path / "xdg" / "xtui" / "transcripts"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert locations.transcripts_dir() == Path.home() / ".local" / "share" / "xtui" / "transcripts"
