"""XTuner's dataset files as streams of records: .jsonl lines or a .json array, read and written in bounded memory."""

from __future__ import annotations

import codecs
import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.errors import DataError
from engine.files import open_regular

_CHUNK = 1 << 20
_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class DatasetError(DataError):
    """A dataset file that XTuner could not read; the message names the record and its line."""


class DatasetUnreadable(DatasetError):
    """A dataset path that cannot be opened as a regular file at all."""


@dataclass(frozen=True, slots=True)
class Record:
    """One record of a dataset file: its number (from 1), the line it starts on, its value."""

    number: int
    line: int
    value: object


def _text_chunks(path: Path) -> Iterator[str]:
    """The file's text in chunks, decoded as UTF-8; DatasetError for a non-regular file or bytes that are not UTF-8."""
    try:
        fh = open_regular(path)
    except OSError as exc:  # NotRegularFile says what the path is instead
        raise DatasetUnreadable(f"cannot read {path}: {exc.strerror or exc}") from None
    with fh:
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = 0
        while True:
            data = fh.read(_CHUNK)
            try:
                text = decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                raise DatasetError(f"{path} is not UTF-8 text (byte {offset + exc.start})") from None
            offset += len(data)
            if text:
                yield text
            if not data:
                return


def _json_error(exc: Exception) -> str:
    """What json (or the recursion limit) said, without the position it counts in the buffer."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return getattr(exc, "msg", str(exc))


def _lines(path: Path) -> Iterator[Record]:
    """The records of a JSON-lines file (blank lines skipped)."""
    pending, line_no, number = "", 0, 0
    for chunk in _text_chunks(path):
        lines = (pending + chunk).split("\n")
        pending = lines.pop()
        for text in lines:
            line_no += 1
            if text.strip():
                number += 1
                yield Record(number, line_no, _load(text, number, line_no))
    if pending.strip():
        yield Record(number + 1, line_no + 1, _load(pending, number + 1, line_no + 1))


def _load(text: str, number: int, line: int) -> object:
    """One JSON-lines record, or DatasetError naming it."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise DatasetError(f"record {number} (line {line}) is not JSON: {_json_error(exc)}") from None


def _array(path: Path) -> Iterator[Record]:
    """The records of a file holding one JSON array, parsed one record at a time."""
    chunks = _text_chunks(path)
    buf, pos, line, number, ended = "", 0, 1, 0, False

    def more() -> bool:
        nonlocal buf, pos, ended
        chunk = next(chunks, None)
        if chunk is None:
            ended = True
            return False
        buf, pos = buf[pos:] + chunk, 0
        return True

    def skip_space() -> str:
        nonlocal pos, line
        while True:
            end = _SPACE.match(buf, pos).end()
            line += buf.count("\n", pos, end)
            pos = end
            if pos < len(buf) or not more():
                return buf[pos : pos + 1]

    if skip_space() != "[":
        raise DatasetError(f"{path} does not hold a JSON array (line {line})")
    pos += 1
    while True:
        head = skip_space()
        if head == "]" and number == 0:
            return
        while True:
            try:
                value, end = _DECODER.raw_decode(buf, pos)
            except (ValueError, RecursionError) as exc:
                if isinstance(exc, RecursionError) or not more():
                    raise DatasetError(f"record {number + 1} (line {line}) is not JSON: {_json_error(exc)}") from None
                continue
            if end < len(buf) or ended or not more():  # a number cut by the chunk's end would parse as a shorter one
                break
        number += 1
        yield Record(number, line, value)
        line += buf.count("\n", pos, end)
        pos = end
        after = skip_space()
        if after == "]":
            return
        if after != ",":
            where = "the end of the file" if ended else f"line {line}"
            raise DatasetError(f"after record {number}: expected ',' or ']' at {where}")
        pos += 1


def records(path: Path) -> Iterator[Record]:
    """Every record of a .json (one array) or .jsonl dataset, read as a stream; DatasetError at the first bad one."""
    if path.suffix == ".json":
        for chunk in _text_chunks(path):
            if chunk.strip():
                is_array = chunk.lstrip().startswith("[")
                break
        else:
            return
        yield from _array(path) if is_array else _lines(path)
        return
    yield from _lines(path)


def write_records(path: Path, rows: Iterable[object], replace: bool = False) -> int:
    """Write rows as a .json array (indented) or .jsonl lines, through a temporary file; the number written.

    An existing `path` is kept (DatasetError) unless `replace`: the file appears whole or not at all.
    """
    if path.suffix not in (".json", ".jsonl"):
        raise DatasetError(f"{path}: a dataset file ends in .json or .jsonl")
    if not replace and os.path.lexists(path):
        raise DatasetError(f"{path} already exists (--force replaces it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}-{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)  # the umask applies, as for any file
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            array = path.suffix == ".json"
            for count, row in enumerate(rows, start=1):
                text = json.dumps(row, ensure_ascii=False, indent=2 if array else None)
                if array:
                    text = ("[\n" if count == 1 else ",\n") + text
                fh.write(text if array else text + "\n")
            if array:
                fh.write("\n]\n" if count else "[]\n")
        if not replace:  # claim the name: fails, and replaces nothing, when a file appeared meanwhile
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        os.replace(tmp, path)
    except FileExistsError:
        raise DatasetError(f"{path} already exists (--force replaces it)") from None
    finally:
        tmp.unlink(missing_ok=True)
    return count


def repeat_records(source: Path, target: Path, times: int, replace: bool = False) -> int:
    """Write every record of `source` `times` over into `target`, as a stream (the LLaVA recipe's repeat step); the count."""
    if times < 1:
        raise DatasetError(f"the repeat count must be at least 1, not {times}")
    if target.exists() and target.resolve() == source.resolve():
        raise DatasetError(f"{target} is the input itself: write the repeated data to another file")
    return write_records(target, (record.value for _ in range(times) for record in records(source)), replace)
