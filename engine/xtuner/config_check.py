"""Checks of a config before launch, read without executing it: local model and data paths, data format."""

from __future__ import annotations

import ast
from pathlib import Path

from engine.xtuner.configs import ConfigError, read_settings
from engine.xtuner.datasets import DatasetError, records

MODEL_SETTINGS = ("pretrained_model_name_or_path", "llm_name_or_path", "visual_encoder_name_or_path")


def _literal(text: str) -> object:
    """The value of a literal's source text, None when it is not a literal."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


def _local(value: object, base: Path) -> Path | None:
    """The path a setting names when it is clearly local (absolute, ./, ../, ~ or a .json file)."""
    if not isinstance(value, str) or not value:
        return None
    if value.startswith(("/", "./", "../", "~")) or value.endswith((".json", ".jsonl")):
        path = Path(value).expanduser()
        return path if path.is_absolute() else base / path
    return None


def dataset_problem(path: Path, needs_conversation: bool) -> str | None:
    """Why a JSON dataset cannot train, or None: unreadable, bad JSON in any record, empty, or not XTuner's format.

    Every record is read, as a stream: a mistake in record 100,000 is found before a GPU hour is spent.
    """
    count = 0
    try:
        for record in records(path):
            count = record.number
            where = f"record {record.number} (line {record.line})"
            if not isinstance(record.value, dict):
                return f"bad dataset {path}: {where} is not a JSON object"
            if needs_conversation and not _is_conversation(record.value):
                return (
                    f'bad dataset {path}: {where} is not {{"conversation": [{{"input": ..., "output": ...}}]}}, '
                    "which this config reads (dataset_map_fn=None)"
                )
    except DatasetError as exc:
        return f"bad dataset {path}: {exc}"
    return None if count else f"bad dataset {path}: no records"


def _is_conversation(row: dict) -> bool:
    """True for XTuner's `{"conversation": [{"input", "output"}, ...]}` row."""
    turns = row.get("conversation")
    return isinstance(turns, list) and bool(turns) and all(isinstance(t, dict) and "output" in t for t in turns)


def config_problems(config: Path, cwd: Path) -> list[str]:
    """Problems a launch of `config` from `cwd` would hit at once: missing local model or data, bad data."""
    source = config.read_text(encoding="utf-8")
    try:
        settings = read_settings(source)
    except ConfigError as exc:
        return [str(exc)]
    except (RecursionError, MemoryError):
        return [f"config {config} nests too deeply to be read"]
    problems = []
    for name in MODEL_SETTINGS:
        path = _local(_literal(settings.get(name, "None")), cwd)
        if path is not None and not path.exists():
            problems.append(f"model not found: {name} = {path}")
    needs_conversation = "dataset_map_fn=None" in source.replace(" ", "")
    for name, text in settings.items():
        if name in MODEL_SETTINGS or not (name.endswith("_path") or name == "data_files"):
            continue
        path = _local(_literal(text), cwd)
        if path is None:
            continue
        if not path.exists():
            problems.append(f"data not found: {name} = {path}")
        elif path.is_file() and path.suffix in (".json", ".jsonl"):
            problem = dataset_problem(path, needs_conversation)
            if problem:
                problems.append(problem)
    return problems
