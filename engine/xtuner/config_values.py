"""A config's top-level values worked out from its syntax tree (literals and arithmetic on them), and its PART 1 settings."""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.xtuner.configs import _parse

UNKNOWN = object()  # a value that only running the config would give
MAX_SIZE = 1 << 20  # longest string or list, and largest exponent, worked out: `"a" * 10**12` is not
_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}  # fmt: skip
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_CALLS = {"int": int, "float": float, "str": str, "bool": bool, "round": round, "min": min, "max": max, "abs": abs}
_PART = re.compile(r"#.*\bPART\s+(\d+)\b")


def _sized(value: object) -> object:
    """`value`, or UNKNOWN when it is a string, list or number too large to be a setting."""
    if isinstance(value, str | list | tuple) and len(value) > MAX_SIZE:
        return UNKNOWN
    if isinstance(value, int) and value.bit_length() > 64 * 8:
        return UNKNOWN
    return value


def _binary(op: ast.operator, left: object, right: object) -> object:
    """`left op right`, refusing operands that would build something huge."""
    if UNKNOWN in (left, right):
        return UNKNOWN
    if isinstance(op, ast.Pow) and (not isinstance(right, int | float) or abs(right) > 64 or abs(left) > MAX_SIZE):
        return UNKNOWN
    if (
        isinstance(op, ast.Mult)
        and isinstance(left, str | list | tuple | int)
        and isinstance(right, str | list | tuple | int)
    ):
        sizes = [len(v) if not isinstance(v, int) else 1 for v in (left, right)]
        counts = [v for v in (left, right) if isinstance(v, int) and not isinstance(v, bool)]
        if max(sizes) * (max(counts) if counts else 1) > MAX_SIZE:
            return UNKNOWN
    if isinstance(op, ast.Mod) and isinstance(left, str):
        return UNKNOWN  # %-formatting: not a setting's arithmetic
    return _BINARY[type(op)](left, right)


def _evaluate(node: ast.expr, known: dict[str, object]) -> object:
    """The value of an expression of literals, known names and arithmetic; UNKNOWN for anything else."""
    match node:
        case ast.Constant(value=value):
            return value
        case ast.Name(id=name):
            return known.get(name, UNKNOWN)
        case ast.List(elts=items) | ast.Tuple(elts=items):
            values = [_evaluate(item, known) for item in items]
            if UNKNOWN in values:
                return UNKNOWN
            return values if isinstance(node, ast.List) else tuple(values)
        case ast.Dict(keys=keys, values=items) if None not in keys:
            pairs = [(_evaluate(k, known), _evaluate(v, known)) for k, v in zip(keys, items, strict=True)]
            if any(UNKNOWN in pair for pair in pairs):
                return UNKNOWN
            return dict(pairs)
        case ast.UnaryOp(op=op, operand=operand) if type(op) in _UNARY:
            value = _evaluate(operand, known)
            return UNKNOWN if value is UNKNOWN else _UNARY[type(op)](value)
        case ast.BinOp(op=op, left=left, right=right) if type(op) in _BINARY:
            return _binary(op, _evaluate(left, known), _evaluate(right, known))
        case ast.Call(func=ast.Name(id=name), args=args, keywords=[]) if name in _CALLS and name not in known:
            values = [_evaluate(arg, known) for arg in args]
            return UNKNOWN if UNKNOWN in values else _CALLS[name](*values)
    return UNKNOWN


def _safely(compute: Callable[[], object]) -> object:
    """What `compute` gives, UNKNOWN for the errors of arithmetic on odd operands (and for too deep nesting)."""
    try:
        return _sized(compute())
    except (ArithmeticError, TypeError, ValueError, RecursionError):
        return UNKNOWN


def _bound(node: ast.AST) -> Iterator[str]:
    """The top-level names a statement binds: targets, imports, and the names of functions and classes (not their insides)."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        yield node.name
        return
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield from ((alias.asname or alias.name).partition(".")[0] for alias in node.names)
        return
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
        yield node.id
    for child in ast.iter_child_nodes(node):
        yield from _bound(child)


def top_level_names(source: str) -> set[str]:
    """Every name a config binds at top level: assignments, imports, functions and classes."""
    return {name for node in _parse(source).body for name in _bound(node)}


def config_values(source: str) -> dict[str, object]:
    """Top-level names whose values follow from literals and arithmetic, in the order the config sets them.

    `data_path = data_root + "x.json"` and `accumulative_counts *= sequence_parallel_size` are followed; a name
    also set inside `if`, `for` or a function, or set from a call or an import, is left out.
    """
    known: dict[str, object] = {}
    for node in _parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            known[node.targets[0].id] = _safely(lambda: _evaluate(node.value, known))  # noqa: B023 (called at once)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            before = known.get(node.target.id, UNKNOWN)
            known[node.target.id] = _safely(lambda: _binary(node.op, before, _evaluate(node.value, known)))  # noqa: B023
        else:
            known.update(dict.fromkeys(_bound(node), UNKNOWN))
    return {name: value for name, value in known.items() if value is not UNKNOWN}


def local_path(value: object, base: Path) -> Path | None:
    """The path a setting names when it is clearly local (absolute, ./, ../, ~ or a .json file)."""
    if not isinstance(value, str) or not value:
        return None
    if value.startswith(("/", "./", "../", "~")) or value.endswith((".json", ".jsonl")):
        path = Path(value).expanduser()
        return path if path.is_absolute() else base / path
    return None


@dataclass(frozen=True, slots=True)
class Setting:
    """One PART 1 setting: name, source text, worked-out value (when `known`), line, section heading, trailing comment."""

    name: str
    text: str
    value: object
    known: bool
    line: int
    section: str
    comment: str


def _part_lines(lines: list[str]) -> tuple[int, int]:
    """The 1-based line range of PART 1 (the whole file when it has no PART banners)."""
    marks = {int(m.group(1)): n for n, text in enumerate(lines, start=1) if (m := _PART.match(text.strip()))}
    if 1 not in marks:
        return 1, len(lines) + 1
    later = [line for part, line in marks.items() if part > 1 and line > marks[1]]
    return marks[1], min(later, default=len(lines) + 1)


def _comment_after(line: str, byte_col: int) -> str:
    """The `# comment` after a value that ends at `byte_col` of `line`, without the `#`."""
    rest = line.encode()[byte_col:].decode(errors="replace").strip()
    return rest[1:].strip() if rest.startswith("#") else ""


def part1_settings(source: str) -> list[Setting]:
    """The settings of PART 1 (or of the whole file when it has no PART banners), each with its value and heading."""
    values = config_values(source)
    lines = source.split("\n")
    first, end = _part_lines(lines)
    headings = {
        n: text.strip().lstrip("#").strip() for n, text in enumerate(lines, start=1) if text.strip().startswith("#")
    }
    found: dict[str, Setting] = {}
    for node in _parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        if not first <= node.lineno < end:
            continue
        name = node.targets[0].id
        section = next(
            (headings[n] for n in range(node.lineno - 1, first, -1) if n in headings and _is_heading(headings[n])), ""
        )
        found[name] = Setting(
            name=name,
            text=ast.get_source_segment(source, node.value) or "",
            value=values.get(name),
            known=name in values,
            line=node.lineno,
            section=section,
            comment=_comment_after(lines[node.end_lineno - 1], node.end_col_offset),
        )
    return list(found.values())


def _is_heading(text: str) -> bool:
    """True for a comment line that names a group of settings, not a banner of #s or a PART title."""
    return bool(text) and not set(text) <= {"#", "=", "-", " "} and not _PART.match("#" + text)
