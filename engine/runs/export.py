"""A run's checkpoint out of the run: converted with the run's own config, or exported as a merged model with its
tokenizer, prompt template and model card, ready to upload."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from engine.errors import RunsError
from engine.files import build_folder, write_atomic
from engine.runs.checkpoints import check, latest_good, list_checkpoints
from engine.runs.folders import is_run_dir
from engine.runs.model_card import BASE_SETTING, ModelCard, base_named, model_card
from engine.runs.resume import in_run
from engine.runs.watch import Run
from engine.runs.workdir import WorkDir
from engine.xtuner import convert
from engine.xtuner.convert import HfKind, OnLine
from engine.xtuner.model_template import CONFIG_COPY, write_template
from engine.xtuner.templates import template, template_of_config


class ExportError(RunsError):
    """A run's checkpoint that cannot be converted or exported as asked."""


@dataclass(frozen=True, slots=True)
class RunCheckpoint:
    """The checkpoint of a run picked for conversion, with the config it is converted with."""

    work_dir: Path
    checkpoint: Path
    config: Path
    iter: int | None


@dataclass(frozen=True, slots=True)
class Converted:
    """A run's checkpoint in Hugging Face form: the folder, what it holds, where it came from, the base model named."""

    folder: Path
    kind: HfKind
    source: RunCheckpoint
    base: str | None  # the run's config's pretrained_model_name_or_path: what an adapter merges onto


@dataclass(frozen=True, slots=True)
class Exported:
    """An export: the folder, where it came from, the base merged onto (None: whole model trained), its card."""

    folder: Path
    source: RunCheckpoint
    base: Path | None
    card: ModelCard


def pick_checkpoint(work_dir: Path, checkpoint: Path | None = None) -> RunCheckpoint:
    """The run's checkpoint to convert: the one named (a relative one found in the run), else its latest good one."""
    opened = WorkDir.open(work_dir)
    found = list_checkpoints(opened.path)
    if not is_run_dir(opened.path) and not found:
        raise ExportError(f"{work_dir} is not a run's work dir (no xtui-run.json, mmengine log or checkpoint)")
    config = opened.config()
    if config is None:
        raise ExportError(f"no config found for {opened.path}: cannot convert its checkpoints")
    if checkpoint is None:
        chosen = latest_good(found)
        if chosen is None:
            raise ExportError(f"{opened.path} has no complete checkpoint yet")
        return RunCheckpoint(opened.path, chosen.path, config, chosen.iter)
    path = in_run(opened.path, checkpoint).resolve()
    problem = check(path)
    if problem:
        raise ExportError(f"{path}: {problem}")
    known = next((c for c in found if c.path.resolve() == path), None)
    return RunCheckpoint(opened.path, path, config, known.iter if known else None)


def convert_run(source: RunCheckpoint, out: Path | None = None, on_line: OnLine | None = None) -> Converted:
    """Convert a run's checkpoint with its config (pth_to_hf); `out` defaults to `<work dir>/<checkpoint>_hf`."""
    folder = convert.pth_to_hf(
        source.config, source.checkpoint, out or source.work_dir / f"{source.checkpoint.stem}_hf", on_line
    )
    return Converted(folder, convert.hf_kind(folder), source, base_named(source.config))


def _base_model(config: Path) -> Path:
    """The local base model folder a LoRA run's config trained from; ExportError when it is not on this machine."""
    named = base_named(config)
    if named is None or not (Path(named).expanduser() / "config.json").is_file():
        raise ExportError(
            f"the base model {named!r} ({BASE_SETTING} in {config.name}) is not a model folder here: "
            "download it, convert (xtui convert) and merge (xtui merge BASE ADAPTER) by hand"
        )
    return Path(named).expanduser().resolve()


def _lift(folder: Path, into: Path) -> None:
    """Move everything in `folder` up into `into`, then remove `folder`."""
    for entry in folder.iterdir():
        os.replace(entry, into / entry.name)
    folder.rmdir()


def export_run(source: RunCheckpoint, out: Path, on_line: OnLine | None = None, device: str = "cpu") -> Exported:
    """Export a run's checkpoint into `out`: the merged model, its tokenizer, the prompt template, README.md."""
    out = Path(out).resolve()
    convert.refuse_existing(out)
    config_text = source.config.read_text(encoding="utf-8", errors="replace")
    if "LLaVAModel" in config_text:
        raise ExportError("a LLaVA run exports as xtuner's LLaVA folder: use xtui convert, and chat with --llava")
    name = template_of_config(config_text)
    run = Run(source.work_dir)
    run.poll()
    facts: dict = {}

    def fill(staging: Path) -> None:
        converted = convert.pth_to_hf(source.config, source.checkpoint, staging / "converted", on_line)
        if convert.is_adapter(converted):
            facts["lora"] = json.loads((converted / "adapter_config.json").read_text(encoding="utf-8"))
            facts["base"] = _base_model(source.config)
            model = convert.merge(facts["base"], converted, staging / "merged", device, on_line)
            shutil.rmtree(converted)
            _lift(model, staging)
        else:
            _lift(converted, staging)
        if not (staging / CONFIG_COPY).exists():
            shutil.copyfile(source.config, staging / CONFIG_COPY)
        if name:
            write_template(staging, template(name))
        facts["card"] = model_card(
            out.name, source.config, run.state.steps, run.state.samples, source.iter or run.state.done_iter or None,
            run.state.max_iters, name, facts.get("lora"),
        )  # fmt: skip
        write_atomic(staging / "README.md", facts["card"].markdown())

    build_folder(out, fill)
    return Exported(out, source, facts.get("base"), facts["card"])
