"""Throughput and peak memory of engine.runs.logs on a synthetic 1,000,000-line mmengine log.

Run: `.venv/bin/python benchmarks/log_parse.py [--lines N]`. Each measurement runs in its own child
process so that its peak RSS (ru_maxrss) is its own; prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

APPEND = 64 * 1024
SAMPLE = (
    "{ts} - mmengine - INFO - Sample output:\n<s><|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
    "我是小明的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦<|im_end|>\n\n"
)


def generate(path: Path, n_lines: int) -> int:
    """Write a realistic xtuner log (mostly train steps; samples, checkpoints, warnings every 50 iters)."""
    max_iters = n_lines
    written = 0
    it = 0
    t0 = 1_795_000_000
    with open(path, "w", encoding="utf-8") as f:
        while written < n_lines:
            it += 1
            ts = time.strftime("%Y/%m/%d %H:%M:%S", time.gmtime(t0 + it))
            loss = 2.0 + 9.0 / (1 + it / 500)
            eta = (max_iters - it) * 0.5
            days = int(eta // 86400)
            eta_s = f"{days} day{'s' if days > 1 else ''}, " if days else ""
            eta_s += time.strftime("%H:%M:%S", time.gmtime(eta % 86400)).lstrip("0").rjust(7, "0")
            f.write(
                f"{ts} - mmengine - INFO - Iter(train) [{it:6d}/{max_iters}]  lr: {2e-4 * (1 - it / max_iters):.4e}  "
                f"eta: {eta_s}  time: 0.2465  data_time: 0.0091  memory: 9977  loss: {loss:.4f}  "
                f"tflops: 58.1844  tokens_per_sec: 4033.6550  grad_norm: {1 + (it % 7) / 10:.4f}\n"
            )
            written += 1
            if it % 50 == 0:
                f.write(f"{ts} - mmengine - INFO - after_train_iter in EvaluateChatHook.\n")
                for q in ("请你介绍一下你自己", "你是谁"):
                    f.write(SAMPLE.format(ts=ts, q=q))
                f.write(f"{ts} - mmengine - INFO - Saving checkpoint at {it} iterations\n")
                f.write(f'{ts} - mmengine - WARNING - "FileClient" will be deprecated in future.\n')
                f.write(
                    "/usr/lib/python3/site-packages/torch/utils/checkpoint.py:87: UserWarning: None of the inputs "
                    "have requires_grad=True. Gradients will be None\n  warnings.warn(\n"
                )
                written += 1 + 2 * 6 + 1 + 1 + 2
    return written


def _plain_read(path: str) -> dict:
    """Anchor: iterate the lines of the file in Python and do nothing."""
    n = 0
    start = time.perf_counter()
    with open(path, encoding="utf-8", errors="replace") as f:
        for _ in f:
            n += 1
    return {"seconds": time.perf_counter() - start, "lines": n}


def _findall(path: str) -> dict:
    """Anchor: read the file and `re.findall` the loss values."""
    start = time.perf_counter()
    with open(path, encoding="utf-8", errors="replace") as f:
        losses = re.findall(r"loss: (\S+)", f.read())
    return {"seconds": time.perf_counter() - start, "events": len(losses)}


def _events_floor(path: str) -> dict:
    """Anchor: only build as many TrainSteps as the file has train lines, 8 float() conversions each."""
    from engine.runs.events import TrainStep

    with open(path, encoding="utf-8", errors="replace") as f:
        n = f.read().count("Iter(train)")
    value = "10.8431"
    start = time.perf_counter()
    events = [
        TrainStep(
            i,
            40,
            float(value),
            float(value),
            float(value),
            float(value),
            float(value),
            float(value),
            29.0,
            float(value),
            float(value),
            {},
            "2026/11/28 14:00:52",
        )
        for i in range(n)
    ]
    return {"seconds": time.perf_counter() - start, "events": len(events)}


def _poll_once(path: str) -> dict:
    """LogFollower.poll over the whole file in one call, then flush; keeps every event."""
    from engine.runs.logs import LogFollower

    start = time.perf_counter()
    follower = LogFollower(path)
    events = follower.poll() + follower.flush()
    return {"seconds": time.perf_counter() - start, "events": len(events)}


def _poll_appends(path: str) -> dict:
    """The file grows by 64 KiB between polls; only poll time counts; events are dropped after each poll."""
    from engine.runs.logs import LogFollower

    target = path + ".growing"
    polled = 0.0
    events = polls = 0
    follower = LogFollower(target)
    with open(path, "rb") as src, open(target, "wb") as dst:
        while block := src.read(APPEND):
            dst.write(block)
            dst.flush()
            start = time.perf_counter()
            events += len(follower.poll())
            polled += time.perf_counter() - start
            polls += 1
    events += len(follower.flush())
    os.unlink(target)
    return {"seconds": polled, "events": events, "polls": polls}


def _baseline(path: str) -> dict:
    """Nothing but the imports: the peak RSS every child starts from."""
    import engine.runs.logs  # noqa: F401

    return {"seconds": 0.0}


SCENARIOS = {
    "plain": _plain_read,
    "findall": _findall,
    "floor": _events_floor,
    "poll_once": _poll_once,
    "poll_appends": _poll_appends,
}


def _child(name: str, path: str) -> None:
    """Run one scenario and print its result with this process's peak RSS."""
    result = (_baseline if name == "baseline" else SCENARIOS[name])(path)
    result["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def _run(name: str, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "20261128_140052.log"
        n = generate(path, args.lines)
        size = path.stat().st_size
        baseline = _run("baseline", path)["maxrss_mib"]
        results = {name: _run(name, path) for name in SCENARIOS}
    plain = results["plain"]["seconds"]
    print(f"{n:,} lines, {size / 2**20:.1f} MiB; {os.cpu_count()} CPUs, {_cpu()}; Python {platform.python_version()}")
    print(f"peak RSS of a bare child (interpreter + imports): {baseline:.1f} MiB\n")
    print("| what | seconds | lines/s | x plain read | events | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    labels = {
        "plain": "`for line in f: pass` (anchor)",
        "findall": "`re.findall` of loss values (anchor)",
        "floor": "build the TrainSteps only, no parsing (anchor)",
        "poll_once": "LogFollower.poll, whole file in one poll",
        "poll_appends": f"LogFollower.poll after each {APPEND // 1024} KiB append",
    }
    for name, r in results.items():
        s = r["seconds"]
        print(
            f"| {labels[name]} | {s:.3f} | {n / s:,.0f} | {s / plain:.1f} | {r.get('events', '')} "
            f"| {r['maxrss_mib']:.1f} |"
        )


if __name__ == "__main__":
    main()
