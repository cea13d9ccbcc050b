"""Issue 15 in one call on two GPUs, through xtui's CLI and the TUI headless; `--cpu` rehearses it with the tiny model.

Steps, in order: a one-GPU run (the per-GPU baseline); for torchrun, deepspeed_zero2 and deepspeed_zero3 on 2 GPUs:
launch and watch through `xtui events`, the GPU panel's label of each GPU's processes (torchrun only), stop (nothing
left, memory freed), the checkpoint's kind, the world-size pre-flight (ZeRO: a 2-rank checkpoint resumed on 1),
resume to the end; two "nodes" on this host from the per-node commands `xtui train --dry-run` prints; one rank
stopped with SIGSTOP and what `xtui status` says. Each step is recorded as {"ok": ..., what it saw} in one JSON report
(--out, and printed); a failed step does not stop the ones that do not need it; every step has a time budget; every
session the script started is killed at the end. Exit status 0 when every step that ran passed.

Not part of the CPU suite. The lead's command on nvidia-h200-x2 (carry .whl, .whl-bnb and .whl-ds: deepspeed 0.16.2's
source archive and its pure-Python needs, fetched with `pip download`; see ../shared/GPU.md), under 9 minutes:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .whl/*.whl .whl-bnb/*.whl .whl-ds/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH NCCL_NVLS_ENABLE=0 \
    && python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target /tmp/site \
      .whl-ds/deepspeed-0.16.2.tar.gz \
    && python3 -c 'import deepspeed, bitsandbytes, xtuner' \
    && python3 -m tests.gpu.two_gpu_check --budget 480 --out $OUT/two-gpu-check-h200x2.json

(--budget keeps it inside the device's 10 minutes with the installs; steps it skips for time can be run in a
second call with --parts and a fresh --folder.)

The rehearsal here: `.venv/bin/python -m tests.gpu.two_gpu_check --cpu --out docs/results/two-gpu-check-cpu-rehearsal.json`
(xtui refuses `--gpus 2` on a machine without GPUs, so on CPU the torchrun cycle runs one rank; the two nodes give 2
ranks over gloo; ZeRO and NVML steps are skipped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

from benchmarks.gpu_train import summary
from engine.runs.events import TrainStep
from engine.runs.processes import cmdline, environ_value, launch_members, session_members, stop_session
from engine.runs.workdir import WorkDir
from engine.xtuner import configs

ROOT = Path(__file__).resolve().parents[2]

GPU_SETTINGS = {  # the seed's QLoRA config at GPU.md's length, short: ~80 packed sequences, a checkpoint at 20
    "max_length": "1024", "accumulative_counts": "1", "max_epochs": "1", "save_steps": "20",
    "save_total_limit": "1", "evaluation_freq": "100000",
}  # fmt: skip
GPU_REPEATS = 140  # x 12 rows of ~48 tokens: ~80 sequences of 1024 tokens, 40 iterations a rank on 2 GPUs
CPU_SETTINGS = {"max_epochs": "1", "save_steps": "20", "evaluation_freq": "1000"}
BASELINE_STEPS = 3  # logged steps (10 iterations each) the one-GPU run is watched for
FREED_SLACK = 512  # MiB a GPU's memory after a stop may exceed what it was before by (driver noise)
CPU_NOTE = "xtui refuses --gpus 2 without GPUs: on CPU the torchrun cycle runs 1 rank; the two nodes run 2 over gloo"
PARTS = ("baseline", "torchrun", "zero2", "zero3", "nodes")
PANEL_S = 20  # seconds the headless app is given to show both GPUs' processes as the run's
CLEANUP: list[tuple[Path, int]] = []  # (work dir, node) of every launch, killed at the end
FOLLOWERS: list[Follower] = []


class StepFailed(Exception):
    """A step could not see what it waits for (in time, or before its run ended)."""


def cli(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    """`xtui ARGS` as a user runs it."""
    argv = [sys.executable, "-m", "tui.cli", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=max(timeout, 1), cwd=ROOT)


def left(deadline: float) -> float:
    """Seconds until `deadline`; StepFailed once it passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise StepFailed("time budget spent")
    return remaining


