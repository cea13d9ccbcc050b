"""Text read from logs made safe for a terminal: control characters (escape sequences among them) shown escaped."""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, and the C1 controls (0x9b alone starts a CSI on some terminals)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str, newlines: bool = True) -> str:
    """`text` with every control character written as `\\xNN`, so that a log line cannot retitle, clear or paste."""
    escaped = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return escaped if newlines else escaped.replace("\n", "\\n")
