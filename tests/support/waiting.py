"""Waiting in Pilot tests: until a condition holds on the app, or fail saying so."""

from __future__ import annotations

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
