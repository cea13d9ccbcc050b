"""`python benchmarks/render_probe.py OUT ARGS...`: the `xtui ARGS` command, counting what each frame renders.

Wraps Textual's `Widget.render_lines` (per widget: calls and time), `Compositor.render_update` and `App._display`
(per frame) and notes each partial frame's dirty regions. SIGUSR1 starts the count afresh, SIGUSR2 writes it to
OUT as JSON (idle_cost.py --probe sends them at the start and the end of its window). The wrapping costs some CPU
itself: the CPU figures come from runs without it.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import sys
import time

from textual._compositor import Compositor  # private: a benchmark's probe, not part of tui/
from textual.app import App
from textual.widget import Widget


class Counts:
    """What the frames since the last reset rendered."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, *_) -> None:
        """Start afresh (the window begins)."""
        self.widgets: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
        self.totals: dict[str, float] = collections.defaultdict(float)
        self.frames: list[list[tuple[int, int, int, int]]] = []
        self.start = time.process_time(), time.monotonic()

    def write(self, path: str) -> None:
        """The counts as JSON: CPU s of the process and wall s since the reset, ms totals, per widget, the frames."""
        cpu, wall = time.process_time() - self.start[0], time.monotonic() - self.start[1]
        widgets = {name: [n, 1000 * s] for name, (n, s) in self.widgets.items()}
        totals = {name: 1000 * s for name, s in self.totals.items()}
        with open(path + ".part", "w") as out:
            json.dump({"cpu_s": cpu, "wall_s": wall, "ms": totals, "widgets": widgets, "frames": self.frames}, out)
        os.replace(path + ".part", path)  # whole when it appears


def timed(cls, name: str, counts: Counts, per_widget: bool = False) -> None:
    """Wrap the method `name` of `cls` to add its time to the counts."""
    original = getattr(cls, name)

    def wrapper(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent = time.perf_counter() - start
            counts.totals[name] += spent
            if per_widget:
                entry = counts.widgets[f"{type(self).__name__}#{self.id or ''}"]
                entry[0] += 1
                entry[1] += spent

    setattr(cls, name, wrapper)


def install(out: str) -> None:
    """Wrap Textual's rendering and answer the two signals."""
    counts = Counts()
    timed(Widget, "render_lines", counts, per_widget=True)
    timed(Compositor, "render_update", counts)
    timed(App, "_display", counts)
    partial = Compositor.render_partial_update

    def noted(self):
        counts.frames.append(sorted(tuple(region) for region in self._dirty_regions))
        return partial(self)

    Compositor.render_partial_update = noted
    signal.signal(signal.SIGUSR1, counts.reset)
    signal.signal(signal.SIGUSR2, lambda *_: counts.write(out))


if __name__ == "__main__":
    install(sys.argv[1])
    from tui.cli import main

    sys.exit(main(sys.argv[2:]))