def wait_for(predicate, deadline: float, what: str, every: float = 0.5):
    """Poll `predicate` until it gives a true value (returned) or the budget is spent."""
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise StepFailed(f"timed out waiting for {what}")
        time.sleep(every)


class Follower:
    """`xtui events DIR --follow` in a subprocess, its JSON lines gathered by a thread."""

    def __init__(self, work_dir: Path) -> None:
        argv = [sys.executable, "-m", "tui.cli", "events", str(work_dir), "--follow"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
        self.events: list[dict] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        FOLLOWERS.append(self)

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            batch = (
                [{"type": "train_step", **s} for s in event["steps"]] if event.get("type") == "train_steps" else [event]
            )
            self.events.extend(batch)

    def latest(self) -> list[dict]:
        """The events since the last start (a resume's own)."""
        starts = [i for i, e in enumerate(self.events) if e.get("type") == "started"]
        return self.events[starts[-1] if starts else 0 :]

    def steps(self) -> list[TrainStep]:
        """The train steps since the last start."""
        names = {f.name for f in fields(TrainStep)}
        return [
            TrainStep(**{k: v for k, v in e.items() if k in names}) for e in self.latest() if e["type"] == "train_step"
        ]

    def wait(self, predicate, deadline: float, what: str) -> None:
        """Until `predicate(self)` holds; StepFailed when the events end first or the budget is spent."""

        def seen() -> bool:
            if predicate(self):
                return True
            if self.proc.poll() is not None and not self.thread.is_alive() and not predicate(self):
                raise StepFailed(f"the run's events ended before {what}")
            return False

        wait_for(seen, deadline, what)

    def ended(self, deadline: float) -> None:
        """Until `xtui events --follow` returns (every trainer gone, all read)."""
        self.proc.wait(timeout=left(deadline))
        self.thread.join(timeout=5)

    def close(self) -> None:
        """End the follower if it still runs."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Check:
    """The harness: the built config, the report, one step at a time."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.cpu, self.out, self.folder = args.cpu, Path(args.out), Path(args.folder)
        self.report: dict = {"machine": machine(), "mode": "cpu" if self.cpu else "gpu", "steps": {}}
        if self.cpu:
            self.report["note"] = CPU_NOTE
        self.config: Path | None = None
        self.baseline: dict | None = None
        self.parts, self.budget = set(args.parts.split(",")), args.budget
        self.end = time.monotonic() + args.budget

    def step(self, name: str, budget: float, fn, *args) -> dict:
        """Run `fn(deadline, *args)` within its budget and the whole check's, record what it returned (or why it
        failed) under `name`, and write the report so far (a kill from outside leaves it)."""
        t0 = time.monotonic()
        if self.end - t0 < 10:
            self.skip(name, f"the check's time budget ({self.budget:.0f} s) is spent")
            return self.report["steps"][name]
        try:
            seen = fn(min(t0 + budget, self.end), *args)
        except Exception as exc:
            seen = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        seen["seconds"] = round(time.monotonic() - t0, 1)
        self.report["steps"][name] = seen
        print(name, json.dumps(seen, default=str), flush=True)
        self.write()
        return seen

    def write(self) -> None:
        """The report as it stands, into --out."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.report, indent=2, default=str, ensure_ascii=False) + "\n")

    def skip(self, name: str, why: str) -> None:
        """Record a step that did not run."""
        self.report["steps"][name] = {"ok": None, "skipped": why}
        print(name, "skipped:", why, flush=True)

    # --- building ---

    def build(self, deadline: float) -> dict:
        """The GPU: the 1.89B-shaped model and the seed's QLoRA config (benchmarks/gpu_train.py); CPU: the demo's."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.cpu:
            from engine.demo.build import build_demo

            paths = build_demo(self.folder / "demo", cuda=False)
            source, settings = paths.config.read_text(encoding="utf-8"), CPU_SETTINGS
        else:
            from benchmarks.gpu_train import SHAPE

            # in a process of its own: this one holds no CUDA context (the GPUs' memory and processes stay the runs')
            code = f"from benchmarks.gpu_train import build; build(__import__('pathlib').Path({str(self.folder)!r}), {GPU_REPEATS})"
            subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=left(deadline))
            source, settings = (self.folder / "qlora.py").read_text(encoding="utf-8"), GPU_SETTINGS
        self.config = self.folder / "check.py"
        self.config.write_text(configs.edit_settings(source, settings), encoding="utf-8")
        return {"ok": True, "config": str(self.config), "settings": settings,
                "model": "tiny demo model (engine.demo)" if self.cpu else {"shape": SHAPE, "quantization": "nf4"}}  # fmt: skip

    def nodes_config(self) -> Path:
        """The config the two nodes run: on CPU with what mmengine needs for gloo ranks (as test_multinode)."""
        if not self.cpu:
            return self.config
        from tests.unit.test_multinode import TWO_CPU_NODES

        path = self.folder / "check-nodes.py"
        path.write_text(self.config.read_text(encoding="utf-8") + TWO_CPU_NODES, encoding="utf-8")
        return path

    # --- one launch ---

    def launch(
        self, deadline: float, work: Path, gpus: int, deepspeed: str | None, until, state: dict
    ) -> tuple[dict, Follower]:
        """`xtui train`, then `xtui events --follow` until `until(follower)`: what it printed and the figures."""
        before = state["gpu_memory_before"] = gpu_memory()
        extra = ["--deepspeed", deepspeed] if deepspeed else []
        done = cli("train", self.config, "--work-dir", work, "--gpus", gpus, *extra, timeout=left(deadline))
        if done.returncode:
            raise StepFailed(f"xtui train exited {done.returncode}: {(done.stderr or done.stdout).strip()[-800:]}")
        CLEANUP.append((work, 0))
        follower = Follower(work)
        try:
            follower.wait(until, deadline, "the steps watched for")
        except StepFailed as exc:
            raise StepFailed(f"{exc}; console: {console_tail(work)}") from None
        steps = follower.steps()
        seen = {
            "printed": done.stdout.strip().splitlines(), "ranks": gpus,
            "events": figures(steps),
            "gpu_memory_before": before, "gpu_memory_during": gpu_memory(), "run_gpu_processes": run_gpu_processes(work),
        }  # fmt: skip
        return seen, follower

    def one_gpu(self, deadline: float) -> dict:
        """The per-GPU baseline: one GPU, watched for a few logged steps, then stopped (whatever the watch saw)."""
        work = self.folder / "work-1gpu"
        try:
            seen, follower = self.launch(deadline, work, 1, None, lambda f: len(f.steps()) >= BASELINE_STEPS, {})
            follower.close()
        finally:
            alive = (work / "xtui-run.json").is_file() and WorkDir.open(work).alive_pid()
            stopped = cli("stop", work, "--grace", 20, timeout=60) if alive else None
        self.baseline = seen["events"]
        return {
            "ok": stopped is not None and stopped.returncode == 0,
            **seen,
            "stop": stopped and stopped.stdout.strip(),
        }

    # --- one cycle: launch, panel, stop, checkpoint, pre-flight, resume ---

    def cycle(self, deepspeed: str | None) -> None:
        """The steps of one launcher choice, each after the one it needs."""
        label = deepspeed or "torchrun"
        if deepspeed and not package("deepspeed"):
            return self.skip_from(label, "launch and watch", deepspeed, "deepspeed not installed")
        work, gpus = self.folder / f"work-{label}", 1 if self.cpu else 2
        state: dict = {}
        launched = self.step(
            f"{label}: launch and watch", 300, self.watch_until_checkpoint, work, gpus, deepspeed, state
        )
        if not launched["ok"] and not (work / "xtui-run.json").is_file():
            return self.skip_from(label, "GPU panel", deepspeed, launched.get("skipped") or "the launch failed")
        if deepspeed is None:
            if self.cpu:
                self.skip(f"{label}: GPU panel", "no GPU")
            else:
                self.step(f"{label}: GPU panel", 90, self.panel, work)
        stopped = self.step(f"{label}: stop", 90, self.stop, work, state)
        if not stopped["ok"]:
            return self.skip_from(label, "checkpoint", deepspeed, stopped.get("skipped") or "the stop failed")
        self.step(f"{label}: checkpoint", 30, self.checkpoint_kind, work, deepspeed)
        self.step(f"{label}: pre-flight as the resume runs", 60, self.plain_check, work)
        if deepspeed:
            self.step(f"{label}: world-size pre-flight", 60, self.world_size_preflight, work)
        else:
            self.step(f"{label}: pre-flight refuses --deepspeed", 60, self.other_choice, work)
        self.step(f"{label}: resume", 300, self.resume, work)
        return None

    def skip_from(self, label: str, first: str, deepspeed: str | None, why: str) -> None:
        """Skip the cycle's steps from `first` on."""
        steps = ["launch and watch", "GPU panel", "stop", "checkpoint", "pre-flight as the resume runs",
                 "world-size pre-flight" if deepspeed else "pre-flight refuses --deepspeed", "resume"]  # fmt: skip
        if deepspeed:
            steps.remove("GPU panel")
        for what in steps[steps.index(first) if first in steps else 0 :]:
            self.skip(f"{label}: {what}", why)

    def watch_until_checkpoint(
        self, deadline: float, work: Path, gpus: int, deepspeed: str | None, state: dict
    ) -> dict:
        """Launch and watch until a step is logged after the first checkpoint (its save is done)."""

        def past_checkpoint(f: Follower) -> bool:
            saved = [e["iter"] for e in f.latest() if e["type"] == "checkpoint_saved"]
            return bool(saved) and any(s.iter > saved[0] for s in f.steps())

        seen, follower = self.launch(deadline, work, gpus, deepspeed, past_checkpoint, state)
        follower.close()
        if self.baseline and self.baseline.get("tokens_per_sec") and seen["events"].get("tokens_per_sec"):
            seen["tokens_per_sec_per_gpu_vs_one_gpu"] = (
                seen["events"]["tokens_per_sec"] / self.baseline["tokens_per_sec"]
            )
        return {"ok": True, **seen}

    def panel(self, deadline: float, work: Path) -> dict:
        """XtuiApp headless with the real NVML backend: the label each GPU's processes get, and their ranks."""
        label = f"{work.parent.name}/{work.name}"
        gpus, text = asyncio.run(asyncio.wait_for(panel_reading(self.folder, self.out.parent, label), left(deadline)))
        mapping = {gpu: sorted({p["rank"] for p in procs if p["label"] == label and p["rank"] is not None})
                   for gpu, procs in gpus.items()}  # fmt: skip
        each_own = len(mapping) >= 2 and all(len(r) == 1 for r in mapping.values())
        distinct = each_own and len({r[0] for r in mapping.values()}) == len(mapping)
        return {"ok": distinct, "rank_of_gpu": mapping, "processes": gpus, "launch_pid": WorkDir.open(work).last.pid,
                "rank_named_in_label": any("rank" in (p["label"] or "") for ps in gpus.values() for p in ps),
                "screen": text.splitlines()}  # fmt: skip

    def stop(self, deadline: float, work: Path, state: dict) -> dict:
        """`xtui stop`: exit 0, none of the launch's processes left, each GPU's memory back to what it was."""
        launch, before = WorkDir.open(work).last, state.get("gpu_memory_before")
        members = session_members(launch.pid, launch.create_time)
        done = cli("stop", work, "--grace", 20, timeout=left(deadline))
        time.sleep(1)
        remaining = session_members(launch.pid, launch.create_time) + trainers_in(work)
        seen = {"printed": done.stdout.strip(), "processes_before": len(members), "processes_left": remaining}
        if not self.cpu:
            freed = lambda: all(now <= was + FREED_SLACK for now, was in zip(gpu_memory(), before))  # noqa: E731
            with contextlib.suppress(StepFailed):
                wait_for(freed, time.monotonic() + min(30, left(deadline)), "GPU memory freed", every=1)
            seen |= {"gpu_memory_before_launch": before, "gpu_memory_after_stop": gpu_memory()}
        memory_ok = self.cpu or all(now <= was + FREED_SLACK for now, was in zip(gpu_memory(), before))
        return {"ok": done.returncode == 0 and not remaining and memory_ok, **seen}

    def checkpoint_kind(self, deadline: float, work: Path, deepspeed: str | None) -> dict:
        """The run's checkpoints: a folder each under ZeRO, a file otherwise; the newest complete."""
        done = cli("status", work, "--json", timeout=left(deadline))
        ckpts = json.loads(done.stdout)[0]["checkpoints"]
        folder = {Path(c["path"]).name: Path(c["path"]).is_dir() for c in ckpts}
        kind_ok = all(is_dir == bool(deepspeed) == c["deepspeed"] for c, is_dir in zip(ckpts, folder.values()))
        return {"ok": bool(ckpts) and kind_ok and ckpts[-1]["problem"] is None,
                "checkpoints": ckpts, "is_folder": folder}  # fmt: skip

    def plain_check(self, deadline: float, work: Path) -> dict:
        """`xtui resume --check` with no options passes: it checks what `xtui resume` (the next step) would run."""
        done = cli("resume", work, "--check", timeout=left(deadline))
        return {"ok": done.returncode == 0, "exit": done.returncode, "printed": done.stdout.strip().splitlines()}

    def other_choice(self, deadline: float, work: Path) -> dict:
        """`xtui resume --check --deepspeed deepspeed_zero2` on a plain checkpoint: refused."""
        done = cli("resume", work, "--check", "--deepspeed", "deepspeed_zero2", timeout=left(deadline))
        lines = done.stdout.strip().splitlines()
        named = any("resume without --deepspeed" in line for line in lines)
        return {"ok": done.returncode == 1 and named, "exit": done.returncode, "printed": lines}

    def world_size_preflight(self, deadline: float, work: Path) -> dict:
        """`xtui resume --check --gpus 1` on a 2-rank ZeRO checkpoint: refused, for that reason only, naming both sizes."""
        deepspeed = WorkDir.open(work).last.deepspeed
        done = cli("resume", work, "--check", "--gpus", 1, "--deepspeed", deepspeed, timeout=left(deadline))
        lines = done.stdout.strip().splitlines()
        problems = [line for line in lines if line.startswith("problem: ")]
        named = len(problems) == 1 and "shards of 2 ranks and the resume would run 1" in problems[0]
        return {"ok": done.returncode == 1 and named, "exit": done.returncode, "printed": lines}

    def resume(self, deadline: float, work: Path) -> dict:
        """`xtui resume`: it starts from the newest checkpoint's iteration, goes past it and finishes."""
        done = cli("resume", work, timeout=left(deadline))
        if done.returncode:
            raise StepFailed(f"xtui resume exited {done.returncode}: {(done.stderr or done.stdout).strip()[-800:]}")
        follower = Follower(work)
        follower.ended(deadline)
        after = follower.latest()
        resumed = [e["iter"] for e in after if e["type"] == "resumed"]
        steps = [s.iter for s in follower.steps()]
        status = json.loads(cli("status", work, "--json", timeout=left(deadline)).stdout)[0]
        frm = next((line for line in done.stdout.splitlines() if line.startswith("checkpoint: ")), "")
        ckpt_iter = int(frm.split("(iteration ")[1].split()[0]) if "(iteration " in frm else None
        ok = status["status"] == "finished" and resumed == [ckpt_iter] and bool(steps) and steps[0] > ckpt_iter
        return {"ok": ok, "printed": done.stdout.strip().splitlines(), "resumed_at": resumed, "first_step": steps[:1],
                "last_step": steps[-1:], "status": status["status"], "cause": status["cause"],
                **({} if ok else {"console": console_tail(work)})}  # fmt: skip

    # --- two nodes and the hang ---

    def two_nodes(self) -> None:
        """Node 1's then node 0's part from the commands `xtui train --dry-run` prints, one GPU each; then the hang."""
        work = self.folder / "work-nodes"
        started = self.step("two nodes: launch from the per-node commands", 300, self.start_nodes, work)
        if not started["ok"]:
            why = started.get("skipped") or "the nodes did not train"
            self.skip("hang: one rank stopped with SIGSTOP", why)
            self.skip("two nodes: train to the end", why)
            return
        self.step("hang: one rank stopped with SIGSTOP", 150, self.hang, work)
        self.step("two nodes: train to the end", 240, self.nodes_end, work)

    def start_nodes(self, deadline: float, work: Path) -> dict:
        """Dry run for the commands, each node's `xtui train` (node 1 first: it waits at the rendezvous), a few steps."""
        config, port = self.nodes_config(), free_port()
        dry = cli("train", config, "--work-dir", work, "--gpus", 1, "--nnodes", 2, "--master-addr", "127.0.0.1",
                  "--master-port", port, "--dry-run", timeout=left(deadline))  # fmt: skip
        prefix = "#   or through xtui there: "
        given = [line.removeprefix(prefix) for line in dry.stdout.splitlines() if line.startswith(prefix)]
        if dry.returncode or len(given) != 2:
            raise StepFailed(f"xtui train --dry-run exited {dry.returncode}: {dry.stdout[-800:]}{dry.stderr[-800:]}")
        printed = {}
        for rank in (1, 0):
            words = shlex.split(given[rank])[2:]  # `xtui train ...` as printed, run the same way
            devices = [] if self.cpu else ["--devices", rank]  # one GPU each on the one host
            done = cli("train", *words, *devices, timeout=left(deadline))
            printed[rank] = (done.stdout + done.stderr).strip().splitlines()
            if done.returncode:
                raise StepFailed(f"node {rank}'s xtui train exited {done.returncode}: {printed[rank]}")
            CLEANUP.append((work, rank))
        follower = Follower(work)
        try:
            follower.wait(lambda f: len(f.steps()) >= 2, deadline, "2 logged steps")
        except StepFailed as exc:
            raise StepFailed(f"{exc}; console: {console_tail(work)}") from None
        finally:
            follower.close()
        parts = {rank: WorkDir.open(work, node=rank).last for rank in (0, 1)}
        world = "Distributed training: True" in WorkDir.open(work).console.read_text(errors="replace")
        return {"ok": world and all(p.nnodes == 2 and p.node_rank == r for r, p in parts.items()),
                "dry_run": dry.stdout.strip().splitlines(), "ran": given, "printed": printed, "distributed": world,
                "events": figures(follower.steps()), "gpu_memory_during": gpu_memory()}  # fmt: skip

    def hang(self, deadline: float, work: Path) -> dict:
        """SIGSTOP node 1's rank; `xtui status` of each part until one says stalled; what it names; SIGCONT."""
        launch = WorkDir.open(work, node=1).last
        worker = wait_for(lambda: rank_worker(launch), deadline, "node 1's rank process")
        rank, group = environ_value(worker, "RANK"), _group(worker)  # the GPU panel labels by the launch's group
        os.kill(worker, signal.SIGSTOP)
        try:
            statuses: dict = {}

            def stalled() -> bool:
                for node in (0, 1):
                    done = cli("status", work, "--json", "--node-rank", node, timeout=left(deadline))
                    statuses[node] = {k: json.loads(done.stdout)[0][k] for k in ("status", "cause", "pid")}
                return any(s["status"] == "stalled" for s in statuses.values())

            wait_for(stalled, deadline, "a stalled status", every=5)
        finally:
            os.kill(worker, signal.SIGCONT)
        causes = [s["cause"] or "" for s in statuses.values() if s["status"] == "stalled"]
        pid_named = any(f"pid {worker} stopped" in c for c in causes)
        return {"ok": pid_named, "stopped_pid": worker, "stopped_rank": rank, "statuses": statuses,
                "rank_process_group": group, "launch_pid": launch.pid,
                "pid_named": pid_named, "rank_named": any(f"rank {rank}" in c for c in causes)}  # fmt: skip

    def nodes_end(self, deadline: float, work: Path) -> dict:
        """After SIGCONT both parts go on and finish; each part's status says so."""
        follower = Follower(work)
        follower.ended(deadline)
        wait_for(lambda: not any(WorkDir.open(work, node=n).alive_pid() for n in (0, 1)), deadline, "node 1 to end")
        statuses = {n: json.loads(cli("status", work, "--json", "--node-rank", n).stdout)[0] for n in (0, 1)}
        seen = {n: {k: s[k] for k in ("status", "cause", "iter", "max_iters", "node")} for n, s in statuses.items()}
        return {"ok": all(s["status"] == "finished" for s in seen.values()), "parts": seen,
                "events": figures(follower.steps())}  # fmt: skip

    # --- the whole ---

    def run(self) -> int:
        """Every step in order, the report written and printed; 0 when no step that ran failed."""
        try:
            built = self.step("build", 240, self.build)
            if built["ok"]:
                if "baseline" in self.parts:
                    self.step("one GPU (baseline)", 240, self.one_gpu)
                for deepspeed in (None, "deepspeed_zero2", "deepspeed_zero3"):
                    if (deepspeed or "torchrun").removeprefix("deepspeed_") in self.parts:
                        self.cycle(deepspeed)
                if "nodes" in self.parts:
                    self.two_nodes()
        finally:
            self.report["cleanup"] = cleanup()
        failed = [name for name, seen in self.report["steps"].items() if seen.get("ok") is False]
        self.report["failed"] = failed
        self.report["skipped"] = [name for name, seen in self.report["steps"].items() if seen.get("ok") is None]
        self.report["seconds"] = round(time.monotonic() - self.end + self.budget, 1)
        self.write()
        print(json.dumps(self.report, indent=2, default=str, ensure_ascii=False))
        return 1 if failed else 0


