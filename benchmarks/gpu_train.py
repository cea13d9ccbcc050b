"""GPU benchmark: the seed's QLoRA config on a 1.89B InternLM2-shaped model, plain xtuner vs xtui's engine.

Run on the GPU machine (see docs/benchmarks.md). Both runs use the same config in the same session:
first a plain `python -m xtuner.tools.train`, then `xtui train` + `xtui events --follow`, with the
GPU monitor (NVML) polling and matching the GPU's processes to the run's process group.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from engine.demo import build as demo
from engine.demo import tinymodel
from engine.gpu import GpuMonitor
from engine.runs.events import TrainStep
from engine.runs.folders import log_files
from engine.runs.logs import read_events
from engine.xtuner import configs

SHAPE = dict(  # InternLM2-1.8B's shape as a Llama: 1.89B parameters
    hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
    num_attention_heads=16, num_key_value_heads=8, vocab_size=92544,
)  # fmt: skip
BENCH_SETTINGS = {  # GPU.md's reference runs: max_length 1024 packed, batch 1, accumulation 16
    "max_length": "1024", "accumulative_counts": "16", "max_epochs": "1", "lr": "2e-4",
    "save_steps": "100000", "save_total_limit": "1", "evaluation_freq": "100000",
}  # fmt: skip


def build_model(model_dir: Path, texts: list[str]) -> Path:
    """A random fp16 model of SHAPE with a tokenizer trained on `texts`, saved into `model_dir`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tinymodel.train_tokenizer(texts)
    tokenizer.save_pretrained(model_dir)
    with torch.device("cuda"):
        config = LlamaConfig(tie_word_embeddings=False, torch_dtype="float16", **SHAPE)
        model = LlamaForCausalLM(config).half()
    model.save_pretrained(model_dir, safe_serialization=True)
    del model
    torch.cuda.empty_cache()
    return model_dir


def build(folder: Path, repeats: int) -> Path:
    """Model (random, fp16), tokenizer, data and the QLoRA config; returns the config path."""
    data = folder / "data.jsonl"
    rows = demo.self_cognition_rows("小明", repeats=repeats)
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    model_dir = build_model(folder / "m18", demo._texts(data))
    source = demo.demo_config(model_dir, data, cuda=True)
    source = configs.edit_settings(source, BENCH_SETTINGS)
    source += '\ncustom_hooks.append(dict(type="xtuner.engine.hooks.ThroughputHook"))\n'
    path = folder / "qlora.py"
    path.write_text(source, encoding="utf-8")
    return path


def summary(steps: list[TrainStep], wall: float) -> dict:
    """Median tokens/s and TFLOPs (first logged iteration left out: warm-up), peak memory."""
    steady = steps[1:] or steps
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    return {
        "iters": steps[-1].iter if steps else 0,
        "tokens_per_sec": med([s.tokens_per_sec for s in steady if s.tokens_per_sec]),
        "tflops": med([s.tflops for s in steady if s.tflops]),
        "s_per_iter": med([s.time for s in steady if s.time]),
        "memory_mb": max((s.memory for s in steps if s.memory), default=None),
        "wall_s": round(wall, 1),
    }


def plain_run(config: Path, work_dir: Path) -> dict:
    """The anchor: xtuner's trainer run directly, its figures read off its log."""
    work_dir.mkdir(parents=True)
    t0 = time.monotonic()
    with open(work_dir / "console.log", "wb") as out:
        argv = [sys.executable, "-m", "xtuner.tools.train", str(config), "--work-dir", str(work_dir)]
        subprocess.run(argv, check=True, stdout=out, stderr=subprocess.STDOUT)
    wall = time.monotonic() - t0
    steps = [e for log in log_files(work_dir) for e in read_events(log) if isinstance(e, TrainStep)]
    return summary(steps, wall)


def engine_run(config: Path, work_dir: Path) -> tuple[dict, dict]:
    """xtui's launch, figures read back through `xtui events --follow`, NVML polled meanwhile."""
    cli = [sys.executable, "-m", "tui.cli"]
    t0 = time.monotonic()
    subprocess.run([*cli, "train", str(config), "--work-dir", str(work_dir)], check=True)
    pgid = json.loads((work_dir / "xtui-run.json").read_text())["launches"][-1]["pid"]
    follower = subprocess.Popen([*cli, "events", str(work_dir), "--follow"], stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(follower.stdout), daemon=True)
    reader.start()
    monitor = GpuMonitor(process_every=2.0, disk_path=work_dir)
    gpu = {"readings": 0, "max_memory_used": 0, "run_pids_on_gpu": set(), "errors": None, "name": None}
    while reader.is_alive():
        snap = monitor.poll()
        gpu["readings"] += 1
        gpu["errors"] = snap.gpu_error
        for reading in snap.gpus:
            gpu["name"] = reading.name
            gpu["max_memory_used"] = max(gpu["max_memory_used"], reading.memory_used or 0)
            for proc in reading.processes:
                try:
                    if os.getpgid(proc.pid) == pgid:
                        gpu["run_pids_on_gpu"].add(proc.pid)
                except OSError:
                    pass
        reader.join(timeout=1.0)
    steps = []
    for line in lines:
        event = json.loads(line)
        if event.pop("type") == "train_step":
            steps.append(TrainStep(**event))
    gpu["run_pids_on_gpu"] = sorted(gpu["run_pids_on_gpu"])
    return summary(steps, time.monotonic() - t0), gpu


def tui_run(config: Path, work_dir: Path) -> dict:
    """xtui's launch with the whole TUI (headless, run view open, GPU panel polling) watching until the end."""
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "tui.cli", "train", str(config), "--work-dir", str(work_dir)], check=True)
    watcher = subprocess.run(
        [sys.executable, "-m", "benchmarks.tui_watch", str(work_dir)], check=True, capture_output=True, text=True
    )
    steps = [e for log in log_files(work_dir) for e in read_events(log) if isinstance(e, TrainStep)]
    return {**summary(steps, time.monotonic() - t0), "tui": json.loads(watcher.stdout.strip().splitlines()[-1])}


def main() -> None:
    """Build once, run plain then engine, print and save the comparison."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", default="/tmp/xtui-bench")
    parser.add_argument("--repeats", type=int, default=240, help="data repeats (12 rows each)")
    parser.add_argument("--pairs", type=int, default=2, help="plain/engine pairs, order alternating")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--watcher", choices=("engine", "tui"), default="engine",
                        help="engine: `xtui events --follow` + NVML; tui: the whole app, headless")  # fmt: skip
    args = parser.parse_args()
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    config = build(folder, args.repeats)
    print(f"built in {time.monotonic() - t0:.1f} s", flush=True)
    rounds = []
    for i in range(args.pairs):  # alternate the order so that drift does not favour one side
        order = (args.watcher, "plain") if i % 2 == 0 else ("plain", args.watcher)
        row = {}
        for kind in order:
            work_dir = folder / f"{kind}-{i}"
            if kind == "plain":
                row["plain"] = plain_run(config, work_dir)
            elif kind == "tui":
                row["tui"] = tui_run(config, work_dir)
            else:
                row["engine"], row["gpu_monitor"] = engine_run(config, work_dir)
            print(kind, row[kind], flush=True)
        rounds.append(row)
    pooled = {kind: statistics.median(r[kind]["tokens_per_sec"] for r in rounds) for kind in ("plain", args.watcher)}
    result = {
        "rounds": rounds,
        "median_tokens_per_sec": pooled,
        f"{args.watcher}_over_plain": pooled[args.watcher] / pooled["plain"],
    }
    Path(args.out, f"gpu_train-{args.watcher}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
