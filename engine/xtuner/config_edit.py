"""PART 1 edits as a user types them (KEY=VALUE): values checked, the change shown as a diff, the rest kept byte for byte."""

from __future__ import annotations

import ast
import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine.files import write_atomic
from engine.xtuner.config_check import MODEL_SETTINGS
from engine.xtuner.config_values import config_values, local_path, part1_settings, top_level_names
from engine.xtuner.configs import ConfigError, edit_settings, read_settings
from engine.xtuner.templates import template

FOLDER_SETTINGS = ("image_folder", "data_root")
TEXT_SETTINGS = ("SYSTEM", "evaluation_images", *FOLDER_SETTINGS)
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


def _whole(v: object) -> bool:
    """True for an int that is not a bool."""
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: object) -> bool:
    """True for an int or a float that is not a bool."""
    return isinstance(v, int | float) and not isinstance(v, bool)


# What each well-known setting must be: a test of the value and the words for it.
RANGES = {
    **dict.fromkeys(
        ("batch_size", "accumulative_counts", "max_epochs", "max_length", "save_steps", "evaluation_freq", "sequence_parallel_size"),
        (lambda v: _whole(v) and v >= 1, "a whole number of at least 1"),
    ),
    "dataloader_num_workers": (lambda v: _whole(v) and v >= 0, "a whole number of at least 0"),
    "save_total_limit": (lambda v: _whole(v) and (v == -1 or v >= 1), "-1 (keep all) or a whole number of at least 1"),
    "lr": (lambda v: _number(v) and 0 < v < 1, "a number between 0 and 1"),
    "warmup_ratio": (lambda v: _number(v) and 0 <= v < 1, "a number from 0 up to (not including) 1"),
    "weight_decay": (lambda v: _number(v) and v >= 0, "a number of at least 0"),
    "max_norm": (lambda v: _number(v) and v > 0, "a number above 0"),
    "betas": (lambda v: isinstance(v, list | tuple) and len(v) == 2 and all(_number(b) and 0 <= b < 1 for b in v), "two numbers from 0 up to 1, like (0.9, 0.999)"),
    "evaluation_inputs": (lambda v: isinstance(v, list) and all(isinstance(q, str) for q in v), 'a list of questions, like ["你是谁"]'),
    "SYSTEM": (lambda v: isinstance(v, str), "text"),
    **dict.fromkeys(("pack_to_max_length", "use_varlen_attn"), (lambda v: isinstance(v, bool), "True or False")),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Change:
    """One setting's new value, as source text before and after."""

    name: str
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class ConfigEdit:
    """A checked edit of a config file, not yet written: the text as read, as edited, and each change."""

    path: Path
    source: str
    edited: str
    changes: tuple[Change, ...]

    @property
    def diff(self) -> str:
        """The edit as a unified diff."""
        lines = difflib.unified_diff(
            self.source.splitlines(keepends=True), self.edited.splitlines(keepends=True), str(self.path), str(self.path)
        )
        return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def split_assignment(text: str) -> tuple[str, str]:
    """`KEY=VALUE` as (KEY, VALUE); ConfigError when it is not one."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip().isidentifier():
        raise ConfigError(f"not KEY=VALUE: {text!r}")
    return name.strip(), value


def _is_text_setting(name: str, current: object) -> bool:
    """True for a setting whose value is text: it is text now, or it names a path, a model or a folder."""
    return isinstance(current, str) or name in TEXT_SETTINGS or name in MODEL_SETTINGS or _names_path(name)


def _names_path(name: str) -> bool:
    """True for a setting named as a file path (`data_path`, `pretrained_pth`, `data_files`)."""
    return name.endswith(("_path", "_pth")) or name == "data_files"


def setting_text(name: str, typed: str, source: str) -> str:
    """The Python source text for `typed`: a template name, a Python value, a name the config defines, or plain text."""
    typed = typed.strip()
    if name == "prompt_template":
        if "PROMPT_TEMPLATE" not in top_level_names(source):
            raise ConfigError("the config does not import PROMPT_TEMPLATE, which prompt_template names")
        return f"PROMPT_TEMPLATE.{template(typed).name}"
    if _DOTTED.fullmatch(typed) and typed.partition(".")[0] in top_level_names(source):
        return typed  # SYSTEM=SYSTEM_TEMPLATE.alpaca
    is_text = _is_text_setting(name, config_values(source).get(name))
    try:
        value = ast.literal_eval(typed)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        if is_text:
            return repr(typed)  # data_path=./data/x.json
        raise ConfigError(f"{name}={typed!r} is not a Python value (quote text: {name}='...')") from None
    if is_text and not isinstance(value, str | None):
        return repr(typed)  # SYSTEM=123 is the text "123"
    return typed


def _kind_matches(current: object, value: object) -> bool:
    """True when `value` can stand where `current` stood (an int for a float, a list for a tuple, anything for None)."""
    if current is None:
        return True
    if isinstance(current, bool) or isinstance(value, bool):
        return isinstance(current, bool) == isinstance(value, bool)
    if _number(current):
        return _number(value) and (isinstance(current, float) or _whole(value))
    if isinstance(current, list | tuple):
        return isinstance(value, list | tuple)
    return type(value) is type(current)


def value_problem(name: str, text: str, source: str, cwd: Path) -> str | None:
    """Why the source text `text` is a wrong value for the setting `name`, or None."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None  # a name the config defines (checked when it was typed)
    values = config_values(source)
    current = values.get(name)
    if name in RANGES and not RANGES[name][0](value):
        return f"{name} must be {RANGES[name][1]}, not {text}"
    if name in values and not _kind_matches(current, value):
        return f"{name} holds {type(current).__name__} ({current!r}), not {type(value).__name__} ({text})"
    if isinstance(value, str) and value:
        path = (cwd / Path(value).expanduser()) if name in FOLDER_SETTINGS else None
        path = path or (local_path(value, cwd) if name in MODEL_SETTINGS or _names_path(name) else None)
        if path is not None and not path.exists():
            return f"{name}: no such {'folder' if name in FOLDER_SETTINGS else 'file or folder'}: {path}"
    return None


def plan_edit(path: Path, assignments: list[str], cwd: Path) -> ConfigEdit:
    """The edit that `KEY=VALUE` assignments make to the config at `path`, every value checked; nothing is written."""
    source = _read(path)
    before = read_settings(source)
    editable = set(before) | {s.name for s in part1_settings(source)}
    texts: dict[str, str] = {}
    for assignment in assignments:
        name, typed = split_assignment(assignment)
        if name not in editable and name in top_level_names(source):
            raise ConfigError(
                f"{name} is not a setting (a plain value, or PART 1): xtui does not replace a config's dict(...) parts"
            )
        texts[name] = setting_text(name, typed, source)
        problem = value_problem(name, texts[name], source, cwd)
        if problem:
            raise ConfigError(problem)
    edited = edit_settings(source, texts)
    after = read_settings(edited)
    changes = tuple(Change(name, before.get(name, ""), after.get(name, text)) for name, text in texts.items())
    return ConfigEdit(path, source, edited, changes)


def _read(path: Path) -> str:
    """A config's text exactly as stored (CRLF kept), or ConfigError."""
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def write_edit(edit: ConfigEdit) -> None:
    """Write a planned edit (atomically, keeping the file's mode); ConfigError when the file changed since it was read."""
    target = edit.path.resolve()  # a link to a config stays a link
    if _read(target) != edit.source:
        raise ConfigError(f"{edit.path} changed since it was read: run the command again")
    mode = target.stat().st_mode & 0o7777
    write_atomic(target, edit.edited)
    os.chmod(target, mode)
