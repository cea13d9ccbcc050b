"""Saved chats: one JSON file per save in the data folder, loaded back and listed newest first."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from engine import locations
from engine.chat.decoding import Sampling
from engine.chat.generation import StopReason
from engine.chat.session import Exchange
from engine.errors import ChatError
from engine.files import write_atomic
from engine.xtuner.templates import Turn

VERSION = 1
KIND = "xtui-transcript"


class TranscriptError(ChatError):
    """A transcript file that is missing, not JSON, or not a transcript this xtui reads."""


@dataclass(frozen=True, slots=True)
class Column:
    """One side of a chat: the model variant's name and its exchanges (two columns for an A/B comparison)."""

    name: str
    exchanges: tuple[Exchange, ...] = ()


@dataclass(frozen=True, slots=True)
class Transcript:
    """A whole saved chat: which model, how it was prompted and sampled, and what was said."""

    label: str
    template: str | None
    system: str
    sampling: Sampling
    columns: tuple[Column, ...]
    saved_at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class TranscriptInfo:
    """One line of the transcript list; `error` says why a broken file cannot be opened."""

    path: Path
    saved_at: float
    label: str
    exchanges: int = 0
    first_question: str = ""
    error: str | None = None

    @property
    def broken(self) -> bool:
        """Whether the file cannot be loaded."""
        return self.error is not None


def _slug(label: str) -> str:
    """A file-name-safe version of a model label."""
    return re.sub(r"[^a-z0-9._]+", "-", label.lower()).strip("-.")[:48] or "chat"


def _exchange_json(e: Exchange) -> dict:
    return {
        "prompt": e.turn.prompt, "answer": e.turn.answer, "image": e.image, "reason": e.reason, "tokens": e.tokens,
        "tokens_per_s": e.tokens_per_s,
    }  # fmt: skip


def _to_json(transcript: Transcript) -> dict:
    return {
        "kind": KIND,
        "version": VERSION,
        "saved_at": transcript.saved_at,
        "label": transcript.label,
        "template": transcript.template,
        "system": transcript.system,
        "sampling": asdict(transcript.sampling),
        "columns": [
            {"name": c.name, "exchanges": [_exchange_json(e) for e in c.exchanges]} for c in transcript.columns
        ],
    }


def save(transcript: Transcript, folder: Path | None = None) -> Path:
    """Write `transcript` to a new file named after its time and label (never over an existing one); its path."""
    folder = folder or locations.transcripts_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(transcript.saved_at))}-{_slug(transcript.label)}"
    for number in range(1, 1000):
        path = folder / (f"{stem}.json" if number == 1 else f"{stem}-{number}.json")
        try:  # claim the name first, so two saves in the same second cannot take the same file
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        try:
            write_atomic(path, json.dumps(_to_json(transcript), ensure_ascii=False, indent=1))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path
    raise TranscriptError(f"too many transcripts named {stem}*.json in {folder}")


def _get(data: dict, key: str, kind: type | tuple[type, ...], where: str):
    """`data[key]` when it has the right type, else a TranscriptError naming what is wrong."""
    if key not in data:
        raise TranscriptError(f"{where} has no {key!r}")
    value, kinds = data[key], (kind if isinstance(kind, tuple) else (kind,))
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise TranscriptError(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    return value


def _sampling(data: dict) -> Sampling:
    """Sampling settings from JSON: known keys checked, missing ones at their defaults, unknown ones ignored."""
    values = {}
    for spec in fields(Sampling):
        if spec.name in data:
            number = _get(data, spec.name, (int, float) if spec.type == "float" else int, "sampling")
            values[spec.name] = float(number) if spec.type == "float" else number
    return Sampling(**values)


def _exchange(data: object, where: str) -> Exchange:
    if not isinstance(data, dict):
        raise TranscriptError(f"{where} is not an object")
    turn = Turn(_get(data, "prompt", str, where), _get(data, "answer", str, where))
    image = _get(data, "image", (str, type(None)), where)
    reason = _get(data, "reason", (str, type(None)), where)
    if reason is not None and reason not in tuple(StopReason):
        raise TranscriptError(f"{where}: 'reason' is {reason!r}, not one of {', '.join(StopReason)}")
    tokens = _get(data, "tokens", int, where)
    rate = _get(data, "tokens_per_s", (int, float, type(None)), where)
    return Exchange(
        turn, image, None if reason is None else StopReason(reason), tokens, None if rate is None else float(rate)
    )


def _from_json(data: object) -> Transcript:
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise TranscriptError("not an xtui transcript")
    if data.get("version") != VERSION:
        raise TranscriptError(f"transcript version {data.get('version')!r} is not one this xtui reads ({VERSION})")
    columns = []
    for index, column in enumerate(_get(data, "columns", list, "the transcript")):
        where = f"column {index + 1}"
        if not isinstance(column, dict):
            raise TranscriptError(f"{where} is not an object")
        exchanges = _get(column, "exchanges", list, where)
        talk = tuple(_exchange(e, f"{where}, exchange {n + 1}") for n, e in enumerate(exchanges))
        columns.append(Column(_get(column, "name", str, where), talk))
    return Transcript(
        label=_get(data, "label", str, "the transcript"),
        template=_get(data, "template", (str, type(None)), "the transcript"),
        system=_get(data, "system", str, "the transcript"),
        sampling=_sampling(_get(data, "sampling", dict, "the transcript")),
        columns=tuple(columns),
        saved_at=float(_get(data, "saved_at", (int, float), "the transcript")),
    )


def _read(path: Path) -> Transcript:
    """The transcript in `path`; TranscriptError says what is wrong, without the path."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TranscriptError("no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TranscriptError(f"cannot read it ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TranscriptError(f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return _from_json(data)


def load(path: Path) -> Transcript:
    """The transcript saved in `path`; TranscriptError says why when it cannot be read."""
    try:
        return _read(path)
    except TranscriptError as exc:
        raise TranscriptError(f"cannot open transcript {path}: {exc}") from None


def _info(path: Path) -> TranscriptInfo:
    """The list line for one file; a broken file gets its modification time, its name and the reason."""
    try:
        transcript = _read(path)
    except TranscriptError as exc:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = 0.0
        return TranscriptInfo(path, mtime, path.name, error=str(exc))
    exchanges = [c.exchanges for c in transcript.columns]
    first = next((e[0].turn.prompt for e in exchanges if e), "")
    return TranscriptInfo(path, transcript.saved_at, transcript.label, max(map(len, exchanges), default=0), first)


def list_transcripts(folder: Path | None = None) -> list[TranscriptInfo]:
    """Every transcript in `folder` (the data folder by default), newest first; broken files are listed as such."""
    folder = folder or locations.transcripts_dir()
    paths = sorted(p for p in folder.glob("*.json") if p.is_file()) if folder.is_dir() else []
    return sorted(map(_info, paths), key=lambda i: (i.saved_at, i.path.name), reverse=True)
