"""What xtui costs while it only watches: CPU of one core and bytes written to the terminal per second.

Each program runs in an 80x24 pty; after its first frame (and what typed keys open, drawn) and a settling second,
the window counts the bytes it writes and its CPU time (utime + stime from /proc). Rows: a hello-world Textual app (anchor),
xtui on a folder without runs, xtui on a finished run (the fixture log as plain `xtuner train` leaves it:
nothing changes), xtui watching a live training run (the demo, launched first) from the dashboard and from the
run's own view, with the training log lines written per minute meanwhile (the demo logs every 10 iterations,
evaluates every 20, saves every 50: on 2 idle cores a log line about every 1.5 s and new samples every 3 s, far
more often than a real run). Each row is the median of `--repeat` windows, each in a fresh process.

`--real-shaped`: instead of the demo, a writer process appends a real-shaped run to a work dir (the H200 fixture's
head and lines, grown as benchmarks/reattach.py grows them, stamped with the wall clock): one `Iter(train)` line a
second (10 iterations each), an evaluation (two EvaluateChatHook samples) every 500 iterations, a checkpoint line
every 500, into both the mmengine log and xtui's console file, with a manifest naming the writer as the live
trainer. Not time-compressed unless `--eval-every` says so. Rows: the dashboard, the run's view on its samples,
log and curves tabs.

`--only WORD...`: only the rows whose name holds one of the words (and the anchor). `--probe`: each xtui row once,
through benchmarks/render_probe.py, printing what its frames rendered in the window (each widget's render_lines
calls and ms a frame, the widgets that asked for a repaint); its CPU figure includes the probe's own cost.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reattach import STAMP, long_log
from startup import HELLO, ROOT, end, read_until, spawn

from engine.demo.build import build_demo
from engine.runs.launch import LaunchError, LaunchSpec, start, stop
from engine.xtuner import configs


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(fd: int, quiet: float = 1.0, cap: float = 15.0) -> None:
    """Read the program's output until it has written something and then nothing for `quiet` s (at most `cap` s): what
    typed keys open (a tab's first drawing, late when the start is still busy) is drawn before the window."""
    wrote, t0 = False, time.monotonic()
    while time.monotonic() - t0 < cap:
        if select.select([fd], [], [], quiet)[0]:
            wrote = bool(os.read(fd, 65536)) or wrote
        elif wrote:
            return


def measure(
    argv: list[str], marker: bytes, window: float, steps=lambda: 0, keys: bytes = b"", probe: Path | None = None
) -> tuple[float, float, float]:
    """% of one core, bytes/s and new training log lines (`steps()`) per minute over `window` s after the first frame
    (and `keys` typed a second after it, and what they opened drawn); with `probe` (the JSON file of a program run through render_probe.py),
    the probe counts the window's frames."""
    pid, fd = spawn(argv)
    try:
        read_until(fd, marker)
        if keys:
            time.sleep(1.0)
            os.write(fd, keys)
            settle(fd)
        time.sleep(1.0)
        while select.select([fd], [], [], 0)[0]:
            os.read(fd, 65536)
        if probe:
            os.kill(pid, signal.SIGUSR1)
        cpu0, t0, written, steps0 = cpu_seconds(pid), time.monotonic(), 0, steps()
        while time.monotonic() - t0 < window:
            if select.select([fd], [], [], 0.2)[0]:
                written += len(os.read(fd, 65536))
        elapsed = time.monotonic() - t0
        if probe:
            os.kill(pid, signal.SIGUSR2)
            deadline = time.monotonic() + 10
            while not probe.exists() and time.monotonic() < deadline:  # written on the app's next turn of its loop
                if select.select([fd], [], [], 0.2)[0]:
                    os.read(fd, 65536)
        return 100 * (cpu_seconds(pid) - cpu0) / elapsed, written / elapsed, 60 * (steps() - steps0) / elapsed
    finally:
        end(pid, fd)


def median_of(
    repeat: int, argv: list[str], marker: bytes, window: float, steps=lambda: 0, keys: bytes = b""
) -> tuple[float, ...]:
    """Medians of CPU %, bytes/s and log lines a minute over `repeat` windows, a fresh process each."""
    runs = [measure(argv, marker, window, steps, keys) for _ in range(repeat)]
    return tuple(statistics.median(column) for column in zip(*runs))


def probed(argv: list[str], marker: bytes, window: float, keys: bytes) -> str:
    """One window of `argv` (xtui's arguments after `python -m tui.cli`) run through render_probe.py: CPU %, frames,
    each widget's render_lines calls and ms a frame (most first), the widgets that asked for a repaint."""
    out = Path(tempfile.mkdtemp(prefix="xtui-probe-")) / "counts.json"
    probe = [sys.executable, str(ROOT / "benchmarks" / "render_probe.py"), str(out), *argv[3:]]
    measure(probe, marker, window, keys=keys, probe=out)
    counts = json.loads(out.read_text())
    frames = max(1, counts["frames"])
    rendered = sorted(counts["rendered"].items(), key=lambda item: -item[1][1])
    lines = [
        f"  probed: {100 * counts['cpu_s'] / counts['wall_s']:.2f} % of a core, {counts['frames']} frames in"
        f" {counts['wall_s']:.0f} s, render_lines {sum(ms for _, ms in counts['rendered'].values()) / frames:.2f} ms"
        " a frame:"
    ]
    lines += [f"    {name}: {n / frames:.1f} calls, {ms / frames:.3f} ms" for name, (n, ms) in rendered]
    lines.append(f"  asked for a repaint (times): {counts['refreshed']}")
    return "\n".join(lines)


def log_lines(work_dir: Path) -> int:
    """Training log lines (`Iter(train)`) written so far in the work dir's mmengine logs."""
    return sum(path.read_text(errors="replace").count("Iter(train)") for path in work_dir.glob("*/*.log"))


def finished_run(root: Path) -> Path:
    """A finished work dir: the fixture log where plain `xtuner train` leaves it (no manifest)."""
    stamp = root / "work" / "20261128_135200"
    stamp.mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "fixtures" / "xtuner-0.2.0-h200-lora-console.log", stamp / f"{stamp.name}.log")
    return root