async def panel_reading(root: Path, out: Path, label: str) -> tuple[dict, str]:
    """The app headless at 120x40 until both GPUs show a process of the run: each GPU's (pid, label, rank)."""
    from tests.gpu.panel_check import screen_text
    from tui.app import XtuiApp

    app = XtuiApp(roots=[root], poll_s=1.0)
    async with app.run_test(size=(120, 40)) as pilot:
        gpus: dict = {}
        for _ in range(PANEL_S):
            await pilot.pause(1.0)
            update = app.gpu
            if update is None:
                continue
            gpus = {g.index: [{"pid": p.pid, "label": update.run_of_pid.get(p.pid), "rank": _int(environ_value(p.pid, "RANK")),
                               "process_group": _group(p.pid)} for p in g.processes] for g in update.snapshot.gpus}  # fmt: skip
            if sum(any(p["label"] == label for p in ps) for ps in gpus.values()) >= 2:
                break
        text = screen_text(app)
        out.mkdir(parents=True, exist_ok=True)
        (out / "two-gpu-check-panel-120x40.txt").write_text(text)
    return gpus, text


def figures(steps: list[TrainStep]) -> dict:
    """What `xtui events` gave of the steps: benchmarks/gpu_train.py's medians (first logged step left out)."""
    return {k: v for k, v in summary(steps, 0.0).items() if k != "wall_s"} | {"logged_steps": len(steps)}


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def _group(pid: int) -> int | None:
    """The process group of `pid` (what the app matches against a launch's pid), None once it is gone."""
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def rank_worker(launch) -> int | None:
    """The pid of the launch's rank process: the trainer whose parent is torchrun."""
    members = launch_members(launch.pid, launch.create_time)
    agents = {m.pid for m in members if "torch.distributed.run" in " ".join(cmdline(m.pid))}
    return next((m.pid for m in members if m.ppid in agents and environ_value(m.pid, "RANK")), None)


