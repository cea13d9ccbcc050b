"""Waiting in tests: until a condition holds on a Pilot app, or for a call that must not block; fail saying so."""

from __future__ import annotations

import threading
from collections.abc import Callable


async def until(pilot, predicate: Callable[[], object], timeout: float = 60.0, step: float = 0.05) -> None:
    """Let the app run until `predicate()` is true (raising counts as not yet); AssertionError after `timeout` s."""
    for _ in range(max(1, int(timeout / step))):
        await pilot.pause(step)
        try:
            if predicate():
                return
        except Exception:  # the screen or widget may not be there yet
            continue
    raise AssertionError(f"condition never held within {timeout:.0f} s")


def returns_within(fn: Callable[[], object], seconds: float = 5.0) -> object:
    """fn's result, failing the test when it blocks longer than `seconds` (a FIFO read, say)."""
    result: list = []
    worker = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "blocked"
    return result[0]
