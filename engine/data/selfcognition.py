"""The self-cognition dataset of XTuner's "personal assistant" recipe: who-are-you questions, one answer, repeated."""

from __future__ import annotations

import random
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.data.formats import DatasetFormat, detect, record_problems, to_conversation
from engine.data.records import DatasetError, records, write_records
from engine.errors import DataError

QUESTIONS = (
    "你是谁",
    "请你介绍一下你自己",
    "你是我的小助手吗",
    "你叫什么名字",
    "你好，你是谁？",
    "介绍一下你自己",
    "请问你是谁",
    "你是什么模型",
    "你的名字是什么",
    "你是谁的小助手",
    "说说你自己",
    "你好",
)
ANSWER = "我是{name}的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦"
OWNER_ANSWER = "我是{name}，是{owner}的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦"
RECIPE_MODEL = re.compile(r"internlm2.*1[._-]?8b", re.IGNORECASE)  # the recipe's model, which its answer names
NEUTRAL_ANSWER, NEUTRAL_OWNER_ANSWER = "我是{name}的小助手哦", "我是{name}，是{owner}的小助手哦"
FIELDS = ("name", "owner")
MIX_SEED = 0


class SelfCognitionError(DataError):
    """An answer template, name or general dataset that cannot make the self-cognition data."""


def answer(name: str, owner: str = "", template: str = "", model: str = "") -> str:
    """The answer of an assistant called `name` (belonging to `owner`) about itself: `template` with both filled in.

    Without a template the default one is used, naming the owner when there is one; it says the assistant is
    InternLM2-1.8B inside unless `model` (the config's base model, when known) is another one.
    """
    neutral = bool(model) and not RECIPE_MODEL.search(model)
    template = template or (
        (NEUTRAL_OWNER_ANSWER if neutral else OWNER_ANSWER) if owner else (NEUTRAL_ANSWER if neutral else ANSWER)
    )
    fields = {f for _, f, _, _ in _parse(template) if f is not None}
    if fields - set(FIELDS):
        wrong = ", ".join(sorted("{" + f + "}" for f in fields - set(FIELDS)))
        raise SelfCognitionError(f"the answer template may use {{name}} and {{owner}}, not {wrong}")
    if "owner" in fields and not owner:
        raise SelfCognitionError("the answer template uses {owner}: give one with --owner")
    if not name.strip():
        raise SelfCognitionError("the assistant needs a name")
    return template.format(name=name, owner=owner)


def _parse(template: str) -> list[tuple]:
    """The pieces of a format string, or SelfCognitionError when its braces do not pair."""
    try:
        pieces = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise SelfCognitionError(f"the answer template is not a format string: {exc}") from None
    if any(spec or conversion for _, field, spec, conversion in pieces if field is not None):
        raise SelfCognitionError("the answer template takes plain {name} and {owner}, without ':' or '!'")
    return pieces


def self_cognition_rows(name: str, repeats: int, owner: str = "", template: str = "", model: str = "") -> list[dict]:
    """The dataset in XTuner's single-turn `conversation` format, every question `repeats` times."""
    if repeats < 1:
        raise SelfCognitionError(f"the repeat count must be at least 1, not {repeats}")
    text = answer(name, owner, template, model)
    return [{"conversation": [{"input": q, "output": text}]} for _ in range(repeats) for q in QUESTIONS]


@dataclass(frozen=True, slots=True)
class GeneralSample:
    """Conversations drawn from a general dataset for mixing: the rows, how many were asked and how many it has."""

    rows: list[dict]
    asked: int
    available: int


def general_sample(path: Path, count: int, seed: int = MIX_SEED) -> GeneralSample:
    """`count` records of a general dataset (conversation, messages or alpaca), drawn evenly as a stream, as conversations."""
    chosen: list[dict] = []
    rng = random.Random(seed)
    seen = 0
    for record in _conversations(path):
        seen += 1
        if len(chosen) < count:
            chosen.append(record)
        elif (slot := rng.randrange(seen)) < count:  # reservoir sampling: bounded memory for a large file
            chosen[slot] = record
    return GeneralSample(chosen, count, seen)


def _conversations(path: Path) -> Iterator[dict]:
    """Every record of a general dataset as a `conversation` row; SelfCognitionError naming a record it cannot use."""
    expected = None
    try:
        for record in records(path):
            fmt = expected or detect(record.value)
            problems = record_problems(record.value, fmt) if fmt else ["not a conversation, messages or alpaca record"]
            if fmt == DatasetFormat.LLAVA:
                problems = ["a LLaVA record (with images) cannot be mixed into text data"]
            if problems:
                raise SelfCognitionError(
                    f"cannot mix {path}: record {record.number} (line {record.line}): {problems[0]}"
                )
            expected = fmt
            yield {"conversation": to_conversation(record.value, fmt)}
    except DatasetError as exc:
        raise SelfCognitionError(f"cannot mix {path}: {exc}") from None


def mixed(rows: list[dict], general: list[dict], seed: int = MIX_SEED) -> list[dict]:
    """The self-cognition rows and the general ones shuffled together, the same way for the same seed."""
    together = rows + general
    random.Random(seed).shuffle(together)
    return together


@dataclass(frozen=True, slots=True)
class SelfCognitionFile:
    """A written self-cognition dataset: where, the answer it teaches, its rows, and the general sample mixed in."""

    path: Path
    answer: str
    self_cognition: int
    general: GeneralSample | None

    @property
    def records(self) -> int:
        """All rows of the file."""
        return self.self_cognition + (len(self.general.rows) if self.general else 0)


def write_self_cognition(
    path: Path, name: str, repeats: int, owner: str = "", template: str = "",
    mix: Path | None = None, ratio: float = 0.0, replace: bool = False, model: str = "",
) -> SelfCognitionFile:  # fmt: skip
    """Write the self-cognition rows to `path` (.json or .jsonl), with `ratio` general rows per one of them from `mix`.

    The general rows keep the model's other skills (against forgetting); an existing file is kept unless `replace`.
    `model` is the base model the data is for (see answer).
    """
    rows = self_cognition_rows(name, repeats, owner, template, model)
    general = None
    if mix is not None:
        if not ratio > 0:
            raise SelfCognitionError(
                f"the mixing ratio must be above 0 (general rows per self-cognition row), not {ratio}"
            )
        general = general_sample(mix, round(ratio * len(rows)))
    write_records(path, mixed(rows, general.rows) if general else rows, replace)
    return SelfCognitionFile(path, answer(name, owner, template, model), len(rows), general)
