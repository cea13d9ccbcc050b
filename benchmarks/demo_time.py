"""Seconds from `xtui demo --headless` to the first sample that names the assistant, next to plain xtuner.

The anchor, in the same run: `python -m xtuner.tools.train` of the same config in a prepared folder,
timed to the first such sample in its log. Rounds alternate the order. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine.demo.build import build_demo
from engine.runs.events import Sample
from engine.runs.folders import log_files
from engine.runs.logs import LogFollower

NAME = "小明"
ROOT = Path(__file__).resolve().parents[1]


def first_named_sample(work_dir: Path, t0: float, proc: subprocess.Popen, timeout: float) -> float | None:
    """Seconds from t0 until the run's log shows a sample answer with the name; None if it never does."""
    followers: dict[Path, LogFollower] = {}
    while time.monotonic() - t0 < timeout:
        for log in log_files(work_dir):
            follower = followers.setdefault(log, LogFollower(log))
            if any(isinstance(e, Sample) and NAME in e.answer for e in follower.poll()):
                return time.monotonic() - t0
        if proc.poll() is not None and proc.returncode != 0:
            return None
        time.sleep(0.1)
    return None


def time_xtui_demo(folder: Path, timeout: float) -> float | None:
    """`xtui demo --headless` from nothing: build + launch + train until the name appears."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "demo", "--headless", "--dir", str(folder), "--name", NAME],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        return first_named_sample(folder / "work", t0, proc, timeout)
    finally:
        proc.wait(timeout=timeout)


def time_plain(folder: Path, timeout: float) -> float | None:
    """Plain xtuner on an already built demo folder (the build is not counted: a favour to the anchor)."""
    paths = build_demo(folder, name=NAME)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "xtuner.tools.train", str(paths.config), "--work-dir", str(paths.work_dir)],
        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        return first_named_sample(paths.work_dir, t0, proc, timeout)
    finally:
        proc.wait(timeout=timeout)


def main() -> None:
    """Alternate xtui and plain rounds and print the medians and their ratio."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"xtui demo": [], "plain xtuner": []}
    for i in range(args.rounds):
        order = ("xtui demo", "plain xtuner") if i % 2 == 0 else ("plain xtuner", "xtui demo")
        for kind in order:
            folder = Path(tempfile.mkdtemp(prefix="xtui-demo-bench-"))
            try:
                seconds = (time_xtui_demo if kind == "xtui demo" else time_plain)(folder, args.timeout)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            print(f"round {i + 1} {kind}: {seconds if seconds is None else round(seconds, 1)} s", flush=True)
            if seconds is not None:
                results[kind].append(seconds)
    med = {k: statistics.median(v) for k, v in results.items() if v}
    print("\n| run | rounds | median s to the first sample with the name | all |\n|---|---|---|---|")
    for kind, values in results.items():
        print(
            f"| {kind} | {len(values)} | {med.get(kind, float('nan')):.1f} | {', '.join(f'{v:.1f}' for v in values)} |"
        )
    if len(med) == 2:
        print(f"\nxtui demo / plain xtuner: {med['xtui demo'] / med['plain xtuner']:.2f}x")


if __name__ == "__main__":
    main()
