"""What the subcommands share: argument checks and how a path is printed for a shell."""

from __future__ import annotations

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
