"""Desktop notifications by terminal escape sequence (OSC 9 and OSC 777), passed through tmux."""

from __future__ import annotations


def notification_sequence(title: str, body: str, in_tmux: bool) -> str:
    """OSC 777 (urxvt, foot, ghostty, WezTerm) and OSC 9 (iTerm2, Windows Terminal, kitty), tmux-wrapped if needed."""
    clean = lambda s: "".join(ch for ch in s if ch.isprintable() and ch != ";")  # noqa: E731
    sequences = [f"\x1b]777;notify;{clean(title)};{clean(body)}\x07", f"\x1b]9;{clean(title)}: {clean(body)}\x07"]
    if in_tmux:  # tmux forwards a DCS passthrough with every ESC doubled (needs allow-passthrough on)
        sequences = ["\x1bPtmux;" + seq.replace("\x1b", "\x1b\x1b") + "\x1b\\" for seq in sequences]
    return "".join(sequences)
