"""What a bug leaves behind: its traceback in a file of the crash-log folder, and one line for the user."""

from __future__ import annotations

import time
import traceback

from engine import locations


def record(exc: BaseException) -> str:
    """Write `exc`'s traceback to a new file in the crash-log folder; the one-line message that names it."""
    folder = locations.crash_log_dir()
    text = "".join(traceback.format_exception(exc))
    said = " ".join(str(exc).split())[:300]  # one line, however the exception's message was written
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{id(exc):x}.log"
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        return f"xtui hit a bug ({type(exc).__name__}: {said}); its traceback could not be saved ({err})"
    return f"xtui hit a bug ({type(exc).__name__}: {said}); traceback in {path}"
