"""Desktop notifications by terminal escape sequence: the one sequence the terminal reads, passed through tmux.

kitty reads OSC 99 (its own, since 0.19), OSC 9 and OSC 777 (0.24); WezTerm, ghostty and foot read both OSC 9 and
OSC 777; iTerm2 reads OSC 9; urxvt, VTE with Fedora's patch and Windows Terminal (2026) read OSC 777. A terminal that
reads two of them shows two notifications when sent both, so exactly one goes out (sources: docs/benchmarks.md).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

SEQUENCES = {
    "osc99": "\x1b]99;d=0;{title}\x1b\\\x1b]99;p=body;{body}\x1b\\",  # a title held back, then the body that shows it
    "osc9": "\x1b]9;{title}: {body}\x07",  # text only: the title goes in front
    "osc777": "\x1b]777;notify;{title};{body}\x07",
}


def terminal_name(env: Mapping[str, str] = os.environ) -> str:
    """What the terminal calls itself, lower case. Inside tmux: the name and XTVERSION answer tmux has from the terminal
    it is attached to (client_termtype, tmux >= 3.3), as the panes' own TERM says tmux; else TERM, TERM_PROGRAM,
    LC_TERMINAL (iTerm2 sets it for ssh to forward) and kitty's KITTY_WINDOW_ID."""
    if env.get("TMUX"):
        try:
            shown = subprocess.run(
                ["tmux", "display-message", "-p", "#{client_termname} #{client_termtype}"],
                capture_output=True, text=True, timeout=2,
            ).stdout.strip()  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            shown = ""
        if shown:
            return shown.lower()
    names = [env.get(key, "") for key in ("TERM", "TERM_PROGRAM", "LC_TERMINAL")]
    return " ".join(names + ["kitty"] * bool(env.get("KITTY_WINDOW_ID"))).lower()


def protocol(terminal: str) -> str:
    """kitty: its own OSC 99; iTerm2: OSC 9, the only one it reads; any other: OSC 777, which carries a title."""
    if "kitty" in terminal:
        return "osc99"
    return "osc9" if "iterm" in terminal else "osc777"


def notification_sequence(title: str, body: str, terminal: str, in_tmux: bool) -> str:
    """The notification for `terminal` (a terminal_name), wrapped for tmux's passthrough if needed."""
    clean = lambda s: "".join(ch for ch in s if ch.isprintable() and ch != ";")  # noqa: E731
    seq = SEQUENCES[protocol(terminal)].format(title=clean(title), body=clean(body))
    if in_tmux:  # tmux forwards a DCS passthrough with every ESC doubled (needs allow-passthrough on)
        seq = "\x1bPtmux;" + seq.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    return seq


def notification(title: str, body: str, env: Mapping[str, str] = os.environ) -> str:
    """The notification for the terminal xtui runs in."""
    return notification_sequence(title, body, terminal_name(env), in_tmux=bool(env.get("TMUX")))
