"""A shared beat for the polling threads: they all wake on the same boundaries, so their updates share a frame."""

from __future__ import annotations

import time


def sleep_to_tick(period: float) -> None:
    """Sleep until the next multiple of `period` on the monotonic clock (at least a tenth of it)."""
    delay = period - time.monotonic() % period
    time.sleep(delay if delay >= period / 10 else delay + period)
