"""Cold start to the first painted frame: `xtui DIR` next to a hello-world Textual app, in a real pty.

Each run spawns the program in a pseudo-terminal (80x24), reads its output until a text that only the
painted screen holds appears, and takes the time and the resident memory (VmRSS) at that moment.
Rounds alternate the two programs, after one untimed start of each; prints medians and the ratio.
Both start as installed programs do, with their bytecode cached (in a folder under /tmp, whatever
PYTHONDONTWRITEBYTECODE says): otherwise xtui would compile its own modules at every start, textual not.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import signal
import statistics
import struct
import sys
import tempfile
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYCACHE = Path(tempfile.gettempdir()) / "xtui-bench-pycache"
HELLO = """
from textual.app import App
from textual.widgets import Footer, Header, Static

class Hello(App):
    def compose(self):
        yield Header()
        yield Static("Hello, world")
        yield Footer()

Hello().run()
"""


def rss_kb(pid: int) -> int:
    """Resident memory of a process in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def spawn(argv: list[str]) -> tuple[int, int]:
    """Start `argv` in an 80x24 pseudo-terminal; its pid and the pty's fd."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ.update(TERM="xterm-256color", COLUMNS="80", LINES="24", PYTHONPYCACHEPREFIX=str(PYCACHE))
        os.chdir(ROOT)
        os.execv(argv[0], argv)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    return pid, fd


def read_until(fd: int, marker: bytes, timeout: float = 30.0) -> None:
    """Read the program's output until `marker` appears on screen."""
    seen, t0 = b"", time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if select.select([fd], [], [], 0.05)[0]:
            seen += os.read(fd, 65536)
            if marker in seen:
                return
    raise RuntimeError(f"{marker!r} never appeared; output: {seen[-500:]!r}")


def end(pid: int, fd: int) -> None:
    """Kill the program and close its pty."""
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(fd)


def first_frame(argv: list[str], marker: bytes) -> tuple[float, int]:
    """Seconds until `marker` is on screen, and the RSS then."""
    t0 = time.perf_counter()
    pid, fd = spawn(argv)
    try:
        read_until(fd, marker)
        return time.perf_counter() - t0, rss_kb(pid)
    finally:
        end(pid, fd)


def compare(
    programs: dict[str, tuple[list[str], bytes]], rounds: int, header: str = "median s to first frame"
) -> list[float]:
    """Time each program (argv, marker) in alternating rounds after one untimed start each; print the table of
    medians; return the median times in the programs' order."""
    results: dict[str, list[tuple[float, int]]] = {name: [] for name in programs}
    for program in programs.values():  # fills the bytecode cache
        first_frame(*program)
    for i in range(rounds):
        for name in programs if i % 2 == 0 else reversed(programs):
            results[name].append(first_frame(*programs[name]))
    print(f"| program | {header} | median RSS MiB | all s |\n|---|---|---|---|")
    medians = []
    for name, runs in results.items():
        medians.append(statistics.median(t for t, _ in runs))
        rss = statistics.median(r for _, r in runs) / 1024
        print(f"| {name} | {medians[-1]:.3f} | {rss:.1f} | {', '.join(f'{t:.2f}' for t, _ in runs)} |")
    return medians


def main() -> None:
    """Alternate rounds of both programs, print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dir", default=str(ROOT / "tests" / "fixtures"), help="folder xtui watches")
    args = parser.parse_args()
    hello = Path(tempfile.mkdtemp()) / "hello.py"
    hello.write_text(HELLO)
    programs = {
        "hello-world Textual app": ([sys.executable, str(hello)], b"Hello, world"),
        "xtui": ([sys.executable, "-m", "tui.cli", args.dir], b"Status"),
    }
    anchor, xtui = compare(programs, args.rounds)
    print(f"\nxtui / hello-world: {xtui / anchor:.2f}x")


if __name__ == "__main__":
    main()
