"""An exported model's card (its README.md): what it was trained from and on, how, how far, and what it answered."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.runs.events import Sample, TrainStep
from engine.xtuner.config_datasets import config_training
from engine.xtuner.config_values import config_values, part1_settings

BASE_SETTING = "pretrained_model_name_or_path"
# PART 1 settings the card leaves to its other sections (paths: base and data; evaluation: the samples).
_SHOWN_ELSEWHERE = ("path", "evaluation")


@dataclass(frozen=True, slots=True)
class ModelCard:
    """What an export's README says: origin, data, settings, progress, final loss, template and sample answers."""

    name: str
    base: str | None
    data: tuple[str, ...]
    settings: tuple[tuple[str, str], ...]  # (PART 1 name, its source text)
    lora: dict | None  # the adapter's r, lora_alpha, target_modules when it was LoRA (merged into the base)
    template: str | None
    iteration: int | None
    max_iters: int | None
    loss: float | None
    samples: tuple[Sample, ...]

    def markdown(self) -> str:
        """The README.md text: a metadata block for model hubs, then the sections."""
        front = ["---", "library_name: transformers", "tags:", "- xtuner", "- xtui"]
        front += ([f"base_model: {json.dumps(self.base, ensure_ascii=False)}"] if self.base else []) + ["---", ""]
        method = "full fine-tuning" if self.lora is None else (
            f"LoRA (r={self.lora.get('r')}, alpha={self.lora.get('lora_alpha')}) merged into the base model"
        )  # fmt: skip
        progress = f"{self.iteration if self.iteration is not None else '?'} of {self.max_iters or '?'} iterations"
        loss = f"{self.loss:.4f}" if self.loss is not None else "not logged"
        lines = [
            f"# {self.name}", "",
            f"Fine-tuned with [XTuner](https://github.com/InternLM/xtuner): {method}. Exported by xtui.", "",
            "## Training", "",
            f"- Trained from: `{self.base or 'unknown'}`",
            f"- Data: {', '.join(f'`{d}`' for d in self.data) or 'unknown'}",
            f"- Progress: {progress}; final loss {loss}",
            f"- Prompt template: `{self.template or 'none'}` (in `tokenizer_config.json` as `chat_template`, and in "
            "`xtuner_template.json`)", "",
        ]  # fmt: skip
        if self.settings:
            lines += ["| setting | value |", "| --- | --- |"]
            lines += [f"| {name} | `{_cell(text)}` |" for name, text in self.settings] + [""]
        if self.samples:
            lines += [f"## Sample answers (EvaluateChatHook, iteration {self.samples[0].iter})", ""]
            for sample in self.samples:
                lines += [f"**{_cell(sample.prompt)}**", "", "> " + sample.answer.strip().replace("\n", "\n> "), ""]
        lines += [
            "## Use", "", "```python",
            "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
            f'tokenizer = AutoTokenizer.from_pretrained("{self.name}", trust_remote_code=True)',
            f'model = AutoModelForCausalLM.from_pretrained("{self.name}", trust_remote_code=True)',
            'ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hello"}], return_tensors="pt")',
            "print(tokenizer.decode(model.generate(ids, max_new_tokens=64)[0][ids.shape[1]:]))", "```", "",
        ]  # fmt: skip
        return "\n".join(front + lines)


def _cell(text: str) -> str:
    """Text that stays inside one Markdown table cell or bold span."""
    return text.replace("|", "\\|").replace("`", "'").replace("\n", " ")


def latest_samples(samples: Sequence[Sample], up_to: int | None) -> tuple[Sample, ...]:
    """The answers of the last evaluation at or before iteration `up_to` (any, when None), one per prompt."""
    kept = [s for s in samples if up_to is None or s.iter <= up_to]
    if not kept:
        return ()
    last = max(s.iter for s in kept)
    return tuple({s.prompt: s for s in kept if s.iter == last}.values())


def final_loss(steps: Sequence[TrainStep], up_to: int | None) -> float | None:
    """The last logged loss at or before iteration `up_to`."""
    return next((s.loss for s in reversed(steps) if s.loss is not None and (up_to is None or s.iter <= up_to)), None)


def base_named(config: Path) -> str | None:
    """The base model a run's config trains from, as it names it (a folder or a hub id)."""
    named = config_values(config.read_text(encoding="utf-8", errors="replace")).get(BASE_SETTING)
    return named if isinstance(named, str) else None


def model_card(
    name: str, config: Path, steps: Sequence[TrainStep], samples: Sequence[Sample], iteration: int | None,
    max_iters: int | None, template: str | None, lora: dict | None,
) -> ModelCard:  # fmt: skip
    """The card of an export from the run's config (read, never run) and what the run logged up to `iteration`."""
    source = config.read_text(encoding="utf-8", errors="replace")
    data = tuple(dict.fromkeys(f for d in config_training(source).datasets for f in d.files))
    settings = tuple(
        (s.name, s.text) for s in part1_settings(source) if not any(word in s.name for word in _SHOWN_ELSEWHERE)
    )
    return ModelCard(
        name=name, base=base_named(config), data=data, settings=settings, lora=lora,
        template=template, iteration=iteration, max_iters=max_iters, loss=final_loss(steps, iteration),
        samples=latest_samples(samples, iteration),
    )  # fmt: skip
