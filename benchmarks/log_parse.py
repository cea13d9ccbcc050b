"""Throughput and peak memory of engine.runs.logs on a synthetic 1,000,000-line mmengine log, and on a 1 GB one.

Run: `.venv/bin/python benchmarks/log_parse.py [--lines N] [--gb 1.0]`. Each measurement runs in its own child
process so that its peak RSS (ru_maxrss) is its own; prints a markdown table. Seconds are wall time and, in
brackets, CPU time; the rates are per CPU second (on a shared machine the steadier figure). The polled rows also
sample the resident memory every 100 polls: it must stay flat while the file grows.
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


def _count(events: list) -> tuple[int, int]:
    """(events with each batch spread into its steps, train steps)."""
    from engine.runs.events import TrainStep, TrainSteps

    steps = sum(len(e) if isinstance(e, TrainSteps) else isinstance(e, TrainStep) for e in events)
    return sum(len(e) if isinstance(e, TrainSteps) else 1 for e in events), steps


def _poll_once(path: str, columns: bool = False) -> dict:
    """LogFollower.poll over the whole file in one call, then flush; keeps every event (or batch)."""
    from engine.runs.logs import LogFollower

    start, cpu = time.perf_counter(), time.process_time()
    follower = LogFollower(path, columns=columns)
    events = follower.poll() + follower.flush()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    n, steps = _count(events)
    return {"seconds": seconds, "cpu": cpu, "events": n, "steps": steps}


def _rss_mib() -> float:
    """This process's resident memory now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _poll_appends(path: str, columns: bool = False) -> dict:
    """The file grows by 64 KiB between polls; only poll time counts; events are dropped after each poll."""
    from engine.runs.logs import LogFollower

    target = path + ".growing"
    polled = cpu = 0.0
    events = steps = polls = 0
    rss = []
    follower = LogFollower(target, columns=columns)
    with open(path, "rb") as src, open(target, "wb") as dst:
        while block := src.read(APPEND):
            dst.write(block)
            dst.flush()
            start, started = time.perf_counter(), time.process_time()
            got = follower.poll()
            polled += time.perf_counter() - start
            cpu += time.process_time() - started
            n, s = _count(got)
            events, steps, polls = events + n, steps + s, polls + 1
            if polls % 100 == 0:
                rss.append(_rss_mib())
    events += _count(follower.flush())[0]
    os.unlink(target)
    rss = rss or [_rss_mib()]
    return {"seconds": polled, "cpu": cpu, "events": events, "steps": steps, "polls": polls,
            "rss_first": rss[0], "rss_last": rss[-1], "rss_max": max(rss)}  # fmt: skip


def _scan(path: str) -> dict:
    """The bulk reader alone: TrainLineScanner.scan over the file's 1 MiB blocks of whole lines (as LogFollower reads)."""
    from engine.runs.logparse.bulk import TrainLineScanner

    data = Path(path).read_bytes()
    scanner, steps, at = TrainLineScanner(), 0, 0
    start, cpu = time.perf_counter(), time.process_time()
    while at < len(data):
        end = data.rfind(b"\n", at, at + (1 << 20)) + 1 or len(data)
        steps += len(scanner.scan(data[at:end])[2])
        at = end
    return {"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu, "steps": steps}


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
    "columns_once": lambda path: _poll_once(path, columns=True),
    "columns_appends": lambda path: _poll_appends(path, columns=True),
    "scan": _scan,
}


def _child(name: str, path: str) -> None:
    """Run one scenario and print its result with this process's peak RSS."""
    cpu = time.process_time()
    result = (_baseline if name == "baseline" else SCENARIOS[name])(path)
    result.setdefault("cpu", time.process_time() - cpu)
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
    parser.add_argument("--gb", type=float, default=0.0, help="also read a log of this many GB (the log repeated)")
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
        big = _big(path, args.gb) if args.gb else None
    plain = results["plain"]["cpu"]
    print(f"{n:,} lines, {size / 2**20:.1f} MiB; {os.cpu_count()} CPUs, {_cpu()}; Python {platform.python_version()}")
    print(f"peak RSS of a bare child (interpreter + imports): {baseline:.1f} MiB\n")
    print("| what | seconds (CPU) | lines/CPU s | train lines/CPU s | x plain read (CPU) | events | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    labels = {
        "plain": "`for line in f: pass` (anchor)",
        "findall": "`re.findall` of loss values (anchor)",
        "floor": "build the TrainSteps only, no parsing (anchor)",
        "poll_once": "LogFollower.poll, whole file in one poll (event path)",
        "poll_appends": f"LogFollower.poll after each {APPEND // 1024} KiB append (event path)",
        "columns_once": "LogFollower(columns=True).poll, whole file in one poll",
        "columns_appends": f"LogFollower(columns=True).poll after each {APPEND // 1024} KiB append",
        "scan": "the bulk reader alone (TrainLineScanner.scan of 1 MiB blocks)",
    }
    for name, r in results.items():
        s, cpu, steps = r["seconds"], r["cpu"], r.get("steps")
        print(
            f"| {labels[name]} | {s:.3f} ({cpu:.3f}) | {n / cpu:,.0f} | {f'{steps / cpu:,.0f}' if steps else ''} "
            f"| {cpu / plain:.1f} | {r.get('events', '')} | {r['maxrss_mib']:.1f} |"
        )
    print("\nresident memory while polling (MiB, sampled every 100 polls): first, last, highest")
    for name in ("poll_appends", "columns_appends"):
        r = results[name]
        print(f"- {labels[name]}: {r['rss_first']:.1f}, {r['rss_last']:.1f}, {r['rss_max']:.1f} ({r['polls']} polls)")
    if big:
        print(f"\n{big['gb']:.2f} GB log ({big['lines']:,} lines), LogFollower(columns=True), whole file in one poll: "
              f"{big['seconds']:.2f} s ({big['cpu']:.2f} s CPU), {big['steps']:,} train steps, "
              f"peak RSS {big['maxrss_mib']:.0f} MiB")  # fmt: skip


def _big(path: Path, gb: float) -> dict:
    """Read a log of `gb` GB (the generated log written again and again) in one columnar poll."""
    big = path.with_name("big.log")
    data = path.read_bytes()
    copies = max(1, round(gb * 1e9 / len(data)))
    with open(big, "wb") as f:
        for _ in range(copies):
            f.write(data)
    result = _run("columns_once", big)
    result.update(gb=big.stat().st_size / 1e9, lines=copies * data.count(b"\n"))
    big.unlink()
    return result


if __name__ == "__main__":
    main()
