"""What xtui costs while it only watches: CPU of one core and bytes written to the terminal per second.

Each program runs in an 80x24 pty; after its first frame and a settling second, the window counts the
bytes it writes and its CPU time (utime + stime from /proc). Rows: a hello-world Textual app (anchor),
xtui on a folder without runs, xtui on a finished run (the fixture log as plain `xtuner train` leaves it:
nothing changes), xtui watching a live training run (the demo, launched first) from the dashboard and from the
run's own view. The demo is the hardest case: a log line, a curve point and new samples every second. Each row is the median of
`--repeat` windows, each in a fresh process.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from startup import HELLO, ROOT, end, read_until, spawn

from engine import configs
from engine.demo import build_demo
from engine.launcher import LaunchSpec, start, stop


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(argv: list[str], marker: bytes, window: float) -> tuple[float, float]:
    """% of one core and bytes/s over `window` seconds after the first frame."""
    pid, fd = spawn(argv)
    try:
        read_until(fd, marker)
        time.sleep(1.0)
        while select.select([fd], [], [], 0)[0]:
            os.read(fd, 65536)
        cpu0, t0, written = cpu_seconds(pid), time.monotonic(), 0
        while time.monotonic() - t0 < window:
            if select.select([fd], [], [], 0.2)[0]:
                written += len(os.read(fd, 65536))
        elapsed = time.monotonic() - t0
        return 100 * (cpu_seconds(pid) - cpu0) / elapsed, written / elapsed
    finally:
        end(pid, fd)


def median_of(repeat: int, argv: list[str], marker: bytes, window: float) -> tuple[float, float]:
    """Median CPU % and bytes/s of `repeat` windows, a fresh process each."""
    runs = [measure(argv, marker, window) for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def finished_run(root: Path) -> Path:
    """A finished work dir: the fixture log where plain `xtuner train` leaves it (no manifest)."""
    stamp = root / "work" / "20261128_135200"
    stamp.mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "fixtures" / "xtuner-0.2.0-h200-lora-console.log", stamp / f"{stamp.name}.log")
    return root


def main() -> None:
    """The rows, printed as a markdown table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="xtui-idle-"))
    hello = tmp / "hello.py"
    hello.write_text(HELLO)
    xtui = [sys.executable, "-m", "tui.cli"]

    def row(name: str, argv: list[str], marker: bytes) -> tuple[str, tuple[float, float]]:
        """One table row: the name and its medians."""
        return name, median_of(args.repeat, argv, marker, args.window)

    rows = [row("hello-world Textual app", [sys.executable, str(hello)], b"Hello, world")]
    rows.append(row("xtui, no runs", [*xtui, str(ROOT / "tests" / "fixtures")], b"Status"))
    rows.append(row("xtui, a finished run", [*xtui, str(finished_run(tmp / "finished"))], b"finished"))
    demo = build_demo(tmp / "demo")
    cfg = configs.edit_settings(demo.config.read_text(encoding="utf-8"), {"max_epochs": "30"})  # outlasts the windows
    demo.config.write_text(cfg, encoding="utf-8")
    start(LaunchSpec(config=demo.config, work_dir=demo.work_dir, cwd=demo.folder))
    try:
        time.sleep(15)
        rows.append(row("xtui watching a live run: dashboard and GPU panel", [*xtui, str(demo.folder)], b"running"))
        rows.append(row("xtui watching a live run: the run's view (samples tab)", [*xtui, str(demo.work_dir)], b"eta"))
    finally:
        stop(demo.work_dir, grace=5)
    print(f"median of {args.repeat} window(s) of {args.window:.0f} s\n\n| program | CPU, % of one core | bytes/s to the terminal |\n|---|---|---|")
    for name, (cpu, rate) in rows:
        print(f"| {name} | {cpu:.2f} | {rate:.0f} |")


if __name__ == "__main__":
    main()
