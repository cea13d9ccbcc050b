"""xtui's own Textual themes; `xtui-256` uses only colours of the xterm 256-colour cube."""

from textual.theme import Theme

XTUI_DARK = Theme(
    name="xtui-dark",
    primary="#4FA3E0",
    secondary="#7A8CCF",
    accent="#F2A65A",
    foreground="#D8DEE9",
    background="#161A21",
    surface="#1E232C",
    panel="#262C37",
    success="#7FC97F",
    warning="#F0C05A",
    error="#E06C75",
    dark=True,
)

XTUI_LIGHT = Theme(
    name="xtui-light",
    primary="#1F6FB2",
    secondary="#5A62A8",
    accent="#C4621D",
    foreground="#1F2430",
    background="#F7F7F4",
    surface="#EDEDE8",
    panel="#E0E2DC",
    success="#2E8540",
    warning="#A86B00",
    error="#C0392B",
    dark=False,
)

# Every colour here is an exact entry of the xterm 256-colour palette, so tmux with
# TERM=screen-256color shows exactly these (no nearest-colour rounding).
XTUI_256 = Theme(
    name="xtui-256",
    primary="#5f87d7",  # 68
    secondary="#8787af",  # 103
    accent="#ffaf5f",  # 215
    foreground="#d0d0d0",  # 252
    background="#121212",  # 233
    surface="#1c1c1c",  # 234
    panel="#303030",  # 236
    success="#87d787",  # 114
    warning="#ffd75f",  # 221
    error="#ff5f5f",  # 203
    dark=True,
)

THEMES = (XTUI_DARK, XTUI_LIGHT, XTUI_256)
DEFAULT_THEME = XTUI_DARK.name
