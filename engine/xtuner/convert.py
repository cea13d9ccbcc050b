"""XTuner's converters run as jobs: `pth_to_hf` (checkpoint -> adapter or model) and `merge` (base + adapter)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from engine import locations
from engine.files import build_folder
from engine.xtuner.compat import BOOT, trusted_load_env
from engine.errors import XtunerError

PTH_TO_HF = "xtuner.tools.model_converters.pth_to_hf"
MERGE = "xtuner.tools.model_converters.merge"


class ConvertError(XtunerError):
    """A conversion that cannot start or that failed (the message ends with the tool's last words)."""


def _tail(text: str, lines: int = 3) -> str:
    """The last non-empty lines of a tool's output, joined on one line."""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "(no output)"


def _run(module: str, args: list[str], out_dir: Path, what: str) -> Path:
    """Run `module *args STAGING` (see BOOT) into a folder that becomes `out_dir` only when it worked."""
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConvertError(f"{out_dir} already exists: pick a new folder (xtui never overwrites one)")

    def fill(staging: Path) -> None:
        proc = subprocess.run(
            [sys.executable, "-c", BOOT, module, *args, str(staging)], check=False, capture_output=True, text=True,
            env={**os.environ, **trusted_load_env()}, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if proc.returncode != 0 or "Traceback (most recent call last)" in proc.stderr:
            raise ConvertError(f"{what} failed (exit {proc.returncode}): {_tail(proc.stderr or proc.stdout)}")
        if not any(staging.iterdir()):
            raise ConvertError(f"{what} wrote nothing: {_tail(proc.stderr or proc.stdout)}")

    return build_folder(out_dir, fill)


def pth_to_hf(config: Path, checkpoint: Path, out_dir: Path) -> Path:
    """Convert a training checkpoint to Hugging Face format: an adapter folder for LoRA, a model otherwise."""
    if not Path(config).is_file():
        raise ConvertError(f"config not found: {config}")
    if not Path(checkpoint).exists():
        raise ConvertError(f"checkpoint not found: {checkpoint}")
    return _run(PTH_TO_HF, [str(config), str(checkpoint), "--safe-serialization"], out_dir, "pth_to_hf")


def merge(base: Path, adapter: Path, out_dir: Path, device: str = "cpu") -> Path:
    """Merge a LoRA adapter into its base model and save the whole model with its tokenizer."""
    if not (Path(base) / "config.json").is_file():
        raise ConvertError(f"not a model folder (no config.json): {base}")
    if not (Path(adapter) / "adapter_config.json").is_file():
        raise ConvertError(f"not an adapter folder (no adapter_config.json): {adapter}")
    return _run(MERGE, [str(base), str(adapter), "--safe-serialization", "--device", device], out_dir, "merge")


def is_adapter(folder: Path) -> bool:
    """True for a PEFT adapter folder."""
    return (Path(folder) / "adapter_config.json").is_file()


def checkpoint_hf(config: Path, checkpoint: Path) -> Path:
    """The Hugging Face form of `checkpoint`, converted once into the cache and reused while it is unchanged."""
    checkpoint = Path(checkpoint).resolve()
    try:
        stat = checkpoint.stat()
    except OSError as exc:
        raise ConvertError(f"checkpoint not readable: {checkpoint} ({exc.strerror})") from exc
    key = hashlib.sha1(f"{checkpoint}|{stat.st_mtime_ns}|{stat.st_size}".encode()).hexdigest()[:16]
    folder = locations.cache_dir() / "checkpoints" / f"{checkpoint.stem}-{key}"
    if folder.is_dir() and any(folder.iterdir()):
        return folder
    return pth_to_hf(config, checkpoint, folder)
