"""User settings that outlive a session, typed, in the settings file engine.locations names."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace

from engine import locations
from engine.errors import UsageError
from engine.files import write_atomic


@dataclass(frozen=True, slots=True)
class Settings:
    """What xtui remembers between sessions; a value of the wrong type in the file reads as the default."""

    theme: str | None = None

    @classmethod
    def load(cls) -> Settings:
        """The saved settings; the defaults when the file is missing, unreadable or not an object."""
        try:
            data = json.loads(locations.settings_file().read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        known = {f.name: data[f.name] for f in fields(cls) if isinstance(data.get(f.name), str)}
        return cls(**known)

    def save(self, **changes: object) -> Settings:
        """These settings with `changes`, written atomically (keys other versions wrote are kept)."""
        updated = replace(self, **changes)
        path = locations.settings_file()
        try:
            kept = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            kept = {}
        try:
            write_atomic(path, json.dumps({**(kept if isinstance(kept, dict) else {}), **asdict(updated)}, indent=2))
        except OSError as exc:
            raise UsageError(f"settings not saved to {path}: {exc.strerror or exc}") from None
        return updated
