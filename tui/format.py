"""Small text formatters shared by the screens."""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text

from themes.colours import state_colour


def status_text(state: str, variables: Mapping[str, str]) -> Text:
    """The status word (a RunStatus) in bold, in its theme colour (`variables` is `App.theme_variables`)."""
    return Text(state, style=f"bold {state_colour(state, variables)}")


def eta_text(seconds: float | None) -> str:
    """h:mm:ss, or '' when unknown."""
    if seconds is None:
        return ""
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
