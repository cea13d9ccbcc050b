"""What xtui costs while it only watches: CPU of one core and bytes written to the terminal per second.

Each program runs in an 80x24 pty; after its first frame and a settling second, the window counts the
bytes it writes and its CPU time (utime + stime from /proc). Rows: a hello-world Textual app (anchor),
xtui on a folder without runs, xtui on a finished run (the fixture log as plain `xtuner train` leaves it:
nothing changes), xtui watching a live training run (the demo, launched first) from the dashboard and from the
run's own view, with the training log lines written per minute meanwhile (the demo logs every 10 iterations,
evaluates every 20, saves every 50: on 2 idle cores a log line about every 1.5 s and new samples every 3 s, far
more often than a real run). Each row is the median of `--repeat` windows, each in a fresh process.
"""

from __future__ import annotations

import argparse
import functools
import os
import select
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from startup import HELLO, ROOT, end, read_until, spawn

from engine.demo.build import build_demo
from engine.runs.launch import LaunchError, LaunchSpec, start, stop
from engine.xtuner import configs


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(argv: list[str], marker: bytes, window: float, steps=lambda: 0) -> tuple[float, float, float]:
    """% of one core, bytes/s and new training log lines (`steps()`) per minute over `window` s after the first frame."""
    pid, fd = spawn(argv)
    try:
        read_until(fd, marker)
        time.sleep(1.0)
        while select.select([fd], [], [], 0)[0]:
            os.read(fd, 65536)
        cpu0, t0, written, steps0 = cpu_seconds(pid), time.monotonic(), 0, steps()
        while time.monotonic() - t0 < window:
            if select.select([fd], [], [], 0.2)[0]:
                written += len(os.read(fd, 65536))
        elapsed = time.monotonic() - t0
        return 100 * (cpu_seconds(pid) - cpu0) / elapsed, written / elapsed, 60 * (steps() - steps0) / elapsed
    finally:
        end(pid, fd)


def median_of(repeat: int, argv: list[str], marker: bytes, window: float, steps=lambda: 0) -> tuple[float, ...]:
    """Medians of CPU %, bytes/s and log lines a minute over `repeat` windows, a fresh process each."""
    runs = [measure(argv, marker, window, steps) for _ in range(repeat)]
    return tuple(statistics.median(column) for column in zip(*runs))


def log_lines(work_dir: Path) -> int:
    """Training log lines (`Iter(train)`) written so far in the work dir's mmengine logs."""
    return sum(path.read_text(errors="replace").count("Iter(train)") for path in work_dir.glob("*/*.log"))


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
    parser.add_argument("--log-every", type=int, default=10, help="the demo's logger interval (iterations)")
    parser.add_argument("--eval-every", type=int, default=20, help="the demo's evaluation_freq (iterations)")
    parser.add_argument(
        "--epochs", type=int, default=30, help="the demo's max_epochs: enough to outlast the live windows"
    )
    parser.add_argument("--live-only", action="store_true", help="only the two live rows (and the anchor)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="xtui-idle-"))
    hello = tmp / "hello.py"
    hello.write_text(HELLO)
    xtui = [sys.executable, "-m", "tui.cli"]

    print(f"median of {args.repeat} window(s) of {args.window:.0f} s\n")
    print("| program | CPU, % of one core | bytes/s to the terminal | training log lines a minute |\n|---|---|---|---|")

    def row(name: str, argv: list[str], marker: bytes, steps=lambda: 0) -> None:
        """Measure and print one table row (as it comes: a long run keeps what it has measured)."""
        cpu, rate, lines = median_of(args.repeat, argv, marker, args.window, steps)
        print(f"| {name} | {cpu:.2f} | {rate:.0f} | {lines:.0f} |", flush=True)

    row("hello-world Textual app", [sys.executable, str(hello)], b"Hello, world")
    if not args.live_only:
        row("xtui, no runs", [*xtui, str(ROOT / "tests" / "fixtures")], b"Status")
        row("xtui, a finished run", [*xtui, str(finished_run(tmp / "finished"))], b"finished")
    demo = build_demo(tmp / "demo")
    settings = {"max_epochs": str(args.epochs), "evaluation_freq": str(args.eval_every)}
    cfg = configs.edit_settings(demo.config.read_text(encoding="utf-8"), settings)
    cfg = configs.edit_call(cfg, "default_hooks.logger", {"interval": str(args.log_every)})
    demo.config.write_text(cfg, encoding="utf-8")
    start(LaunchSpec(config=demo.config, work_dir=demo.work_dir, cwd=demo.folder))
    try:
        time.sleep(15)
        steps = functools.partial(log_lines, demo.work_dir)
        row("xtui watching a live run: dashboard and GPU panel", [*xtui, str(demo.folder)], b"running", steps)
        row("xtui watching a live run: the run's view (samples tab)", [*xtui, str(demo.work_dir)], b"eta", steps)
    finally:
        try:
            stop(demo.work_dir, grace=5)
        except LaunchError:  # it ended during the windows: the last ones did not watch a live run
            print(f"\nthe demo ended before the last window did: measure again with more than --epochs {args.epochs}")


if __name__ == "__main__":
    main()
