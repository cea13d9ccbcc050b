"""Theme colours for Rich styles: a theme variable, or a run state's colour, resolved to a colour Rich always parses."""

from __future__ import annotations

from collections.abc import Mapping

from textual.color import Color, ColorParseError

STATE_VARIABLE = {  # run state (a RunStatus word) -> the theme variable it is drawn in
    "unknown": "foreground",
    "queued": "accent",
    "running": "success",
    "stalled": "warning",
    "failed": "error",
    "finished": "primary",
    "stopped": "text-muted",
    "damaged": "error",
}
SAFE_COLOUR = "#808080"  # mid grey: readable on a dark and on a light background alike


def theme_colour(name: str, variables: Mapping[str, str]) -> str:
    """Theme variable `name` (of `App.theme_variables`) as a colour Rich parses: Textual's "auto N%", alpha and ANSI
    values are resolved over the theme's background; one that does not parse falls back to the foreground, then grey."""
    background = _parsed(variables.get("background", "")) or Color.parse(SAFE_COLOUR)
    for value in (variables.get(name, ""), variables.get("foreground", "")):
        colour = _parsed(value)
        if colour is not None:
            return (background + colour).rich_color.name
    return SAFE_COLOUR


def state_colour(state: str, variables: Mapping[str, str]) -> str:
    """The colour run state `state` (a RunStatus) is drawn in under the theme whose `App.theme_variables` are given."""
    return theme_colour(STATE_VARIABLE.get(state, "foreground"), variables)


def _parsed(value: str) -> Color | None:
    """A theme variable's value as a colour: a Textual colour or "auto", either with an alpha ("auto 60%"); else None."""
    text, _, alpha = value.strip().rpartition(" ")
    if not (text and alpha.endswith("%")):
        text, alpha = value.strip(), "100%"
    try:
        fraction = float(alpha[:-1]) / 100
        return Color.automatic(fraction * 100) if text == "auto" else Color.parse(text).multiply_alpha(fraction)
    except (ColorParseError, ValueError):
        return None
