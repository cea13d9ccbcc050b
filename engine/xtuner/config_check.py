"""Checks of a config before launch, read without executing it: local model and data paths, data format."""

from __future__ import annotations

from pathlib import Path

from engine.data.formats import DatasetFormat, format_read_by
from engine.data.records import DatasetError
from engine.data.report import inspect_dataset
from engine.xtuner.config_datasets import config_training, dataset_reading
from engine.xtuner.config_values import config_values, local_path
from engine.xtuner.configs import ConfigError

MODEL_SETTINGS = ("pretrained_model_name_or_path", "llm_name_or_path", "visual_encoder_name_or_path")


def dataset_problem(path: Path, needs_conversation: bool) -> str | None:
    """Why a JSON dataset cannot train, or None: unreadable, bad JSON in any record, empty, or not XTuner's format.

    Every record is read, as a stream: a mistake in record 100,000 is found before a GPU hour is spent.
    """
    return _dataset_problem(path, DatasetFormat.CONVERSATION if needs_conversation else None, "None")


def _dataset_problem(path: Path, expected: DatasetFormat | None, map_fn: str) -> str | None:
    """The first reason the dataset cannot be read as `expected` (any JSON objects when None) by `map_fn`, or None."""
    try:
        report = inspect_dataset(path, expected, first_only=True, own_map_fn=expected is None)
    except DatasetError as exc:
        return f"bad dataset {path}: {exc}"
    if report.problems:
        first = report.problems[0]
        reads = f", which this config reads (dataset_map_fn={map_fn})" if expected and not first.field else ""
        return f"bad dataset {path}: {first}{reads}"
    return None if report.records else f"bad dataset {path}: no records"


def config_problems(config: Path, cwd: Path) -> list[str]:
    """Problems a launch of `config` from `cwd` would hit at once: missing local model or data, bad data."""
    source = config.read_text(encoding="utf-8")
    try:
        values = config_values(source)
        training = config_training(source)
    except ConfigError as exc:
        return [str(exc)]
    except (RecursionError, MemoryError):
        return [f"config {config} nests too deeply to be read"]
    problems = []
    for name in MODEL_SETTINGS:
        path = local_path(values.get(name), cwd)
        if path is not None and not path.exists():
            problems.append(f"model not found: {name} = {path}")
    for name, value in values.items():
        if name in MODEL_SETTINGS or not (name.endswith("_path") or name == "data_files"):
            continue
        path = local_path(value, cwd)
        if path is None:
            continue
        if not path.exists():
            problems.append(f"data not found: {name} = {path}")
        elif path.is_file() and path.suffix in (".json", ".jsonl"):
            reading = dataset_reading(path, training.datasets, cwd)  # the one dataset, when the config has one
            map_fn = reading.map_fn if reading else ""
            problem = _dataset_problem(path, format_read_by(map_fn), map_fn)
            if problem:
                problems.append(problem)
    return problems