def trainers_in(work: Path) -> list[int]:
    """Pids of any trainer on the machine whose command line names `work`."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if "xtuner.tools.train" in line and str(work) in line:
            found.append(proc.pid)
    return found


def gpu_memory() -> list[int] | str:
    """Each GPU's used memory in MiB as NVML reports it (a note when there is no GPU)."""
    from engine.gpu import NvmlBackend

    gpus, error = NvmlBackend().read(with_processes=False)
    return [(g.memory_used or 0) >> 20 for g in gpus] if gpus else f"no GPU ({error})"


def run_gpu_processes(work: Path) -> dict | str:
    """Per GPU, the run's processes on it (pid, rank, MiB), from NVML and the run's sessions."""
    from engine.gpu import NvmlBackend

    gpus, error = NvmlBackend().read(with_processes=True)
    if not gpus:
        return f"no GPU ({error})"
    ours = {m.pid for n in (0, 1) if (last := WorkDir.open(work, node=n).last)
            for m in launch_members(last.pid, last.create_time)}  # fmt: skip
    return {g.index: [{"pid": p.pid, "rank": _int(environ_value(p.pid, "RANK")), "mib": (p.used_memory or 0) >> 20}
                      for p in g.processes if p.pid in ours] for g in gpus}  # fmt: skip


