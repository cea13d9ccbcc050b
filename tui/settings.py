"""User settings that outlive a session (the theme), in $XDG_CONFIG_HOME/xtui/settings.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

from engine.files import write_atomic


def settings_path() -> Path:
    """Where the settings live; XTUI_CONFIG overrides it (tests use that)."""
    if os.environ.get("XTUI_CONFIG"):
        return Path(os.environ["XTUI_CONFIG"])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "xtui" / "settings.json"


def load() -> dict:
    """The saved settings, {} when there are none or the file is unreadable."""
    try:
        data = json.loads(settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save(**changes: object) -> None:
    """Merge `changes` into the saved settings (atomic write)."""
    write_atomic(settings_path(), json.dumps({**load(), **changes}, indent=2))
