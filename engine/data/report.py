"""A dataset file checked record by record as a stream: its format, counts, and every problem by record and field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.data.formats import MAP_FNS, DatasetFormat, FieldProblem, detect, record_problems, to_conversation
from engine.data.images import ImageError, check_image
from engine.data.records import DatasetError, DatasetUnreadable, records

LISTED_PROBLEMS = 20


@dataclass(frozen=True, slots=True)
class RecordProblem:
    """What is wrong where: the record's number and line (None for the file as a whole), the field, the fault."""

    number: int | None
    line: int | None
    field: str
    what: str

    def __str__(self) -> str:
        if self.number is None:
            return self.what
        where = f"record {self.number} (line {self.line})"
        return f"{where}: {self.field} {self.what}" if self.field else f"{where} {self.what}"


@dataclass(frozen=True, slots=True)
class DatasetReport:
    """A dataset file as XTuner would read it: format, records, turns, images, and the first problems of all found."""

    path: Path
    format: DatasetFormat | None
    records: int
    turns: int
    problems: tuple[RecordProblem, ...]
    bad_records: int
    complete: bool
    images: int = 0

    @property
    def map_fn(self) -> str | None:
        """The `dataset_map_fn` a config needs for this format, as source text ("None"); None when the format is unknown."""
        return MAP_FNS.get(self.format)

    @property
    def ok(self) -> bool:
        """True when every record can be read as its format and the file has some."""
        return not self.problems and self.records > 0


class _ImageCheck:
    """Every distinct image of a LLaVA dataset checked once (a repeated dataset names the same files again)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: dict[str, str | None] = {}

    def problem(self, name: str) -> str | None:
        """Why the image `name` (relative to the folder) cannot be used, or None."""
        if name not in self.seen:
            try:
                check_image(self.folder / name)
                self.seen[name] = None
            except ImageError as exc:
                self.seen[name] = str(exc)
        return self.seen[name]


def inspect_dataset(
    path: Path, expected: DatasetFormat | None = None, image_folder: Path | None = None,
    listed: int = LISTED_PROBLEMS, first_only: bool = False, own_map_fn: bool = False,
) -> DatasetReport:  # fmt: skip
    """Read every record of `path` as `expected` (or the format of its first record); images too when a folder is given.

    With `own_map_fn` (a config's map_fn of another kind reads them) records only need to be JSON objects.

    Raises DatasetUnreadable when the file cannot be opened; bad JSON part-way is a problem of the report.
    """
    fmt, count, turns, bad, complete = expected, 0, 0, 0, True
    problems: list[RecordProblem] = []
    images = _ImageCheck(image_folder) if image_folder is not None else None
    stream = records(path)
    try:
        for record in stream:
            count = record.number
            fmt = fmt or (None if own_map_fn else detect(record.value))
            if own_map_fn:
                found = [] if isinstance(record.value, dict) else [FieldProblem("", "is not a JSON object")]
            else:
                found = (
                    record_problems(record.value, fmt) if fmt else [FieldProblem("", "is not in a format XTuner reads")]
                )
            if not found and fmt == DatasetFormat.LLAVA and images is not None and record.value.get("image"):
                why = images.problem(record.value["image"])
                found = [FieldProblem("image", f"cannot be used: {why}")] if why else []
            if found:
                bad += 1
                problems += [RecordProblem(record.number, record.line, p.field, p.what) for p in found][
                    : listed - len(problems)
                ]
                if first_only:
                    break
            elif fmt is not None:
                turns += len(to_conversation(record.value, fmt))
    except DatasetUnreadable:
        raise
    except DatasetError as exc:
        complete = False
        problems = [*problems[: max(listed - 1, 0)], RecordProblem(None, None, "", str(exc))]
    finally:
        stream.close()
    return DatasetReport(path, fmt, count, turns, tuple(problems), bad, complete, len(images.seen) if images else 0)
