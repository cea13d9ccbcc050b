"""What xtui costs while it only watches: CPU of one core and bytes written to the terminal per second.

Each program runs in an 80x24 pty; after its first frame and a settling second, the window counts the
bytes it writes and its CPU time (utime + stime from /proc). Rows: a hello-world Textual app (anchor),
xtui on a finished run (nothing changes), xtui watching a live training run (the demo, launched first).
"""

from __future__ import annotations

import argparse
import os
import select
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


def main() -> None:
    """Three rows, printed as a markdown table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=float, default=60.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="xtui-idle-"))
    hello = tmp / "hello.py"
    hello.write_text(HELLO)
    xtui = [sys.executable, "-m", "tui.cli"]
    rows = [("hello-world Textual app", measure([sys.executable, str(hello)], b"Hello, world", args.window))]
    rows.append(("xtui, a finished run", measure([*xtui, str(ROOT / "tests" / "fixtures")], b"Status", args.window)))
    demo = build_demo(tmp / "demo")
    cfg = configs.edit_settings(demo.config.read_text(encoding="utf-8"), {"max_epochs": "30"})  # outlasts the window
    demo.config.write_text(cfg, encoding="utf-8")
    start(LaunchSpec(config=demo.config, work_dir=demo.work_dir, cwd=demo.folder))
    try:
        time.sleep(15)
        rows.append(("xtui watching a live run", measure([*xtui, str(demo.folder)], b"running", args.window)))
    finally:
        stop(demo.work_dir, grace=5)
    print(f"window {args.window:.0f} s\n\n| program | CPU, % of one core | bytes/s to the terminal |\n|---|---|---|")
    for name, (cpu, rate) in rows:
        print(f"| {name} | {cpu:.2f} | {rate:.0f} |")


if __name__ == "__main__":
    main()
