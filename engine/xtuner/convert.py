"""XTuner's converters run as jobs: `pth_to_hf` (checkpoint -> adapter or model) and `merge` (base + adapter)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path

from engine import locations
from engine.errors import XtunerError
from engine.files import build_folder
from engine.xtuner.compat import BOOT, trusted_load_env
from engine.xtuner.doctor import remedy

PTH_TO_HF = "xtuner.tools.model_converters.pth_to_hf"
MERGE = "xtuner.tools.model_converters.merge"
GIB = 1024**3
OnLine = Callable[[str], None]  # hears each line of a converter's output


class ConvertError(XtunerError):
    """A conversion that cannot start or that failed (the message ends with the tool's last words)."""


# A converter's output -> what it means, for failures whose cause is the input (the environment's: doctor.remedy).
KNOWN_FAILURES = (
    (("size mismatch", "does not have a parameter or a buffer named", "this looks incorrect",
      "Missing key(s)", "Unexpected key(s)", "KeyError: 'llm."),
     "the checkpoint does not fit this config (another model, LoRA rank or LLaVA setup): convert it with the config "
     "of the run that saved it"),
    (("is not a local folder and is not a valid model identifier", "We couldn't connect to",
      "Can't load tokenizer for", "Can't load the configuration of"),
     "the config (or the adapter) names a model that is not on this machine: download it, or point "
     "pretrained_model_name_or_path (adapter_config.json's base_model_name_or_path) at a local folder"),
    (("No space left on device",), "the disk filled up: free some space and convert again"),
)  # fmt: skip
TAIL_LINES = 40  # of a converter's output kept for its error message


class HfKind(StrEnum):
    """What a converted folder holds; the value is the word shown."""

    ADAPTER = "adapter"  # a LoRA adapter (adapter_config.json)
    MODEL = "model"  # a whole model with its tokenizer (config.json)
    LLAVA = "llava"  # xtuner's LLaVA layout: projector/, llm_adapter/ or an LLM, visual_encoder(_adapter)/


def hf_kind(folder: Path) -> HfKind | None:
    """What `folder` holds, None when it is none of the converted kinds."""
    folder = Path(folder)
    if (folder / "projector").is_dir():
        return HfKind.LLAVA
    if is_adapter(folder):
        return HfKind.ADAPTER
    return HfKind.MODEL if (folder / "config.json").is_file() else None


def _tail(lines: Sequence[str], count: int = 3) -> str:
    """The last non-empty lines of a tool's output, joined on one line."""
    kept = [line.strip() for line in lines if line.strip()]
    return " | ".join(kept[-count:]) or "(no output)"


def _explained(lines: Sequence[str]) -> str:
    """What a converter's output says went wrong, when it is a known failure (else '')."""
    text = "\n".join(lines)
    known = next((meaning for signs, meaning in KNOWN_FAILURES if any(sign in text for sign in signs)), None)
    found = known or remedy(text)
    return f"{found}. " if found else ""


def refuse_existing(folder: Path) -> None:
    """ConvertError when `folder` exists and is not an empty folder (xtui never overwrites a model folder)."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConvertError(f"{folder} already exists: pick a new folder (xtui never overwrites one)")


def size_of(path: Path) -> int:
    """Bytes of a file, or of the files in a folder and below."""
    path = Path(path)
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def check_free_space(folder: Path, need: int, what: str) -> None:
    """ConvertError when the drive that will hold `folder` has less than `need` bytes free."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if free < need:
        raise ConvertError(
            f"not enough free disk for {folder.name}: {free / GIB:.1f} GiB free in {existing}, "
            f"{what} needs about {need / GIB:.1f} GiB: free some space or pick a folder on another drive"
        )


def _run(module: str, args: list[str], out_dir: Path, what: str, on_line: OnLine | None) -> Path:
    """Run `module *args STAGING` (see BOOT) into a folder that becomes `out_dir` only when it worked.

    Each line of the tool's output (progress bars' updates too) goes to `on_line` as it comes.
    """
    out_dir = Path(out_dir).resolve()
    refuse_existing(out_dir)

    def fill(staging: Path) -> None:
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        traceback = False
        with subprocess.Popen(
            [sys.executable, "-c", BOOT, module, *args, str(staging)], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", env={**os.environ, **trusted_load_env()},
            stdin=subprocess.DEVNULL,
        ) as proc:  # fmt: skip
            assert proc.stdout is not None
            for line in proc.stdout:  # universal newlines: a progress bar's \r updates are lines too
                line = line.rstrip("\n")
                tail.append(line)
                traceback = traceback or "Traceback (most recent call last)" in line
                if on_line is not None:
                    on_line(line)
        if proc.returncode != 0 or traceback:
            raise ConvertError(f"{what} failed (exit {proc.returncode}): {_explained(tail)}{_tail(tail)}")
        if not any(staging.iterdir()):
            raise ConvertError(f"{what} wrote nothing: {_tail(tail)}")

    return build_folder(out_dir, fill)


def pth_to_hf(config: Path, checkpoint: Path, out_dir: Path, on_line: OnLine | None = None) -> Path:
    """Convert a training checkpoint to Hugging Face format: an adapter folder for LoRA, a model otherwise.

    Refused first when the drive has less free space than the checkpoint's size (what the output needs at most).
    """
    if not Path(config).is_file():
        raise ConvertError(f"config not found: {config}")
    if not Path(checkpoint).exists():
        raise ConvertError(f"checkpoint not found: {checkpoint}")
    if Path(checkpoint).name.endswith("model_states.pt") and Path(checkpoint).parent.suffix == ".pth":
        raise ConvertError(
            f"{Path(checkpoint).name} is one file of the DeepSpeed checkpoint {Path(checkpoint).parent}: "
            "convert the folder (xtuner reads every rank's part of it)"
        )
    check_free_space(Path(out_dir).resolve(), size_of(checkpoint), f"converting {Path(checkpoint).name}")
    args = [str(config), str(checkpoint), "--safe-serialization"]
    return _run(PTH_TO_HF, args, out_dir, "pth_to_hf", on_line)


def merge(base: Path, adapter: Path, out_dir: Path, device: str = "cpu", on_line: OnLine | None = None) -> Path:
    """Merge a LoRA adapter into its base model and save the whole model (float16) with its tokenizer."""
    if hf_kind(adapter) is HfKind.LLAVA:
        raise ConvertError(
            f"{adapter} is a LLaVA folder: merge its llm_adapter/ onto the LLM (xtui merge LLM {Path(adapter) / 'llm_adapter'} "
            "--out DIR), and chat with the LLaVA folder as it is (xtui chat LLM --llava FOLDER)"
        )
    if not (Path(base) / "config.json").is_file():
        raise ConvertError(f"not a model folder (no config.json): {base}")
    if not is_adapter(adapter):
        raise ConvertError(f"not an adapter folder (no adapter_config.json): {adapter}")
    check_free_space(Path(out_dir).resolve(), size_of(base), f"merging onto {Path(base).name}")
    args = [str(base), str(adapter), "--safe-serialization", "--device", device]
    return _run(MERGE, args, out_dir, "merge", on_line)


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
