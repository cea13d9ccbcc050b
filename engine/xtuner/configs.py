"""XTuner configs: find the built-in ones, read and edit settings by syntax tree, never by running them."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import tempfile
from pathlib import Path

from engine.errors import XtunerError


class ConfigError(XtunerError):
    """A config cannot be read or edited the way that was asked."""


def builtin_root() -> Path:
    """The `configs` folder of the installed xtuner package, found without importing it."""
    spec = importlib.util.find_spec("xtuner")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("xtuner is not installed in this Python")
    return Path(list(spec.submodule_search_locations)[0]) / "configs"


def _builtin_paths() -> dict[str, Path]:
    """Name -> path of every built-in config, named the way `xtuner list-cfg` names them."""
    return {
        p.stem: p
        for p in sorted(builtin_root().rglob("*.py"))
        if not p.name.startswith(("_", ".")) and "__pycache__" not in p.parts
    }


def list_builtin(pattern: str = "") -> list[str]:
    """Sorted names of the built-in configs containing `pattern` (case-insensitive)."""
    return sorted(name for name in _builtin_paths() if pattern.lower() in name.lower())


def find_builtin(name: str) -> Path:
    """The file of the built-in config `name` (with or without `.py`)."""
    path = _builtin_paths().get(name.removesuffix(".py"))
    if path is None:
        raise ConfigError(f"no built-in config named {name!r}")
    return path


def copy_builtin(name: str, folder: Path) -> Path:
    """Copy a built-in config into `folder` as `<name>_copy.py`, like `xtuner copy-cfg`, never replacing a file."""
    source = find_builtin(name)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name.removesuffix('.py')}_copy.py"
    with tempfile.TemporaryDirectory(prefix=".xtui-copy-", dir=folder) as staging:
        copied = Path(shutil.copyfile(source, Path(staging) / target.name))
        try:  # claim the name first: fails, and replaces nothing, when the file exists
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            raise ConfigError(f"{target} already exists: xtui never overwrites it") from None
        os.replace(copied, target)
    return target


def _parse(source: str) -> ast.Module:
    """The syntax tree of a config, or ConfigError when it is not valid Python."""
    try:
        return ast.parse(source)
    except SyntaxError as exc:
        raise ConfigError(f"not valid Python: {exc}") from exc
    except (RecursionError, MemoryError):
        raise ConfigError("nests too deeply to be read") from None


class _Offsets:
    """Turns the (line, UTF-8 byte column) positions of `ast` into string offsets."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines = source.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def at(self, lineno: int, col: int) -> int:
        """String offset of a 1-based line and a byte column."""
        line = self.lines[lineno - 1] if lineno <= len(self.lines) else ""
        return self.starts[lineno - 1] + len(line.encode()[:col].decode())

    def span(self, node: ast.AST) -> tuple[int, int]:
        """Start and end string offsets of a node."""
        return self.at(node.lineno, node.col_offset), self.at(node.end_lineno, node.end_col_offset)


def _is_setting_value(node: ast.expr) -> bool:
    """True for a literal (numbers, strings, lists, dicts...) or a dotted name like `A.b`."""
    while isinstance(node, ast.Attribute):
        node = node.value
    if isinstance(node, ast.Name):
        return True
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _top_assignments(tree: ast.Module) -> dict[str, ast.Assign]:
    """The last top-level `name = value` statement of each name."""
    found: dict[str, ast.Assign] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node
    return found


def read_settings(source: str) -> dict[str, str]:
    """Top-level settings with a literal or dotted-name value: name -> the value's source text."""
    offsets = _Offsets(source)
    settings = {}
    for name, node in _top_assignments(_parse(source)).items():
        if _is_setting_value(node.value):
            start, end = offsets.span(node.value)
            settings[name] = source[start:end]
    return settings


def _check_value(name: str, value: str) -> None:
    """ConfigError unless `value` is one Python expression."""
    try:
        ast.parse(value.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"value for {name!r} is not a Python expression: {value!r}") from exc


def _apply(source: str, edits: list[tuple[int, int, str]]) -> str:
    """Replace string spans (start, end, text), which must not overlap, and check the result parses."""
    for start, end, text in sorted(edits, reverse=True):
        source = source[:start] + text + source[end:]
    _parse(source)
    return source


def edit_settings(source: str, changes: dict[str, str]) -> str:
    """Replace the values (Python source text) of existing top-level assignments, leaving all else as it was."""
    offsets = _Offsets(source)
    assignments = _top_assignments(_parse(source))
    edits = []
    for name, value in changes.items():
        if name not in assignments:
            raise ConfigError(f"{name!r} is not a top-level assignment of this config")
        _check_value(name, value)
        start, end = offsets.span(assignments[name].value)
        edits.append((start, end, value.strip()))
    return _apply(source, edits)


