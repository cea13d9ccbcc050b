"""A shared beat for the polling threads: they all wake on the same boundaries, so their updates share a frame."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

PAINT_EVERY_POLLS = 2  # screens poll every poll_s and draw what came every second poll (nvitop's 2 s)


def sleep_to_tick(period: float, wake: threading.Event) -> None:
    """Sleep until the next multiple of `period` on the monotonic clock (at least a tenth of it), or until `wake` is
    set (it is cleared again)."""
    delay = period - time.monotonic() % period
    wake.wait(delay if delay >= period / 10 else delay + period)
    wake.clear()


def poll_on_ticks(
    worker, period: float, step: Callable[[], None], report: Callable[[str], None], wake: threading.Event | None = None
) -> None:  # fmt: skip
    """Call `step` on every tick (and at once whenever `wake` is set) until `worker` is cancelled. A call that raises
    is reported (each distinct error once) and the next tick tries again: a file vanishing under a poll never ends
    the watching."""
    reported: set[str] = set()
    wake = wake or threading.Event()
    while not worker.is_cancelled:
        try:
            step()
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
            if text not in reported:
                reported.add(text)
                report(text)
        sleep_to_tick(period, wake)
