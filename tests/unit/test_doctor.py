"""xtui doctor on this machine, a broken bitsandbytes in a throwaway venv, and the launch pre-flight it feeds."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from engine.errors import RunsError
from engine.gpu import NvmlBackend
from engine.runs.events import RunError
from engine.runs.launch import LaunchSpec, start
from engine.runs.watch import RunState
from engine.xtuner.doctor import BNB_FIX, NO_GPU, loads_in_4bit
from tests.unit.test_slurm import cfg  # noqa: F401  (a fixture: a config that passes the launch checks)
from tui.cli import main

REPO = Path(__file__).resolve().parents[2]
NO_GPUS_HERE = not NvmlBackend().read(with_processes=False)[0]
TRITON_OPS = "No module named 'triton.ops'"


def _doctor(python: str = sys.executable) -> tuple[int, dict]:
    """`xtui doctor --json` run by `python`: its exit code and its checks by name."""
    proc = subprocess.run(
        [python, "-m", "tui.cli", "doctor", "--json"], capture_output=True, text=True, cwd=REPO, timeout=600
    )
    return proc.returncode, {c["name"]: c for c in json.loads(proc.stdout)}


@pytest.mark.skipif(not NO_GPUS_HERE, reason="reads this machine as one without an NVIDIA driver")
def test_doctor_on_a_machine_without_a_gpu() -> None:
    code, checks = _doctor()
    assert list(checks) == ["python", "gpu", "torch", "xtuner", "mmengine", "transformers", "peft", "bitsandbytes",
                            "deepspeed", "flash-attn", "disk"]  # fmt: skip
    assert checks["gpu"]["status"] == "warn" and checks["gpu"]["found"] == NO_GPU
    for name in ("python", "torch", "xtuner", "mmengine", "transformers", "peft", "disk"):
        assert checks[name]["status"] == "ok", checks[name]
    assert checks["torch"]["found"].startswith("2.") and "sees 0 GPU(s)" in checks["torch"]["found"]
    assert (
        checks["bitsandbytes"]["status"] == "warn" and "no GPU support (no GPU here)" in checks["bitsandbytes"]["found"]
    )
    if importlib.util.find_spec("deepspeed") is None:
        assert checks["deepspeed"] == {"name": "deepspeed", "status": "warn", "found": "not installed",
                                       "fix": "needed for --deepspeed: pip install deepspeed"}  # fmt: skip
    assert code == 0


def test_a_broken_bitsandbytes_is_reported_with_its_fix(tmp_path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3.*")) / "site-packages"
    (site / "xtui-packages.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )  # this venv's packages, after the stub
    stub = site / "bitsandbytes"
    stub.mkdir()
    (stub / "__init__.py").write_text(f"raise ModuleNotFoundError({TRITON_OPS!r})\n")
    (site / "bitsandbytes-0.45.0.dist-info").mkdir()
    (site / "bitsandbytes-0.45.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: bitsandbytes\nVersion: 0.45.0\n"
    )
    code, checks = _doctor(str(venv / "bin" / "python"))
    broken = checks["bitsandbytes"]
    assert broken["status"] == "fail" and broken["found"] == f"0.45.0: ModuleNotFoundError: {TRITON_OPS}"
    assert broken["fix"].endswith(BNB_FIX) and "triton 3.x" in broken["fix"]
    assert checks["torch"]["status"] == "ok" and checks["peft"]["status"] == "ok"  # the rest read as before
    assert code == 1


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="DeepSpeed is installed here")
def test_deepspeed_without_deepspeed_is_refused_before_launch(cfg, tmp_path, capsys) -> None:  # noqa: F811
    work = tmp_path / "w"
    assert main(["train", str(cfg), "--work-dir", str(work), "--deepspeed", "deepspeed_zero2"]) == 2
    err = capsys.readouterr().err
    assert "--deepspeed deepspeed_zero2 needs DeepSpeed, which is not installed here: " in err
    assert "pip install deepspeed" in err and not work.exists()


@pytest.mark.skipif(not NO_GPUS_HERE, reason="needs a machine without GPUs")
def test_more_gpus_and_4bit_without_a_gpu_are_refused_before_launch(cfg, tmp_path) -> None:  # noqa: F811
    with pytest.raises(RunsError, match=r"--gpus 2 asks for more GPUs than this machine has \(0: no NVIDIA driver"):
        start(LaunchSpec(config=cfg, work_dir=tmp_path / "w", gpus=2))
    four_bit = tmp_path / "qlora.py"
    four_bit.write_text(
        cfg.read_text() + "\nquantization_config = dict(type='BitsAndBytesConfig', load_in_4bit=True)\n"
    )
    assert loads_in_4bit(four_bit) and not loads_in_4bit(cfg)
    with pytest.raises(RunsError, match="loads the model in 4 bits, which needs bitsandbytes with GPU support"):
        start(LaunchSpec(config=four_bit, work_dir=tmp_path / "w4"))
    assert not (tmp_path / "w").exists() and not (tmp_path / "w4").exists()


def test_a_run_failing_on_a_known_environment_cause_says_what_to_do() -> None:
    state = RunState()
    state.apply(
        RunError("traceback", f"ModuleNotFoundError: {TRITON_OPS}", "Traceback ...\n  import bitsandbytes", rank=1)
    )
    assert state.first_failure() == f"rank 1: ModuleNotFoundError: {TRITON_OPS}: " + (
        f"bitsandbytes 0.45.0 (xtuner 0.2.0's pin) fails beside triton 3.x: {BNB_FIX}"
    )
    plain = RunState()
    plain.apply(RunError("traceback", "ValueError: something else"))
    assert plain.first_failure() == "ValueError: something else"


def test_a_warm_up_of_no_iteration_says_what_to_do() -> None:
    state = RunState()  # what xtuner 0.2.0 printed on the H200 for a 22-iteration run with warmup_ratio 0.03
    state.apply(RunError("traceback", "ValueError: end should be larger than begin, but got begin=0, end=0"))
    assert "raise warmup_ratio" in state.first_failure() and "xtui config check" in state.first_failure()
