"""XTuner's dataset record formats: which one a record is in, what is wrong with it, the map_fn it needs, its turns."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

IMAGE_TOKEN = "<image>"


class DatasetFormat(StrEnum):
    """A record layout XTuner reads, named as xtui prints it."""

    CONVERSATION = "conversation"
    OPENAI = "openai"
    ALPACA = "alpaca"
    LLAVA = "llava"


# The `dataset_map_fn` each format needs in the config, as its source text ("None": XTuner reads it as it is).
MAP_FNS = {
    DatasetFormat.CONVERSATION: "None",
    DatasetFormat.OPENAI: "openai_map_fn",
    DatasetFormat.ALPACA: "alpaca_map_fn",
    DatasetFormat.LLAVA: "llava_map_fn",
}
SHAPES = {
    DatasetFormat.CONVERSATION: '{"conversation": [{"input": ..., "output": ...}]}',
    DatasetFormat.OPENAI: '{"messages": [{"role": ..., "content": ...}]}',
    DatasetFormat.ALPACA: '{"instruction": ..., "input": ..., "output": ...}',
    DatasetFormat.LLAVA: '{"image": ..., "conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}]}',
}
OPENAI_ROLES = ("system", "user", "assistant")
LLAVA_SPEAKERS = ("human", "gpt")


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """What is wrong with one field of a record ('' for the record as a whole), said as a predicate: "is missing"."""

    field: str
    what: str

    def __str__(self) -> str:
        return f"{self.field} {self.what}" if self.field else self.what


def format_read_by(map_fn: str) -> DatasetFormat | None:
    """The format a config's `dataset_map_fn` (its source text) reads; None for a map_fn of another kind."""
    name = map_fn.strip("'\"").rpartition(".")[2]  # `alpaca_map_fn`, or the dotted string of a dumped config
    return next((fmt for fmt, text in MAP_FNS.items() if name == text), None)


def detect(value: object) -> DatasetFormat | None:
    """The format a record is laid out in, told by its keys; None for anything else."""
    if not isinstance(value, dict):
        return None
    if "conversation" in value:
        return DatasetFormat.CONVERSATION
    if "messages" in value:
        return DatasetFormat.OPENAI
    if "conversations" in value:
        return DatasetFormat.LLAVA
    if "instruction" in value and "output" in value:
        return DatasetFormat.ALPACA
    return None


def _kind(value: object) -> str:
    """What a JSON value is, in words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    return {str: "text", list: "a list", dict: "an object"}[type(value)]


def _text(row: dict, key: str, where: str, optional: bool = False) -> list[FieldProblem]:
    """A problem when `row[key]` is not text (missing or null is fine when `optional`)."""
    if key not in row:
        return [] if optional else [FieldProblem(f"{where}{key}", "is missing")]
    value = row[key]
    if isinstance(value, str) or (optional and value is None):
        return []
    return [FieldProblem(f"{where}{key}", f"is {_kind(value)}, not text")]


def _items(row: dict, key: str) -> tuple[list, list[FieldProblem]]:
    """The non-empty list `row[key]` of objects, or the problems that make it not one."""
    items = row.get(key)
    if not isinstance(items, list):
        return [], [FieldProblem(key, "is missing" if key not in row else f"is {_kind(items)}, not a list")]
    if not items:
        return [], [FieldProblem(key, "is empty")]
    bad = [
        FieldProblem(f"{key}[{i}]", f"is {_kind(item)}, not an object")
        for i, item in enumerate(items)
        if not isinstance(item, dict)
    ]
    return items, bad


def _conversation_problems(row: dict) -> list[FieldProblem]:
    """What keeps a `conversation` row from XTuner's encoder: turns that are not objects, outputs that are not text."""
    turns, problems = _items(row, "conversation")
    for i, turn in enumerate(turns):
        if isinstance(turn, dict):
            where = f"conversation[{i}]."
            problems += (
                _text(turn, "output", where) + _text(turn, "input", where, True) + _text(turn, "system", where, True)
            )
    return problems


