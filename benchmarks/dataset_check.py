"""Checking a large dataset before launch: xtui's streamed check against `json.load` of the whole file (the anchor).

Each row runs in its own child process so that its peak RSS is its own.
Usage: python benchmarks/dataset_check.py [--gb 1.5] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

ROW = {
    "conversation": [{"system": "你是小助手", "input": "请你介绍一下你自己" * 8, "output": "我是小明的小助手，" * 30}]
}

CHILD = {
    "json.load of the whole file (anchor)": "import json; rows = json.load(open(PATH, encoding='utf-8')); n = len(rows)",
    "xtui dataset_problem (streamed)": "from engine.xtuner.config_check import dataset_problem; assert dataset_problem(Path(PATH), True) is None",
}


def write(path: Path, gigabytes: float) -> None:
    """A .json array of conversation records of about `gigabytes` GB."""
    line = json.dumps(ROW, ensure_ascii=False)
    count = int(gigabytes * 1e9 / (len(line.encode()) + 2))
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("[\n")
        for i in range(count):
            fh.write(line + (",\n" if i < count - 1 else "\n"))
        fh.write("]\n")


def measure(code: str, path: Path) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of `code` run in a fresh child."""
    script = (
        "import resource, sys, time\nfrom pathlib import Path\nsys.path.insert(0, '.')\n"
        f"PATH = {str(path)!r}\nt = time.perf_counter()\n{code}\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    """Write the file once, time each row, print a table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=1.5)
    parser.add_argument("--dir", default="/tmp")
    args = parser.parse_args()
    path = Path(args.dir) / "xtui-dataset-bench.json"
    write(path, args.gb)
    size = path.stat().st_size
    print(
        f"{size / 1e9:.2f} GB .json array; peak RSS of this parent {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    print("| what | seconds | MB/s | peak RSS MiB |\n|---|---:|---:|---:|")
    try:
        for name, code in CHILD.items():
            seconds, rss = measure(code, path)
            print(f"| {name} | {seconds:.1f} | {size / 1e6 / seconds:.0f} | {rss:.0f} |", flush=True)
    finally:
        path.unlink()


if __name__ == "__main__":
    main()
