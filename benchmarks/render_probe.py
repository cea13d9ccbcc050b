"""`python benchmarks/render_probe.py OUT ARGS...`: the `xtui ARGS` command, counting what its frames render.

Wraps Textual's public `Widget.render_lines` (per widget: calls and time; a frame renders its screen once, so the
screen's calls count the frames) and `Widget.refresh` (which widgets asked for a repaint). SIGUSR1 starts the
count afresh, SIGUSR2 writes it to OUT as JSON (idle_cost.py --probe sends them at the start and the end of its
window). The wrapping costs some CPU itself: the CPU figures come from runs without it.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import sys
import time

from textual.screen import Screen
from textual.widget import Widget


class Counts:
    """What the frames since the last reset rendered, and who asked for them."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, *_) -> None:
        """Start afresh (the window begins)."""
        self.rendered: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
        self.refreshed: dict[str, int] = collections.Counter()
        self.frames = 0
        self.start = time.process_time(), time.monotonic()

    def write(self, path: str) -> None:
        """The counts as JSON: CPU s of the process and wall s since the reset, frames, per widget ms and calls."""
        cpu, wall = time.process_time() - self.start[0], time.monotonic() - self.start[1]
        rendered = {name: [n, 1000 * s] for name, (n, s) in self.rendered.items()}
        counts = {
            "cpu_s": cpu,
            "wall_s": wall,
            "frames": self.frames,
            "rendered": rendered,
            "refreshed": self.refreshed,
        }
        with open(path + ".part", "w") as out:
            json.dump(counts, out)
        os.replace(path + ".part", path)  # whole when it appears


def install(out: str) -> None:
    """Wrap the two methods and answer the two signals."""
    counts = Counts()
    render_lines, refresh = Widget.render_lines, Widget.refresh

    def timed(self, crop):
        start = time.perf_counter()
        try:
            return render_lines(self, crop)
        finally:
            entry = counts.rendered[f"{type(self).__name__}#{self.id or ''}"]
            entry[0] += 1
            entry[1] += time.perf_counter() - start
            counts.frames += isinstance(self, Screen)

    def noted(self, *regions, **kwargs):
        counts.refreshed[f"{type(self).__name__}#{self.id or ''}"] += 1
        return refresh(self, *regions, **kwargs)

    Widget.render_lines, Widget.refresh = timed, noted
    signal.signal(signal.SIGUSR1, counts.reset)
    signal.signal(signal.SIGUSR2, lambda *_: counts.write(out))


if __name__ == "__main__":
    install(sys.argv[1])
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this tree's xtui, not another
    from tui.cli import main

    sys.exit(main(sys.argv[2:]))