def _keywords(call: ast.expr, where: str) -> dict[str, ast.keyword]:
    """The keyword arguments of a `dict(...)`-style call, or ConfigError when it is not a call."""
    if not isinstance(call, ast.Call):
        raise ConfigError(f"{where} is not a call like dict(...)")
    return {kw.arg: kw for kw in call.keywords if kw.arg is not None}


def _find_call(tree: ast.Module, path: str) -> ast.Call:
    """The call at a dotted path: a top-level name, then keyword names; in a list, the item whose `type=` is the step."""
    first, *steps = path.split(".")
    assignments = _top_assignments(tree)
    if first not in assignments:
        raise ConfigError(f"{first!r} is not a top-level assignment of this config")
    node, where = assignments[first].value, first
    for step in steps:
        if isinstance(node, ast.List):
            items = [e for e in node.elts if isinstance(e, ast.Call) and "type" in _keywords(e, where)]
            matches = [e for e in items if ast.unparse(_keywords(e, where)["type"].value) == step]
            if len(matches) != 1:
                raise ConfigError(f"{where} has no single item with type={step}")
            node = matches[0]
        else:
            keywords = _keywords(node, where)
            if step not in keywords:
                raise ConfigError(f"{where} has no {step}= argument")
            node = keywords[step].value
        where = f"{where}.{step}"
    _keywords(node, where)
    return node


def _line_indent(source: str, offset: int) -> str | None:
    """The indentation before `offset` when only whitespace precedes it on its line, else None."""
    line_start = source.rfind("\n", 0, offset) + 1
    before = source[line_start:offset]
    return before if before.strip() == "" else None


def _removal_span(source: str, start: int, end: int) -> tuple[int, int]:
    """The span that removes one keyword argument together with its comma and, if alone on its lines, those lines."""
    comma = re.compile(r"[ \t]*,").match(source, end)
    if comma is None:  # the last argument without a trailing comma: take the comma before it
        before = re.search(r",\s*\Z", source[:start])
        return (before.start() if before else start), end
    end = comma.end()
    line_end = re.compile(r"[ \t]*(#[^\n]*)?\n").match(source, end)
    if _line_indent(source, start) is not None and line_end is not None:
        return source.rfind("\n", 0, start) + 1, line_end.end()
    return start, re.compile(r"[ \t]*").match(source, end).end()


def edit_call(source: str, path: str, changes: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> str:
    """Set (replace or add) and drop keyword arguments of the `dict(...)` call at `path`, e.g. `model.llm`."""
    tree = _parse(source)
    offsets = _Offsets(source)
    call = _find_call(tree, path)
    keywords = _keywords(call, path)
    edits = []
    for name in drop:
        if name not in keywords:
            raise ConfigError(f"{path} has no {name}= argument to drop")
        edits.append((*_removal_span(source, *offsets.span(keywords[name])), ""))
    added = []
    for name, value in (changes or {}).items():
        _check_value(f"{path}.{name}", value)
        if name in keywords:
            edits.append((*offsets.span(keywords[name].value), value.strip()))
        else:
            added.append(f"{name}={value.strip()}")
    if added:
        kept = [kw for kw in call.keywords if kw.arg not in drop]
        if not kept:
            raise ConfigError(f"{path} has no keyword argument to add after")
        last_start, last_end = offsets.span(kept[-1])
        indent = _line_indent(source, last_start)
        sep = f",\n{indent}" if indent is not None else ", "
        edits.append((last_end, last_end, "".join(sep + text for text in added)))
    return _apply(source, edits)


def insert_after_imports(source: str, line: str) -> str:
    """Insert one top-level statement on its own line after the last top-level import."""
    try:
        statements = ast.parse(line).body
    except SyntaxError as exc:
        raise ConfigError(f"not a Python statement: {line!r}") from exc
    if len(statements) != 1:
        raise ConfigError(f"not one Python statement: {line!r}")
    imports = [n for n in _parse(source).body if isinstance(n, ast.Import | ast.ImportFrom)]
    if not imports:
        raise ConfigError("the config has no top-level import to insert after")
    offsets = _Offsets(source)
    at = offsets.starts[imports[-1].end_lineno]
    return _apply(source, [(at, at, line.rstrip("\n") + "\n")])


def rename_import(source: str, module: str, old: str, new: str) -> str:
    """Import `new` instead of `old` in the top-level `from module import ...`, adding no import statement."""
    offsets = _Offsets(source)
    for node in _parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.module == module and node.level == 0:
            start, end = offsets.span(node)
            text, count = re.subn(rf"\b{re.escape(old)}\b", new, source[start:end])
            if count == 1:
                return _apply(source, [(start, end, text)])
    raise ConfigError(f"no `from {module} import {old}` in this config")


def resolve_config(name: str) -> Path:
    """A config path, or the file of an XTuner built-in config name."""
    path = Path(name)
    if path.is_file():
        return path
    if path.suffix == ".py" or "/" in name:
        raise ConfigError(f"config not found: {name}")
    try:
        return find_builtin(name)
    except ConfigError:
        raise ConfigError(f"unknown config {name!r}: not a file and not an XTuner built-in config") from None