def _openai_problems(row: dict) -> list[FieldProblem]:
    """What openai_map_fn would fail on: roles it does not take, contents that are not text, no answer."""
    messages, problems = _items(row, "messages")
    for i, message in enumerate(messages):
        if isinstance(message, dict):
            role = message.get("role")
            if role not in OPENAI_ROLES:
                problems.append(
                    FieldProblem(f"messages[{i}].role", f"is {role!r}: openai_map_fn takes system, user and assistant")
                )
            problems += _text(message, "content", f"messages[{i}].")
    if messages and not problems and all(m.get("role") != "assistant" for m in messages):
        problems.append(FieldProblem("messages", "has no assistant message: there is nothing to learn"))
    return problems


def _alpaca_problems(row: dict) -> list[FieldProblem]:
    """What alpaca_map_fn would fail on: instruction, input or output missing or not text."""
    return [p for key in ("instruction", "input", "output") for p in _text(row, key, "")]


def _llava_problems(row: dict) -> list[FieldProblem]:
    """What llava_map_fn and LLaVA's encoder would fail on: speakers, values, and one <image> token per image."""
    turns, problems = _items(row, "conversations")
    tokens = 0
    for i, turn in enumerate(turns):
        if isinstance(turn, dict):
            speaker = turn.get("from")
            if speaker not in LLAVA_SPEAKERS:
                problems.append(
                    FieldProblem(f"conversations[{i}].from", f"is {speaker!r}: llava_map_fn takes human and gpt")
                )
            problems += _text(turn, "value", f"conversations[{i}].")
            if speaker == "human" and isinstance(turn.get("value"), str):
                tokens += turn["value"].count(IMAGE_TOKEN)
    problems += _text(row, "image", "", optional=True)
    if problems:
        return problems
    if all(t["from"] != "gpt" for t in turns):
        return [FieldProblem("conversations", "has no gpt turn: there is nothing to learn")]
    wanted = 1 if row.get("image") else 0
    if tokens != wanted:
        said = (
            f"has an image and {tokens} {IMAGE_TOKEN} tokens"
            if wanted
            else f"has no image but {tokens} {IMAGE_TOKEN} tokens"
        )
        return [FieldProblem("conversations", f"{said} in its human turns (it needs {wanted})")]
    return []


_CHECKS = {
    DatasetFormat.CONVERSATION: _conversation_problems,
    DatasetFormat.OPENAI: _openai_problems,
    DatasetFormat.ALPACA: _alpaca_problems,
    DatasetFormat.LLAVA: _llava_problems,
}


def record_problems(value: object, fmt: DatasetFormat) -> list[FieldProblem]:
    """What keeps a record from being read as `fmt` by XTuner's map_fn for it; empty when it is fine."""
    if not isinstance(value, dict):
        return [FieldProblem("", f"is {_kind(value)}, not a JSON object")]
    found = detect(value)
    if found is not None and found != fmt:
        return [FieldProblem("", f"is not {SHAPES[fmt]} but in the {found} format")]
    if found is None:
        return [FieldProblem("", f"is not {SHAPES[fmt]}")]
    return _CHECKS[fmt](value)


def to_conversation(value: dict, fmt: DatasetFormat) -> list[dict]:
    """A checked record's turns as XTuner's map_fn for `fmt` makes them: `{"input", "output", "system"}` each."""
    if fmt == DatasetFormat.CONVERSATION:
        return [
            {"input": t.get("input") or "", "output": t["output"], "system": t.get("system") or ""}
            for t in value["conversation"]
        ]
    if fmt == DatasetFormat.ALPACA:  # alpaca_map_fn
        if value["output"] == "<nooutput>":
            return []
        return [{"input": f"{value['instruction']}\n{value['input']}", "output": value["output"], "system": ""}]
    speaker, words, asker, answerer = (
        ("role", "content", "user", "assistant") if fmt == DatasetFormat.OPENAI else ("from", "value", "human", "gpt")
    )
    turns, system, prompt = [], "", ""
    messages = list(value["messages" if fmt == DatasetFormat.OPENAI else "conversations"])
    while messages and messages[0][speaker] == answerer:  # both map_fns skip a leading answer
        messages.pop(0)
    for message in messages:
        text = message[words]
        if message[speaker] == "system":
            system = text
        elif message[speaker] == asker:
            if fmt == DatasetFormat.LLAVA and IMAGE_TOKEN in text:  # llava_map_fn puts the image first
                text = (IMAGE_TOKEN + "\n" + text.replace(IMAGE_TOKEN, "").strip()).strip()
            prompt += text
        else:
            turns.append({"input": prompt, "output": text, "system": system})
            system, prompt = "", ""
    return turns