def write_run(work_dir: Path, line_s: float, eval_every: int) -> None:
    """Be a live trainer: record this process in the work dir's manifest, then append the run's log a train line (and
    what follows it: an evaluation, a checkpoint line) every `line_s` seconds, stamped with the wall clock."""
    import psutil

    from engine.runs import manifest as mf

    stamp = time.strftime("%Y%m%d_%H%M%S")
    (work_dir / stamp).mkdir(parents=True)
    me = psutil.Process()
    launch = mf.Launch(sys.argv, {}, me.pid, me.create_time(), time.time(), 0, "config.py", str(work_dir))
    mf.write_manifest(work_dir, mf.Manifest(str(work_dir), os.uname().nodename, [launch]))
    text = long_log(100_000, 10, eval_every, 500)
    chunks = text.split("\n")
    starts = [i for i, line in enumerate(chunks) if "Iter(train)" in line]
    pieces = ["\n".join(chunks[a:b]) + "\n" for a, b in zip([0, *starts], [*starts, len(chunks)])]
    with (work_dir / stamp / f"{stamp}.log").open("a") as log, (work_dir / mf.CONSOLE).open("a") as console:
        for piece in pieces:
            now = time.strftime("%Y/%m/%d %H:%M:%S")
            piece = "\n".join(STAMP.sub(now, line) for line in piece.split("\n"))
            for out in (log, console):
                out.write(piece)
                out.flush()
            time.sleep(line_s - time.time() % line_s)


def real_shaped(root: Path, eval_every: int):
    """Start the writer of a real-shaped run in `root`/work; the work dir and the writer's process."""
    work_dir = root / "work"
    argv = [sys.executable, __file__, "--write-run", str(work_dir), "--eval-every", str(eval_every)]
    writer = subprocess.Popen(argv, cwd=ROOT)
    while not (work_dir / "xtui-console.log").exists():
        time.sleep(0.1)
    return work_dir, writer


def main() -> None:
    """The rows, printed as a markdown table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--log-every", type=int, default=10, help="the demo's logger interval (iterations)")
    parser.add_argument(
        "--eval-every", type=int, help="evaluation_freq in iterations (the demo's: 20; a real-shaped run's: 500)"
    )
    parser.add_argument(
        "--epochs", type=int, default=30, help="the demo's max_epochs: enough to outlast the live windows"
    )
    parser.add_argument("--live-only", action="store_true", help="only the two live rows (and the anchor)")
    parser.add_argument("--real-shaped", action="store_true", help="watch a written real-shaped run, not the demo")
    parser.add_argument("--only", nargs="+", default=[], help="only the rows whose name holds one of these words")
    parser.add_argument("--probe", action="store_true", help="what each xtui row's frames render (render_probe.py)")
    parser.add_argument("--write-run", type=Path, help=argparse.SUPPRESS)  # the writer process of --real-shaped
    args = parser.parse_args()
    args.eval_every = args.eval_every or (500 if args.real_shaped or args.write_run else 20)
    if args.write_run:
        write_run(args.write_run, 1.0, args.eval_every)
        return
    tmp = Path(tempfile.mkdtemp(prefix="xtui-idle-"))
    hello = tmp / "hello.py"
    hello.write_text(HELLO)
    xtui = [sys.executable, "-m", "tui.cli"]

    print(f"median of {args.repeat} window(s) of {args.window:.0f} s\n")
    print("| program | CPU, % of one core | bytes/s to the terminal | training log lines a minute |\n|---|---|---|---|")

    def row(name: str, argv: list[str], marker: bytes, steps=lambda: 0, keys: bytes = b"") -> None:
        """Measure and print one table row (as it comes: a long run keeps what it has measured)."""
        if argv != anchor and args.only and not any(word in name for word in args.only):
            return
        if argv != anchor and args.probe:
            print(f"{name}:\n{probed(argv, marker, args.window, keys)}", flush=True)
            return
        cpu, rate, lines = median_of(args.repeat, argv, marker, args.window, steps, keys)
        print(f"| {name} | {cpu:.2f} | {rate:.0f} | {lines:.0f} |", flush=True)

    anchor = [sys.executable, str(hello)]
    row("hello-world Textual app", anchor, b"Hello, world")
    if args.real_shaped:
        work_dir, writer = real_shaped(tmp, args.eval_every)
        steps = functools.partial(log_lines, work_dir)
        try:
            row("xtui watching a real-shaped run: dashboard and GPU panel", [*xtui, str(tmp)], b"running", steps)
            view = [*xtui, str(work_dir)]
            row("xtui watching a real-shaped run: the run's view (samples tab)", view, b"eta", steps)
            row("xtui watching a real-shaped run: the run's view (log tab)", view, b"eta", steps, keys=b"3")
            row("xtui watching a real-shaped run: the run's view (curves tab)", view, b"eta", steps, keys=b"1")
        finally:
            writer.kill()
        return
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
