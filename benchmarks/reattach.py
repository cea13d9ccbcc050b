"""Reattach: `xtui WORK_DIR` on a long run's log until its whole history is on screen, next to a hello-world app.

The work dir holds a long mmengine log grown from the real H200 fixture: its head (config dump, model load), then
one `Iter(train)` line per `--log-every` iterations up to `--iters` (the fixture's figures, cycled), an evaluation
(two EvaluateChatHook samples, answers varying) every `--eval-every` and a checkpoint line every `--save-every`.
Timed: spawn in an 80x24 pty until the progress line shows the last iteration (the whole log read, the view
painted); the anchor is a hello-world Textual app's first frame. Medians of `--rounds`, alternating.
First, in a child process each (engine only, no textual): the whole history read into a RunState with
`Run.poll`, train steps as columns (`Run(columns=True)`, and the loss curve's arrays) and spread into one
TrainStep each (what `xtui events` prints). `--engine-only` skips the pty rounds; `--keep` leaves the work dir (its
path printed) to look at, e.g. `xtui PATH` in tmux; `--also DIR` times the xtui of another checkout (`git archive
COMMIT | tar -x -C DIR`) in the same rounds, for a before/after on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from startup import HELLO, ROOT, compare

FIXTURE = ROOT / "tests" / "fixtures" / "xtuner-0.2.0-h200-lora-console.log"
STAMP = re.compile(r"^\d\d/\d\d \d\d:\d\d:\d\d")
ITER = re.compile(r"\[\s*\d+/\d+\]")
ANSWERS = ("我是小明的小助手", "我是小明的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦", "我是一个AI助手")


def long_log(iters: int, log_every: int, eval_every: int, save_every: int) -> str:
    """A long xtuner 0.2.0 console log with the fixture's head and line formats."""
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    first = next(i for i, line in enumerate(lines) if "Iter(train)" in line)
    head, steps = lines[:first], [line for line in lines if "Iter(train)" in line]
    start = datetime(2026, 11, 28, 13, 52, 24)
    out = list(head)
    for it in range(log_every, iters + 1, log_every):
        now = (start + timedelta(seconds=it * 0.3)).strftime("%m/%d %H:%M:%S")
        step = STAMP.sub(now, steps[(it // log_every) % len(steps)])
        out.append(ITER.sub(f"[{it}/{iters}]", step))
        if it % eval_every == 0 or it == iters:
            out.append(f"{now} - mmengine - INFO - after_train_iter in EvaluateChatHook.")
            for n, prompt in enumerate(("请你介绍一下你自己", "你是谁")):
                answer = ANSWERS[(it // eval_every + n) % len(ANSWERS)]
                out += [
                    f"{now} - mmengine - INFO - Sample output:",
                    "<|im_start|>user",
                    f"{prompt}<|im_end|>",
                    "<|im_start|>assistant",
                    f"{answer}<|im_end|>",
                    "",
                ]
        if it % save_every == 0 or it == iters:
            out.append(f"{now} - mmengine - INFO - Saving checkpoint at {it} iterations")
    return "\n".join(out) + "\n"


ENGINE = """
import json, sys, time
sys.path.insert(0, {root!r})
start = time.perf_counter()
from pathlib import Path
from engine.runs.watch import Run
run = Run(Path({work!r}), columns={columns})
events = run.poll()
xs, ys = run.state.curve("loss")
print(json.dumps({{"seconds": time.perf_counter() - start, "cpu": time.process_time(), "steps": len(run.state.steps),
                  "events": len(events), "points": len(xs)}}))
"""


def engine_history(work_dir: Path, columns: bool) -> dict:
    """Seconds (from before the engine's import) until a fresh process's RunState holds the whole history."""
    code = ENGINE.format(root=str(ROOT), work=str(work_dir), columns=columns)
    return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    """Build the work dir, alternate rounds of both programs, print the tables; remove the work dir unless --keep."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iters", type=int, default=20000)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--save-every", type=int, default=500)
    parser.add_argument("--engine-only", action="store_true", help="only the engine's read of the history")
    parser.add_argument("--keep", action="store_true", help="leave the work dir (its path is printed)")
    parser.add_argument("--also", action="append", default=[], metavar="DIR", help="another checkout to time too")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="xtui-reattach-"))
    work_dir = tmp / "work"
    (work_dir / "20261128_135200").mkdir(parents=True)
    log = work_dir / "20261128_135200" / "20261128_135200.log"
    log.write_text(long_log(args.iters, args.log_every, args.eval_every, args.save_every), encoding="utf-8")
    hello = tmp / "hello.py"
    hello.write_text(HELLO)
    shown = f"iter {args.iters}/{args.iters}".encode()
    programs = {
        "hello-world Textual app (first frame)": ([sys.executable, str(hello)], b"Hello, world"),
        "xtui WORK_DIR (whole history shown)": ([sys.executable, "-m", "tui.cli", str(work_dir)], shown),
    }
    for other in args.also:  # its own tui and engine first on the path
        code = f"import runpy, sys; sys.path.insert(0, {other!r}); runpy.run_module('tui.cli', run_name='__main__')"
        programs[f"xtui WORK_DIR of {other}"] = ([sys.executable, "-c", code, str(work_dir)], shown)
    lines = log.read_text(encoding="utf-8").count("\n")
    print(f"log: {lines} lines, {log.stat().st_size / 2**20:.1f} MiB, {args.iters} iterations")
    print(f"work dir: {work_dir} (kept)\n" if args.keep else "")
    try:
        measure(args, work_dir, programs)
    finally:
        if not args.keep:
            shutil.rmtree(tmp)


def measure(args: argparse.Namespace, work_dir: Path, programs: dict) -> None:
    """The engine-only rounds, then (unless --engine-only) the pty rounds; print the tables."""
    print("| engine only: Run.poll of the whole history | median s (CPU s) | steps | events |\n|---|---|---|---|")
    for columns in (True, False):
        runs = sorted((engine_history(work_dir, columns) for _ in range(args.rounds)), key=lambda r: r["seconds"])
        mid = runs[len(runs) // 2]
        label = "columns (Run(columns=True): the TUI)" if columns else "one TrainStep per step (Run(): xtui events)"
        print(f"| {label} | {mid['seconds']:.3f} ({mid['cpu']:.3f}) | {mid['steps']} | {mid['events']} |")
    print()
    if args.engine_only:
        return
    anchor, xtui, *_ = compare(programs, args.rounds, header="median s")
    print(f"\nxtui / hello-world: {xtui / anchor:.2f}x")


if __name__ == "__main__":
    main()
