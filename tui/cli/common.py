"""What the subcommands share: argument checks, JSON that stays JSON, and how a path is printed for a shell."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

from engine.errors import UsageError


def existing_dir(path: str) -> Path:
    """A folder argument that must exist."""
    folder = Path(path)
    if not folder.is_dir():
        raise UsageError(f"no such folder: {path}")
    return folder


def shell(*words: object) -> str:
    """A command line the user can paste: every word quoted for the shell."""
    return " ".join(shlex.quote(str(w)) for w in words)


def _finite(value: object) -> object:
    """`value` with every NaN or infinite float replaced by its name ("nan", "inf", "-inf"), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def to_json(value: object, **options: object) -> str:
    """Strict JSON (a NaN loss is written as the string "nan", never as the bare NaN that parsers reject)."""
    return json.dumps(_finite(value), ensure_ascii=False, allow_nan=False, **options)


def run_app(app) -> int:
    """Run the TUI until it quits; its exit status (1 after a bug it caught and logged)."""
    app.run()
    return app.return_code or 0
