"""On a GPU machine: the recipe after training on a QLoRA run of the 1.89B InternLM2-shaped model, through xtui.

A few iterations of QLoRA (`xtui train`), the checkpoint converted as the TUI's convert job does it (a detached
`xtui convert`, read back through engine.runs.jobs), merged with `xtui merge --device cuda` and `--device cpu`, each
output loaded and asked a question, and `xtui doctor --json`'s GPU part. Not part of the CPU suite; run by hand on the
device machine (see docs/benchmarks.md). Prints one JSON object (also written to OUT/after_training.json); exits
non-zero when a step failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import gpu_train
from engine.xtuner import configs

REPORT: dict = {}
SETTINGS = {  # a few iterations: ~240 short rows packed to 512 tokens, a checkpoint every 5
    "max_length": "512", "accumulative_counts": "1", "max_epochs": "1", "lr": "2e-4",
    "save_steps": "5", "save_total_limit": "1", "evaluation_freq": "100000",
    "warmup_ratio": "0.2",  # 0.03 of ~22 iterations rounds to 0: LinearLR then raises "end should be larger than begin"
}  # fmt: skip
QUESTION = "你是谁"
STEP_TIMEOUT_S = 300


def check(name: str, ok: bool, **seen) -> bool:
    """Record a step's outcome and what it saw."""
    REPORT[name] = {"ok": bool(ok), **seen}
    print(name, json.dumps(REPORT[name], ensure_ascii=False, default=str), flush=True)
    return bool(ok)


def xtui(*words: object, timeout: float = STEP_TIMEOUT_S) -> tuple[int, str, str, float]:
    """Run an `xtui` subcommand: exit code, stdout, stderr's tail, seconds."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tui.cli", *map(str, words)], capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr[-2000:], round(time.monotonic() - t0, 1)


def build(folder: Path) -> tuple[Path, Path]:
    """The 1.89B-shaped model (random fp16) with its tokenizer, the data, the QLoRA config made short."""
    config = gpu_train.build(folder, repeats=20)
    config.write_text(configs.edit_settings(config.read_text(encoding="utf-8"), SETTINGS), encoding="utf-8")
    return config, folder / "m18"


def train(config: Path, work_dir: Path) -> bool:
    """`xtui train`, followed to its end."""
    from engine.runs.watch import Run

    rc, out, err, seconds = xtui("train", config, "--work-dir", work_dir)
    if not check("train: launched", rc == 0, rc=rc, out=out[-500:], err=err):
        return False
    run = Run(work_dir)
    t0 = time.monotonic()
    for _ in run.follow(interval=1.0):
        if time.monotonic() - t0 > STEP_TIMEOUT_S:
            break
    status = run.status()
    good = [c.path.name for c in run.checkpoints() if c.ok]
    return check(
        "train: QLoRA iterations", status.state == "finished" and bool(good), state=status.state, cause=status.cause,
        iters=run.state.done_iter, checkpoints=good, loss=run.state.last.loss if run.state.last else None,
        seconds=round(time.monotonic() - t0 + seconds, 1),
    )  # fmt: skip


def convert_job(work_dir: Path) -> Path | None:
    """The latest checkpoint converted the way the run view's convert key does: a detached `xtui convert` job."""
    from engine.runs.jobs import JobKind, JobState, start
    from engine.xtuner.convert import is_adapter
    from tui.screens.jobs import plan

    job_plan = plan(work_dir, JobKind.CONVERT, None)
    job = start(work_dir, job_plan.kind, job_plan.argv, job_plan.out, job_plan.label, job_plan.base, job_plan.template)
    t0, seen = time.monotonic(), set()
    while (status := job.status()).state is JobState.RUNNING and time.monotonic() - t0 < STEP_TIMEOUT_S:
        seen.add(status.message[:80])
        time.sleep(0.5)
    ok = status.state is JobState.FINISHED and is_adapter(job.output)
    check(
        "convert: xtui convert as a job", ok, state=status.state, exit_code=status.exit_code, said=status.message,
        lines_seen=len(seen), out=str(job.output), files=sorted(p.name for p in job.output.glob("*")),
        seconds=round(time.monotonic() - t0, 1), log_tail=job.log.read_text(errors="replace")[-1500:] if not ok else "",
    )  # fmt: skip
    return job.output if ok else None


def merge(base: Path, adapter: Path, out: Path, device: str) -> bool:
    """`xtui merge --device DEVICE`."""
    rc, stdout, err, seconds = xtui("merge", base, adapter, "--out", out, "--device", device)
    files = sorted(p.name for p in out.glob("*")) if out.is_dir() else []
    return check(
        f"merge --device {device}", rc == 0 and "config.json" in files and any(f.endswith(".safetensors") for f in files),
        rc=rc, files=files, said=stdout.strip()[-300:], err=err if rc else "", seconds=seconds,
    )  # fmt: skip


