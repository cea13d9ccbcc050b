"""Mistakes a config lets a run make without failing: templates that do not match, no samples, no checkpoint, wrong map_fn."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from engine.data.formats import MAP_FNS, DatasetFormat, detect, format_read_by
from engine.data.records import DatasetError, records
from engine.files import read_head
from engine.xtuner.config_check import MODEL_SETTINGS, config_problems
from engine.xtuner.config_datasets import ConfigDataset, config_training, dataset_reading
from engine.xtuner.config_values import config_values, local_path
from engine.xtuner.configs import ConfigError
from engine.xtuner.templates import Template, template, template_of_config
from engine.xtuner.token_lengths import TokenReport, token_report

# Special markers of chat formats: a template whose markers the model's own chat template lacks talks another language.
_MARKER = re.compile(r"<\|[^|<>\s]{1,40}\|>|<｜[^｜<>]{1,40}｜>|\[/?INST\]|<(?:start|end)_of_turn>|<<SYS>>")
TOKENIZER_CONFIG_BYTES = 16 << 20


class Severity(StrEnum):
    """How much a piece of advice matters: the run fails or learns the wrong thing, it goes worse, or worth knowing."""

    PROBLEM = "problem"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class Advice:
    """One finding about a config: how much it matters, what it is about (a setting's name), the words for the user."""

    severity: Severity
    topic: str
    message: str


@dataclass(frozen=True, slots=True)
class RunLength:
    """How long a run is, worked out from the data: iterations (batches, what save_steps counts) and optimizer steps."""

    samples: int  # per epoch: the records, or the packed max_length sequences
    iterations_per_epoch: int
    iterations: int
    optimizer_steps: int  # iterations / accumulative_counts
    gpus: int


@dataclass(frozen=True, slots=True)
class ConfigAdvice:
    """Everything `advise` found: the advice, the data it read, the run's length and token lengths when it had them."""

    config: Path
    data: tuple[Path, ...]
    advice: tuple[Advice, ...]
    length: RunLength | None
    tokens: tuple[TokenReport, ...]

    @property
    def ok(self) -> bool:
        """True when nothing found is a problem (warnings and notes may remain)."""
        return all(a.severity != Severity.PROBLEM for a in self.advice)


def _markers(text: str) -> set[str]:
    """The special markers in a template's or a chat template's text."""
    return set(_MARKER.findall(text))


def _model_chat_template(model: Path) -> str:
    """The chat template a local model's tokenizer_config.json holds, '' when none can be read."""
    try:
        found = json.loads(read_head(model / "tokenizer_config.json", TOKENIZER_CONFIG_BYTES)).get("chat_template")
    except (OSError, ValueError, AttributeError):
        return ""
    if isinstance(found, list):  # named templates: [{"name": "default", "template": ...}, ...]
        found = " ".join(t.get("template", "") for t in found if isinstance(t, dict))
    return found if isinstance(found, str) else ""


def _template_advice(
    source: str, values: dict, datasets: tuple[ConfigDataset, ...], chat: str | None, cwd: Path
) -> list[Advice]:
    """Templates that disagree: training vs EvaluateChatHook, and the config's vs the model's own chat template."""
    found = []
    trained = {d.template for d in datasets if d.template}
    if chat and trained and chat not in trained:
        found.append(Advice(Severity.WARNING, "prompt_template", (
            f"training uses the {'/'.join(sorted(trained))} template but EvaluateChatHook asks with {chat}: "
            "its samples (and a chat with that template) will not stop where the model learnt to stop, and loop"
        )))  # fmt: skip
    name = template_of_config(source)
    model = next((local_path(values.get(n), cwd) for n in MODEL_SETTINGS[:2] if local_path(values.get(n), cwd)), None)
    own = _model_chat_template(model) if model is not None and model.is_dir() else ""
    if name and own and _mismatch(template(name), own):
        found.append(Advice(Severity.WARNING, "prompt_template", (
            f"the model's own chat template uses {', '.join(sorted(_markers(own)))}, the config trains with {name}: "
            "a chat through the model's template (transformers, vLLM, LMDeploy) loops or rambles; pick the matching one"
        )))  # fmt: skip
    return found


def _mismatch(tpl: Template, chat_template: str) -> bool:
    """True when a model's chat template speaks in markers the XTuner template does not use."""
    theirs, ours = _markers(chat_template), _markers(tpl.system + tpl.instruction + tpl.suffix)
    return bool(theirs) and not (ours and ours <= theirs)


def _evaluation_advice(values: dict, has_hook: bool) -> list[Advice]:
    """No sample answers during training: evaluation_inputs empty or absent, or no EvaluateChatHook."""
    if not has_hook:
        return [
            Advice(
                Severity.NOTE, "custom_hooks", "no EvaluateChatHook: the run shows no sample answers while it trains"
            )
        ]
    inputs = values.get("evaluation_inputs")
    if not inputs:
        said = "is empty" if "evaluation_inputs" in values else "is not set (or not a plain list)"
        return [
            Advice(
                Severity.WARNING,
                "evaluation_inputs",
                f"evaluation_inputs {said}: no sample answers to watch, e.g. ['你是谁']",
            )
        ]
    return []


def _data_files(datasets: tuple[ConfigDataset, ...], cwd: Path) -> list[Path]:
    """The config's local JSON data files that exist."""
    paths = [local_path(f, cwd) for d in datasets for f in d.files]
    return [p for p in dict.fromkeys(paths) if p is not None and p.is_file() and p.suffix in (".json", ".jsonl")]


def _format_advice(data: Path, dataset: ConfigDataset | None) -> tuple[list[Advice], DatasetFormat | None]:
    """Whether the config's map_fn reads the data's format (told by its first record); the format too."""
    try:
        first = next(records(data), None)
    except DatasetError as exc:
        return [Advice(Severity.PROBLEM, "data", str(exc))], None
    fmt = detect(first.value) if first else None
    if first is None:
        return [Advice(Severity.PROBLEM, "data", f"{data} holds no records")], None
    if fmt is None:
        return [
            Advice(
                Severity.WARNING, "data", f"{data}: record 1 is in no format xtui knows (`xtui data check` says more)"
            )
        ], None
    if dataset is None or format_read_by(dataset.map_fn) == fmt:
        return [], fmt
    if format_read_by(dataset.map_fn) is None and dataset.map_fn != "None":
        return [
            Advice(
                Severity.NOTE,
                "dataset_map_fn",
                f"dataset_map_fn={dataset.map_fn} is the config's own: xtui cannot tell whether it reads {fmt} data",
            )
        ], fmt
    return [Advice(Severity.PROBLEM, "dataset_map_fn", (
        f"{data} is in the {fmt} format, which needs dataset_map_fn={MAP_FNS[fmt]}; the config sets dataset_map_fn={dataset.map_fn}"
    ))], fmt  # fmt: skip


def _whole(values: dict, name: str, default: int) -> int:
    """A positive whole-number setting, or `default` when it is missing or odd."""
    value = values.get(name, default)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else default


def run_length(samples: int, values: dict, gpus: int = 1) -> RunLength:
    """Iterations of a run over `samples` per epoch: mmengine counts batches (per GPU), not optimizer steps."""
    per_epoch = math.ceil(math.ceil(samples / gpus) / _whole(values, "batch_size", 1))
    iterations = per_epoch * _whole(values, "max_epochs", 1)
    return RunLength(
        samples, per_epoch, iterations, math.ceil(iterations / _whole(values, "accumulative_counts", 1)), gpus
    )


def _length_advice(values: dict, length: RunLength, save_last: bool) -> list[Advice]:
    """save_steps or evaluation_freq beyond the whole run."""
    found = []
    save_steps, freq = values.get("save_steps"), values.get("evaluation_freq")
    run = f"the whole run (~{length.iterations} iterations on {length.gpus} GPU{'s' if length.gpus > 1 else ''})"
    if isinstance(save_steps, int) and save_steps > length.iterations:
        if save_last:
            said = "no checkpoint is saved before the last iteration: an interruption loses the run, and resume has nothing"
        else:
            said = "and save_last=False: no checkpoint is saved at all"
        found.append(
            Advice(
                Severity.PROBLEM if not save_last else Severity.WARNING,
                "save_steps",
                f"save_steps={save_steps} is more than {run}: {said}",
            )
        )
    found += _warmup_advice(values, length)
    if isinstance(freq, int) and freq > length.iterations:
        found.append(
            Advice(
                Severity.WARNING,
                "evaluation_freq",
                f"evaluation_freq={freq} is more than {run}: no sample answers before the end",
            )
        )
    return found


def _warmup_advice(values: dict, length: RunLength) -> list[Advice]:
    """A warm-up that rounds to no iteration: mmengine's LinearLR then refuses to start (`end should be larger than
    begin`), since it counts int(warmup_ratio x max_epochs x iterations per epoch) iterations."""
    ratio, epochs = values.get("warmup_ratio"), _whole(values, "max_epochs", 1)
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or int(ratio * length.iterations) >= 1:
        return []
    least = math.ceil(100 / length.iterations) / 100  # the smallest ratio in hundredths that gives one iteration
    return [Advice(Severity.PROBLEM, "warmup_ratio", (
        f"warmup_ratio={ratio} of ~{length.iterations} iterations ({epochs} epoch{'s' if epochs > 1 else ''}) is no "
        f"warm-up iteration: the run fails at start with 'end should be larger than begin'; use warmup_ratio={least}"
        f"{' or more' if least < 1 else ''}, or more data or epochs"
    ))]  # fmt: skip


def _data_advice(
    path: Path, dataset: ConfigDataset | None, config: Path, cwd: Path, values: dict, count_tokens: bool
) -> tuple[list[Advice], int | None, TokenReport | None]:
    """What one data file tells: its format against the map_fn, records cut by max_length; its samples per epoch."""
    found, fmt = _format_advice(path, dataset)
    if fmt is None:
        return found, None, None
    try:
        count = sum(1 for _ in records(path))
    except DatasetError as exc:
        return [*found, Advice(Severity.PROBLEM, "data", str(exc))], None, None
    tokens = None
    if count_tokens:
        try:
            tokens = token_report(path, config, cwd, fmt, previews=0)
        except ConfigError as exc:
            found.append(Advice(Severity.NOTE, "max_length", f"token lengths not counted: {exc}"))
    if tokens is not None and tokens.cut:
        found.append(Advice(Severity.WARNING, "max_length", (
            f"{path}: {tokens.cut} of {tokens.records} records are longer than max_length={tokens.max_length} tokens "
            f"and lose their end (the first: record {tokens.cut_records[0]})"
        )))  # fmt: skip
    if tokens is not None:
        return found, tokens.samples, tokens
    if values.get("pack_to_max_length") is True:
        return (
            [
                *found,
                Advice(Severity.NOTE, "save_steps", "packed data: the run's length needs the tokenizer to be counted"),
            ],
            None,
            None,
        )
    return found, count, None


def advise(config: Path, cwd: Path, data: Path | None = None, count_tokens: bool = True, gpus: int = 1) -> ConfigAdvice:
    """What is likely to go wrong with `config` run from `cwd` on `data` (default: its own local data files), without running it.

    With `count_tokens` the model's tokenizer is loaded (when it is local or cached) to count packed samples and cut records.
    """
    try:
        source = config.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {config}: {getattr(exc, 'strerror', None) or exc}") from None
    values = config_values(source)
    training = config_training(source)
    found = [Advice(Severity.PROBLEM, "launch", problem) for problem in config_problems(config, cwd)]
    found += _template_advice(source, values, training.datasets, training.chat_template, cwd)
    found += _evaluation_advice(values, training.has_chat_hook)
    own = _data_files(training.datasets, cwd)  # config_problems reads these through already
    files = [data] if data is not None else own
    if not files:
        found.append(
            Advice(
                Severity.NOTE, "data", "no local data file to read: the run's length cannot be worked out (give --data)"
            )
        )
    samples: list[int | None] = []
    reports = []
    for path in files:
        advice, count, tokens = _data_advice(
            path, dataset_reading(path, training.datasets, cwd), config, cwd, values, count_tokens
        )
        checked = path.resolve() in {p.resolve() for p in own}
        found += [
            a
            for a in advice
            if not (checked and a.severity == Severity.PROBLEM and a.topic in ("data", "dataset_map_fn"))
        ]
        samples.append(count)
        reports += [tokens] if tokens is not None else []
    length = None
    if files and None not in samples:
        length = run_length(sum(samples), values, gpus)
        found += _length_advice(values, length, training.save_last)
    return ConfigAdvice(config, tuple(files), tuple(found), length, tuple(reports))
