"""What a config trains on, read from its syntax tree: each dataset's files, map_fn and template, and the chat hook's template."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from engine.xtuner.config_values import config_values, local_path
from engine.xtuner.configs import _parse, read_settings
from engine.xtuner.templates import template_of_config

DATA_KEYWORDS = ("dataset", "data_path", "data_files")  # where a dataset's call names its files
LOADER_NAMES = ("json", "csv", "parquet", "text", "arrow")  # `load_dataset(path=...)` builders, not files


@dataclass(frozen=True, slots=True)
class ConfigDataset:
    """One dataset of a config: its data files (as written), the map_fn's source text, the template name, the folders."""

    files: tuple[str, ...]
    map_fn: str
    template: str | None
    image_folder: str | None


@dataclass(frozen=True, slots=True)
class ConfigTraining:
    """What a config trains on and how it talks during training."""

    datasets: tuple[ConfigDataset, ...]
    chat_template: str | None  # EvaluateChatHook's prompt_template, as a template name
    has_chat_hook: bool
    save_last: bool  # CheckpointHook also saves at the last iteration (mmengine's default)


def _calls(tree: ast.AST) -> list[ast.Call]:
    """Every call in the tree, outermost first."""
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    """The value of a call's keyword argument `name`, or None."""
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _strings(node: ast.expr, values: dict[str, object]) -> list[str]:
    """The strings an expression names: literals, and names of settings whose worked-out value is a string."""
    found = []
    for child in ast.walk(node):
        if isinstance(child, ast.Constant) and isinstance(child.value, str):
            found.append(child.value)
        elif isinstance(child, ast.Name) and isinstance(values.get(child.id), str):
            found.append(values[child.id])
    return found


def _template(node: ast.expr | None, source: str) -> str | None:
    """The template name an expression stands for (`prompt_template`, `PROMPT_TEMPLATE.x`, a dict), or None."""
    if node is None:
        return None
    # the usual `template=prompt_template` stands for that setting's text
    text = read_settings(source).get(node.id) if isinstance(node, ast.Name) else ast.get_source_segment(source, node)
    return template_of_config(f"prompt_template = {text}") if text else None


def _files(call: ast.Call, values: dict[str, object]) -> list[str]:
    """The data files (or hub ids) a dataset's call names: `data_path=`, `data_files=`, `dataset=dict(path=, data_files=)`."""
    found = []
    for name in DATA_KEYWORDS:
        node = _keyword(call, name)
        if isinstance(node, ast.Call) and name == "dataset":
            found += [
                s
                for kw in ("path", "data_files")
                if (inner := _keyword(node, kw)) is not None
                for s in _strings(inner, values)
            ]
        elif node is not None:
            found += _strings(node, values)
    return [f for f in dict.fromkeys(found) if f not in LOADER_NAMES]


def _is_type(call: ast.Call, name: str) -> bool:
    """True when the call's `type=` ends in `name` (`EvaluateChatHook`, `xtuner.engine.hooks.EvaluateChatHook`)."""
    kind = _keyword(call, "type")
    return kind is not None and ast.unparse(kind).strip("'\"").rpartition(".")[2] == name


def config_training(source: str) -> ConfigTraining:
    """The datasets (every call with a `dataset_map_fn=`), the chat hook's template and the checkpoint policy."""
    tree = _parse(source)
    values = config_values(source)
    datasets = []
    for call in _calls(tree):
        map_fn = _keyword(call, "dataset_map_fn")
        if map_fn is None:
            continue
        template_fn = _keyword(call, "template_map_fn")
        template = _template(_keyword(template_fn, "template"), source) if isinstance(template_fn, ast.Call) else None
        folder = _keyword(call, "image_folder")
        datasets.append(
            ConfigDataset(
                files=tuple(_files(call, values)),
                map_fn=ast.unparse(map_fn),
                template=template,
                image_folder=next(iter(_strings(folder, values)), None) if folder is not None else None,
            )
        )
    hooks = [c for c in _calls(tree) if _is_type(c, "EvaluateChatHook")]
    savers = [c for c in _calls(tree) if _is_type(c, "CheckpointHook")]
    save_last = _keyword(savers[0], "save_last") if savers else None
    return ConfigTraining(
        datasets=tuple(datasets),
        chat_template=_template(_keyword(hooks[0], "prompt_template"), source) if hooks else None,
        has_chat_hook=bool(hooks),
        save_last=not (isinstance(save_last, ast.Constant) and save_last.value is False),
    )


def dataset_reading(data: Path, datasets: tuple[ConfigDataset, ...], cwd: Path) -> ConfigDataset | None:
    """The config's dataset that reads the file `data` (the only one when there is just one), or None."""
    for dataset in datasets:
        if any((p := local_path(f, cwd)) is not None and p.resolve() == data.resolve() for f in dataset.files):
            return dataset
    return datasets[0] if len(datasets) == 1 else None
