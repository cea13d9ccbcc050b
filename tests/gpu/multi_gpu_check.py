"""On a machine with 2 GPUs: torchrun launch, stop (ranks included), resume, and DeepSpeed ZeRO-2 through the engine.

Not part of the CPU suite (CI has no GPU); run by hand on the device machine, see docs/benchmarks.md.
Prints one JSON object with what each step saw; exits non-zero on the first step that fails.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import psutil

from engine.demo.build import build_demo
from engine.runs.events import Resumed, Started, TrainStep
from engine.runs.launch import LaunchSpec, start, stop
from engine.runs.processes import session_members
from engine.runs.resume import preflight, resume
from engine.runs.watch import Run

REPORT: dict = {}


def follow(run: Run, until=lambda: False, timeout: float = 400) -> list:
    """Events until `until()` holds or the run ends."""
    events, t0 = [], time.monotonic()
    for event in run.follow(interval=0.5):
        events.append(event)
        if until() or time.monotonic() - t0 > timeout:
            break
    return events


def trainers() -> list[int]:
    """Pids of any xtuner trainer still alive on the machine."""
    return [
        p.pid for p in psutil.process_iter(["cmdline"]) if "xtuner.tools.train" in " ".join(p.info["cmdline"] or [])
    ]


def check(name: str, ok: bool, **seen) -> None:
    """Record a step; stop at the first failure."""
    REPORT[name] = {"ok": ok, **seen}
    print(name, REPORT[name], flush=True)
    if not ok:
        print(json.dumps(REPORT, indent=2, default=str))
        sys.exit(1)


def stop_and_resume(paths, work_dir: Path, deepspeed: str | None) -> None:
    """Launch on 2 GPUs, stop after a complete checkpoint, resume it, run to the end."""
    label = deepspeed or "ddp"
    launch = start(LaunchSpec(config=paths.config, work_dir=work_dir, gpus=2, deepspeed=deepspeed, cwd=paths.folder))
    run = Run(work_dir)
    follow(run, until=lambda: any(c.ok for c in run.checkpoints()) and run.state.last is not None)
    ranks = session_members(launch.pid)
    gone = stop(work_dir, grace=20)
    check(f"{label}: stop", gone and not session_members(launch.pid) and not trainers(), processes_before=len(ranks))
    run.poll()
    ckpts = run.checkpoints()
    check(
        f"{label}: checkpoint kind",
        all(c.deepspeed == bool(deepspeed) for c in ckpts),
        ckpts=[c.to_json() for c in ckpts],
    )
    wrong = preflight(work_dir, deepspeed=None if deepspeed else "deepspeed_zero2")
    check(f"{label}: pre-flight refuses the wrong DeepSpeed choice", not wrong.ok, problems=wrong.problems)
    new, result = resume(work_dir)
    events = follow(run)
    after = events[max((i for i, e in enumerate(events) if isinstance(e, Started)), default=0) :]
    resumed = [e.iter for e in after if isinstance(e, Resumed)]
    steps = [e.iter for e in after if isinstance(e, TrainStep)]
    status = run.status()
    check(
        f"{label}: resume continues and finishes",
        status.state == "finished" and resumed == [result.checkpoint.iter] and bool(steps) and steps[0] > result.checkpoint.iter,
        resumed=resumed, first_step=steps[:1], status=status.state, cause=status.cause, argv=new.argv,
    )  # fmt: skip


def main() -> None:
    """Both checks, then the report."""
    paths = build_demo(Path("/tmp/xtui-multi"), cuda=True)
    stop_and_resume(paths, paths.folder / "work-ddp", None)
    if "--deepspeed" in sys.argv:
        stop_and_resume(paths, paths.folder / "work-zero2", "deepspeed_zero2")
    print(json.dumps(REPORT, indent=2, default=str))


if __name__ == "__main__":
    main()