def console_tail(work: Path, chars: int = 1500) -> str:
    """The end of the run's console file (node 0's)."""
    console = WorkDir.open(work).console
    return console.read_text(errors="replace")[-chars:] if console.exists() else "(no console)"


def package(name: str) -> bool:
    """Whether `name` can be imported here."""
    import importlib.util

    return importlib.util.find_spec(name) is not None


def free_port() -> int:
    """A TCP port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def machine() -> dict:
    """Where this ran: host, CPUs, GPUs by name."""
    gpus = gpu_memory()
    names = []
    if isinstance(gpus, list):
        from engine.gpu import NvmlBackend

        names = [g.name for g in NvmlBackend().read(with_processes=False)[0]]
    return {"host": socket.gethostname(), "cpus": os.cpu_count(), "gpus": names, "python": sys.version.split()[0]}


def cleanup() -> dict:
    """Kill the session of every launch and follower this script started (stopped ones continued first)."""
    for follower in FOLLOWERS:
        follower.close()
    left_alive = {}
    for work, node in CLEANUP:
        last = WorkDir.open(work, node=node).last
        if last is None:
            continue
        for member in launch_members(last.pid, last.create_time):
            with contextlib.suppress(OSError):
                os.kill(member.pid, signal.SIGCONT)
        stop_session(last.pid, last.create_time, grace=5)
        alive = session_members(last.pid, last.create_time) + trainers_in(work)
        if alive:
            left_alive[f"{work.name} node {node}"] = alive
    return {"launches": len(CLEANUP), "processes_left": left_alive}


def main() -> int:
    """Parse the options, run every step."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="rehearse with the tiny demo model on CPU")
    parser.add_argument("--out", required=True, help="the JSON report to write")
    parser.add_argument("--folder", default="/tmp/xtui-two-gpu", help="where the model, config and runs go (fresh)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"which parts to run, of {','.join(PARTS)}")
    parser.add_argument("--budget", type=float, default=540, help="seconds for the whole check; later steps skipped")
    args = parser.parse_args()
    if not set(args.parts.split(",")) <= set(PARTS):
        parser.error(f"--parts takes some of {','.join(PARTS)}")
    if Path(args.folder).exists() and any(Path(args.folder).glob("work-*")):
        parser.error(f"{args.folder} holds runs of an earlier check: pick another --folder")
    return Check(args).run()


if __name__ == "__main__":
    sys.exit(main())
