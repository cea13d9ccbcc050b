"""On a GPU machine: short plain xtuner trainings of InternLM2-1.8B's shape, their peak `memory` against the estimate.

Not part of the CPU suite; run by hand on the device machine (docs/benchmarks.md has the command). Builds the model
with random weights (benchmarks.gpu_train), then for each case trains 24 iterations (accumulation 16, so AdamW's
states exist in the last 8), reads the largest `memory` mmengine logged (torch.cuda.max_memory_allocated, MiB) and
prints one JSON object: measured, estimated and their ratio per case.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.gpu_train import BENCH_SETTINGS, build_model, plain_run
from engine.data.records import write_records
from engine.demo import build as demo
from engine.xtuner import configs
from engine.xtuner.memory_estimate import estimate_config

ITERS = "24"
LOG_EVERY = "8"
CASES = {  # name: (max_length, method); full: every weight trained in fp32 under AMP, as XTuner's full configs load it
    "lora_r64_1024": ("1024", "lora"),
    "lora_r64_2048": ("2048", "lora"),
    "qlora_r64_1024": ("1024", "qlora"),
    "full_512": ("512", "full"),
}


def case_config(name: str, model: Path, data: Path, folder: Path) -> Path:
    """The demo's QLoRA config on `model`, made into the case: length, method, few iterations, no checkpoint."""
    max_length, method = CASES[name]
    source = demo.demo_config(model, data, cuda=True)
    source = configs.edit_settings(source, {**BENCH_SETTINGS, "max_length": max_length, "warmup_ratio": "0.2"})
    source = configs.edit_call(source, "train_cfg", {"max_iters": ITERS}, drop=("max_epochs",))
    source = configs.edit_call(source, "default_hooks.logger", {"interval": LOG_EVERY})
    source = configs.edit_call(source, "default_hooks.checkpoint", {"save_last": "False"})
    if method != "qlora":
        source = configs.edit_call(source, "model.llm", drop=("quantization_config",))
    if method == "full":
        source = configs.edit_call(source, "model.llm", drop=("torch_dtype",))
        source = configs.edit_call(source, "model", {"lora": "None"})
    path = folder / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    return path


def run_case(name: str, config: Path, folder: Path) -> dict:
    """Train the case with plain xtuner; its figures, or why it failed."""
    work_dir = folder / name
    shutil.rmtree(work_dir, ignore_errors=True)
    t0 = time.monotonic()
    try:
        measured = plain_run(config, work_dir)
    except subprocess.CalledProcessError:
        tail = (work_dir / "console.log").read_text(errors="replace").splitlines()[-15:]
        return {"failed": True, "console_tail": tail, "wall_s": round(time.monotonic() - t0, 1)}
    found = estimate_config(config, folder)
    memory = measured["memory_mb"]
    return {
        "measured_mib": memory,
        "estimate_mib": round(found.total / (1 << 20)),
        "estimate_over_measured": round(found.total / (1 << 20) / memory, 3) if memory else None,
        "estimate": found.describe(),
        "iters": measured["iters"],
        "wall_s": measured["wall_s"],
    }


def main() -> None:
    """Build once, run every case asked for, print and save the JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", default="/tmp/xtui-memcheck")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    data = folder / "data.jsonl"
    write_records(data, demo.self_cognition_rows("小明", repeats=60), replace=True)
    model = folder / "m18"
    if not (model / "config.json").is_file():
        build_model(model, demo._texts(data))
    report: dict = {"build_s": round(time.monotonic() - t0, 1), "cases": {}}
    for name in args.cases:
        if CASES[name][1] == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
            report["cases"][name] = {"skipped": "bitsandbytes is not installed (carry .whl-bnb)"}
            continue
        report["cases"][name] = run_case(name, case_config(name, model, data, folder), folder)
        print(name, report["cases"][name], flush=True)
    ratios = [c["estimate_over_measured"] for c in report["cases"].values() if c.get("estimate_over_measured")]
    report["all_within_20_percent"] = bool(ratios) and all(abs(r - 1) <= 0.2 for r in ratios)
    Path(args.out, "memory_check.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(json.dumps(report, indent=2, ensure_ascii=False))
    sys.exit(0 if report["all_within_20_percent"] else 1)


if __name__ == "__main__":
    main()
