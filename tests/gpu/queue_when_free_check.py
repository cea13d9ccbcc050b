"""On a GPU machine: `xtui train --when-free` waits while another process holds GPU 0's memory, says how much is free,
and starts the run once that memory is given back (NVML readings, the real detached waiter).

Not part of the CPU suite; run by hand on the device machine from the repository root:
    PYTHONPATH=/tmp/site:$PWD python3 tests/gpu/queue_when_free_check.py
Prints one JSON object and exits non-zero unless the wait said the right free memory and the run then started.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from engine.gpu import NvmlBackend
from engine.runs.launch import LaunchSpec, stop
from engine.runs.queue import Wait, enqueue
from engine.runs.watch import Run
from engine.runs.workdir import WorkDir

GIB = 1 << 30
CONFIG = "pretrained_model_name_or_path = {model!r}\ndata_path = {data!r}\ndataset = dict(type='json', dataset_map_fn=None)\n"


def free_gib() -> float:
    """GPU 0's free memory as NVML reports it."""
    gpu = NvmlBackend().read(with_processes=False)[0][0]
    return (gpu.memory_total - gpu.memory_used) / GIB


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="xtui-when-free-"))
    (folder / "model").mkdir()
    (folder / "data.jsonl").write_text('{"conversation": [{"input": "a", "output": "b"}]}\n')
    config = folder / "cfg.py"
    config.write_text(CONFIG.format(model=str(folder / "model"), data=str(folder / "data.jsonl")))
    hold = torch.empty(int((free_gib() - 8) * GIB), dtype=torch.uint8, device="cuda:0")  # leave ~8 GiB free
    need = round(free_gib() + 4)
    work = folder / "queued"
    enqueue(LaunchSpec(config=config, work_dir=work, cwd=folder, devices="0"), Wait(when_free=True, need_gib=need))
    time.sleep(5)
    waiting = Run(work).status()
    del hold
    torch.cuda.empty_cache()
    freed_at = time.monotonic()
    deadline = freed_at + 120
    while WorkDir.open(work).last is None and time.monotonic() < deadline:
        time.sleep(0.5)
    started = WorkDir.open(work).last is not None
    waited = time.monotonic() - freed_at
    if started:
        stop(work, grace=5)
    ok = waiting.state == "queued" and f"waiting for {need} GiB free on GPU 0 (" in (waiting.cause or "") and started
    print(json.dumps({"ok": ok, "queued": [waiting.state, waiting.cause], "started": started,
                      "seconds_from_free_to_start": round(waited, 1), "free_gib_after": round(free_gib(), 1)}))  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
