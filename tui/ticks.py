"""A shared beat for the polling threads: they all wake on the same boundaries, so their updates share a frame."""

from __future__ import annotations

import time
from typing import Callable

PAINT_EVERY_POLLS = 2  # screens poll every poll_s and draw what came every second poll (nvitop's 2 s)


def sleep_to_tick(period: float) -> None:
    """Sleep until the next multiple of `period` on the monotonic clock (at least a tenth of it)."""
    delay = period - time.monotonic() % period
    time.sleep(delay if delay >= period / 10 else delay + period)


def poll_on_ticks(worker, period: float, step: Callable[[], None], report: Callable[[str], None]) -> None:
    """Call `step` on every tick until `worker` is cancelled. A call that raises is reported (each distinct
    error once) and the next tick tries again: a file vanishing under a poll never ends the watching."""
    reported: set[str] = set()
    while not worker.is_cancelled:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - any failure of one poll is shown, never fatal
            text = f"{type(exc).__name__}: {exc}"
            if text not in reported:
                reported.add(text)
                report(text)
        sleep_to_tick(period)
