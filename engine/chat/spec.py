"""What a chat opens on: the model source, load options, template, system prompt, an optional A/B adapter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.chat.models import LoadOptions, ModelSource


@dataclass(frozen=True, slots=True)
class ChatSpec:
    """What to chat with: the source, how to load it, the template and system prompt, an optional second adapter."""

    source: ModelSource
    options: LoadOptions = LoadOptions()
    template: str | None = None
    system: str = ""
    compare: ModelSource | None = None  # a second checkpoint or adapter on the same base, for A/B


def spec_for_run(work_dir: Path, checkpoint: Path) -> ChatSpec:
    """A chat on a run's checkpoint, with the template and SYSTEM of the run's config."""
    from engine.runs.workdir import WorkDir
    from engine.xtuner.templates import system_of_config, template_of_config

    config = WorkDir.open(work_dir).config()
    if config is None:
        raise ValueError(f"no config found for {work_dir}: cannot convert its checkpoints")
    source = config.read_text(encoding="utf-8", errors="replace")
    return ChatSpec(
        ModelSource("checkpoint", checkpoint=checkpoint, config=config),
        template=template_of_config(source), system=system_of_config(source),
    )  # fmt: skip
