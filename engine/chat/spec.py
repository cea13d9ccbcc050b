"""What a chat opens on, and the one set of rules that turns what the user named (command line or form) into it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.chat.models import LoadOptions, ModelSource, SourceKind
from engine.errors import ChatError

DEFAULT_TEMPLATE = "internlm2_chat"  # when neither the user nor a run's config names one
NO_TEMPLATE = ""  # a template argument that asks for raw text, no template
# The path arguments of `build_spec` each kind takes, and how a sentence names them.
KIND_PATHS = {
    SourceKind.BASE: ("model",),
    SourceKind.MERGED: ("model",),
    SourceKind.ADAPTER: ("model", "adapter", "compare"),
    SourceKind.CHECKPOINT: ("run", "checkpoint", "config", "compare"),
    SourceKind.LLAVA: ("model", "llava", "visual_encoder"),
}
PATH_NAMES = {
    "run": "run work dir", "model": "model folder", "adapter": "adapter folder", "checkpoint": "checkpoint",
    "config": "config", "llava": "LLaVA folder", "visual_encoder": "visual encoder", "compare": "A/B second",
}  # fmt: skip


class SpecError(ChatError):
    """What the user named to chat with does not add up; the message is one line saying what to change."""


@dataclass(frozen=True, slots=True)
class ChatSpec:
    """What to chat with: the source, how to load it, the template and system prompt, an optional second adapter."""

    source: ModelSource
    options: LoadOptions = LoadOptions()
    template: str | None = None
    system: str = ""
    compare: ModelSource | None = None  # a second checkpoint or adapter on the same base, for A/B


def build_spec(
    kind: SourceKind | str | None = None, *, run: Path | None = None, model: Path | None = None,
    adapter: Path | None = None, checkpoint: Path | None = None, config: Path | None = None,
    llava: Path | None = None, visual_encoder: Path | None = None, compare: Path | None = None,
    template: str | None = None, system: str | None = None, options: LoadOptions | None = None,
) -> ChatSpec:  # fmt: skip
    """The chat these arguments describe, checked; SpecError says what is wrong.

    Without `kind`, the paths say it (a run or checkpoint, LLaVA, an adapter, else a base model). A run's checkpoint
    defaults to its latest good one; relative checkpoints (and `compare`) are looked for in the run first; the
    config, template and system prompt default to the run's. `template` None: the run's, else DEFAULT_TEMPLATE.
    """
    options = options or LoadOptions()
    paths = {"run": run, "model": model, "adapter": adapter, "checkpoint": checkpoint, "config": config,
             "llava": llava, "visual_encoder": visual_encoder, "compare": compare}  # fmt: skip
    kind = _kind(kind, paths)
    extra = [PATH_NAMES[name] for name, path in paths.items() if path is not None and name not in KIND_PATHS[kind]]
    if extra:
        takes = ", ".join(PATH_NAMES[name] for name in KIND_PATHS[kind])
        raise SpecError(f"{' and '.join(extra)} not used with kind {kind} (it takes: {takes})")
    if kind is SourceKind.CHECKPOINT:
        run = run.resolve() if run else _run_of(checkpoint)
        source = _checkpoint_source(run, checkpoint, config)
    else:
        absolute = {name: path.resolve() for name, path in paths.items() if path is not None and name != "compare"}
        source = ModelSource(kind, **absolute)
    second = _compare_source(source, run, compare) if compare else None
    problems = source.problems() + (second.problems() if second else []) + options.problems()
    if problems:
        raise SpecError("; ".join(problems))
    run_template, run_system = _config_settings(source.config) if source.config else (DEFAULT_TEMPLATE, "")
    if template is None:
        template = run_template
    elif template == NO_TEMPLATE:
        template = None
    else:
        _check_template(template)
    return ChatSpec(source, options, template, run_system if system is None else system, second)


def _kind(kind: SourceKind | str | None, paths: dict[str, Path | None]) -> SourceKind:
    """The kind asked for, else the one the paths given imply."""
    if kind is not None:
        try:
            return SourceKind(kind)
        except ValueError:
            raise SpecError(f"unknown model kind {kind!r} (one of {', '.join(SourceKind)})") from None
    if paths["run"] or paths["checkpoint"]:
        return SourceKind.CHECKPOINT
    if paths["llava"]:
        return SourceKind.LLAVA
    return SourceKind.ADAPTER if paths["adapter"] else SourceKind.BASE


def _run_of(checkpoint: Path | None) -> Path | None:
    """The run's work dir a checkpoint lies in, if it lies in one."""
    from engine.runs.folders import is_run_dir

    folder = checkpoint.resolve().parent if checkpoint else None
    return folder if folder and is_run_dir(folder) else None


def _in_run(run: Path | None, path: Path) -> Path:
    """A path the user gave for a run's file, made absolute: a relative one is looked for in the run first."""
    from engine.runs.resume import in_run

    return (in_run(run, path) if run else path).resolve()


def _checkpoint_source(run: Path | None, checkpoint: Path | None, config: Path | None) -> ModelSource:
    """A run checkpoint to chat with: the one named (found in the run), else the run's latest good one."""
    from engine.runs.checkpoints import latest_good, list_checkpoints

    if checkpoint is not None:
        checkpoint = _in_run(run, checkpoint)
    elif run is None:
        raise SpecError("a checkpoint chat needs a checkpoint or a run's work dir")
    else:
        latest = latest_good(list_checkpoints(run))
        if latest is None:
            raise SpecError(f"{run} has no complete checkpoint yet")
        checkpoint = latest.path
    config = config.resolve() if config else _config_of(run)
    return ModelSource(SourceKind.CHECKPOINT, checkpoint=checkpoint, config=config)


def _config_of(run: Path | None) -> Path | None:
    """The config a run's checkpoints are converted with (None without a run); SpecError when the run has none."""
    from engine.runs.workdir import WorkDir

    config = WorkDir.open(run).config() if run else None
    if run and config is None:
        raise SpecError(f"no config found for {run}: cannot convert its checkpoints")
    return config


def _compare_source(source: ModelSource, run: Path | None, compare: Path) -> ModelSource:
    """The A/B second on the same base: a checkpoint (iter_N.pth, converted with its run's config) or an adapter."""
    path = _in_run(run, compare)
    if path.suffix == ".pth" or path.name.startswith("iter_"):
        config = source.config or _config_of(_run_of(path))
        return ModelSource(SourceKind.CHECKPOINT, model=source.model, checkpoint=path, config=config)
    if source.kind is SourceKind.CHECKPOINT:
        raise SpecError(f"A/B beside a checkpoint takes another checkpoint (iter_N.pth), not {path}")
    return ModelSource(SourceKind.ADAPTER, model=source.model, adapter=path)


def _config_settings(config: Path) -> tuple[str | None, str]:
    """The template name (None when unknown) and SYSTEM text a run's config sets."""
    from engine.xtuner.templates import system_of_config, template_of_config

    text = config.read_text(encoding="utf-8", errors="replace")
    return template_of_config(text), system_of_config(text)


def _check_template(name: str) -> None:
    """Raise SpecError, listing xtuner's templates, when `name` is none of them."""
    from engine.xtuner.templates import TemplateError, template

    try:
        template(name)
    except TemplateError as exc:
        raise SpecError(str(exc)) from None