def same_weights(a: Path, b: Path) -> bool:
    """The two merges hold the same tensors, up to fp16 rounding."""
    import torch
    from safetensors import safe_open

    def tensors(folder: Path) -> dict[str, tuple[Path, str]]:
        found = {}
        for file in sorted(folder.glob("*.safetensors")):
            with safe_open(str(file), "pt") as fh:
                found.update({key: (file, key) for key in fh.keys()})  # noqa: SIM118
        return found

    left, right = tensors(a), tensors(b)
    worst, name = 0.0, None
    for key in sorted(set(left) & set(right)):
        with (
            safe_open(str(left[key][0]), "pt", device="cuda") as fa,
            safe_open(str(right[key][0]), "pt", device="cuda") as fb,
        ):
            diff = (fa.get_tensor(key).float() - fb.get_tensor(key).float()).abs().max().item()
        if diff > worst:
            worst, name = diff, key
    torch.cuda.empty_cache()
    return check(
        "merge: cuda and cpu give the same weights", set(left) == set(right) and worst < 1e-2,
        tensors=len(left), only_in_one=sorted(set(left) ^ set(right))[:5], max_abs_diff=worst, at=name,
    )  # fmt: skip


def _answer(kind: str, model: str, adapter: str | None) -> dict:
    """Load one output on the GPU and ask the question (in a process of its own: see `answers`)."""
    from engine.chat.decoding import Sampling
    from engine.chat.models import LoadOptions, ModelSource, load
    from engine.chat.session import ChatSession
    from engine.xtuner.templates import template

    source = ModelSource(kind, model=Path(model), adapter=Path(adapter) if adapter else None)
    loaded = load(source, LoadOptions(device="cuda"))
    session = ChatSession(loaded, template("internlm2_chat"), sampling=Sampling(temperature=0, max_new_tokens=16))
    text = "".join(session.reply(QUESTION))
    return {"device": str(loaded.device), "tokens": session.last.tokens if session.last else 0, "text": text[:80]}


def answers(name: str, kind: str, model: Path, adapter: Path | None = None) -> bool:
    """The output loads on the GPU and answers, in a fresh process as `xtui chat` would (a third compiled decoder in
    one process failed its CUDA graph capture on the H200: that is the chat engine's, not the output's)."""
    t0 = time.monotonic()
    argv = [sys.executable, __file__, "--answer", kind, str(model), *([str(adapter)] if adapter else [])]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, stdin=subprocess.DEVNULL)
    try:
        seen = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return check(f"{name}: loads and generates", False, rc=proc.returncode, err=proc.stderr[-1500:])
    return check(
        f"{name}: loads and generates", seen["tokens"] > 0, **seen, seconds=round(time.monotonic() - t0, 1)
    )  # fmt: skip


def doctor_gpu(folder: Path) -> bool:
    """`xtui doctor --json`: the GPU, torch's CUDA and bitsandbytes' GPU support all ok on this machine."""
    rc, out, err, seconds = xtui("doctor", "--json", "--work-dir", folder)
    try:
        checks = {c["name"]: c for c in json.loads(out)}
    except ValueError:
        return check("doctor --json: GPU part", False, rc=rc, out=out[-500:], err=err)
    gpu_part = {name: checks.get(name) for name in ("gpu", "torch", "bitsandbytes")}
    ok = all(c and c["status"] == "ok" for c in gpu_part.values()) and "sees 0 GPU" not in checks["torch"]["found"]
    return check(
        "doctor --json: GPU part", ok, rc=rc, seconds=seconds, gpu_part=gpu_part,
        others={n: c["status"] for n, c in checks.items() if n not in gpu_part},
    )  # fmt: skip


def main() -> None:
    """Every step; the report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", default="/tmp/xtui-after")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--answer", nargs="+", metavar="KIND MODEL [ADAPTER]", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.answer:  # one output's load and answer, for `answers`
        kind, model, *adapter = args.answer
        print(json.dumps(_answer(kind, model, adapter[0] if adapter else None), ensure_ascii=False))
        return
    folder = Path(args.folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t0 = time.monotonic()
    config, base = build(folder)
    check("build: 1.89B-shaped model and QLoRA config", True, seconds=round(time.monotonic() - t0, 1))
    work_dir = folder / "work"
    if train(config, work_dir):
        adapter = convert_job(work_dir)
        if adapter is not None:
            answers("adapter on its fp16 base", "adapter", base, adapter)
            merged = {device: folder / f"merged-{device}" for device in ("cuda", "cpu")}
            done = {device: merge(base, adapter, out, device) for device, out in merged.items()}
            for device, out in merged.items():
                if done[device]:
                    answers(f"merged on {device}", "merged", out)
            if all(done.values()):
                same_weights(merged["cuda"], merged["cpu"])
    doctor_gpu(folder)
    REPORT["total_s"] = round(time.monotonic() - t0, 1)
    text = json.dumps(REPORT, indent=2, ensure_ascii=False, default=str)
    Path(args.out, "after_training.json").write_text(text, encoding="utf-8")
    print(text)
    sys.exit(0 if all(v["ok"] for v in REPORT.values() if isinstance(v, dict)) else 1)


if __name__ == "__main__":
    main()
