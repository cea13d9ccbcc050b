"""Token lengths of a dataset as a config trains it: the model's own tokenizer, the config's template, its max_length."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.data.formats import IMAGE_TOKEN, DatasetFormat, record_problems, to_conversation
from engine.data.records import records
from engine.xtuner.compat import importing_transformers
from engine.xtuner.config_check import MODEL_SETTINGS
from engine.xtuner.config_values import config_values, local_path
from engine.xtuner.configs import ConfigError
from engine.xtuner.templates import Template, template, template_of_config

PREVIEWS = 3
CUT_LISTED = 10
BINS = 10
BATCH = 512  # records tokenised in one call of the (fast, threaded) tokenizer


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of a rendered record: its text, whether the loss trains on it, whether it is one special token."""

    text: str
    trained: bool
    special: bool = False


@dataclass(frozen=True, slots=True)
class Preview:
    """One record as the model sees it in training: its number, its length in tokens, its pieces."""

    number: int
    tokens: int
    segments: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class LengthBin:
    """Records whose token length lies in low..high (both included); `cut` when max_length cuts them all."""

    low: int
    high: int
    count: int
    cut: bool


@dataclass(frozen=True, slots=True)
class TokenReport:
    """A dataset's token lengths against a config's max_length, with a histogram and a few rendered records."""

    model: str
    template: str | None
    max_length: int
    packed: bool
    records: int
    shortest: int
    longest: int
    mean: float
    median: float
    trained_tokens: int  # after each record is cut to max_length, as XTuner does before packing
    samples: int  # per epoch: the records, or the max_length sequences that packing makes of them
    cut: int
    cut_records: tuple[int, ...]
    histogram: tuple[LengthBin, ...]
    previews: tuple[Preview, ...]


def load_tokenizer(model: str, local: bool):
    """The model's tokenizer only (transformers' AutoTokenizer), or ConfigError saying why it cannot load.

    A hub id is looked up in the local Hugging Face cache only: a check never downloads a model.
    """
    with importing_transformers():
        from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model, trust_remote_code=True, local_files_only=True)
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as exc:
        if not local:
            raise ConfigError(
                f"the tokenizer of {model} is not in the local Hugging Face cache (xtui does not download it)"
            ) from None
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot load the tokenizer of {model}: {reason}") from None


def _pieces(turns: list[dict], tpl: Template | None, bos: str, eos: str) -> list[Segment]:
    """A record's turns laid out as XTuner's template_map_fn and encode_fn do: BOS, prompt, answer, EOS, SEP."""
    segments, needs_bos = [], True
    for number, turn in enumerate(turns, start=1):
        prompt, answer = turn["input"], turn["output"]
        if tpl is not None:
            system = tpl.system.format(system=turn["system"]) if turn["system"] and tpl.system else ""
            prompt = system + tpl.instruction.format(input=prompt, round=number, bot_name="BOT")
            answer += tpl.suffix
        if needs_bos and bos:
            segments.append(Segment(bos, False, True))
        segments += [Segment(prompt, False), Segment(answer, True)]
        needs_bos = tpl is None or tpl.needs_eos
        if needs_bos and eos:
            segments.append(Segment(eos, True, True))
        if tpl is not None and tpl.sep:
            segments.append(Segment(tpl.sep, False))
    return segments


def _lengths(tokenizer, batch: list[list[Segment]]) -> list[int]:
    """The token count of each record: special segments one token, text encoded without special tokens, `<image>` one."""
    texts = [chunk for segments in batch for s in segments if not s.special for chunk in s.text.split(IMAGE_TOKEN)]
    counts = iter(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]) if texts else iter(())
    lengths = []
    for segments in batch:
        total = 0
        for s in segments:
            if s.special:
                total += 1
            else:
                chunks = s.text.count(IMAGE_TOKEN) + 1
                total += sum(next(counts) for _ in range(chunks)) + chunks - 1
        lengths.append(total)
    return lengths


def _rendered(
    path: Path, fmt: DatasetFormat, tpl: Template | None, bos: str, eos: str
) -> Iterator[tuple[int, list[Segment]]]:
    """(record number, segments) of every record that is fine as `fmt`; the others are the dataset check's to report."""
    for record in records(path):
        if not record_problems(record.value, fmt) and (
            turns := to_conversation(record.value, fmt)
        ):  # XTuner drops empty ones
            yield record.number, _pieces(turns, tpl, bos, eos)


def histogram(lengths: list[int], max_length: int, bins: int = BINS) -> tuple[LengthBin, ...]:
    """Counts of lengths in `bins` equal ranges; when some are cut, the last bin holds all above max_length."""
    if not lengths:
        return ()
    shortest, longest = min(lengths), max(lengths)
    top, edge_bins = (max_length, bins - 1) if longest > max_length else (longest, bins)
    width = max(1, math.ceil((top - shortest + 1) / edge_bins))
    lows = range(shortest, top + 1, width)
    counts = [0] * len(lows)
    for n in lengths:
        if n <= top:
            counts[(n - shortest) // width] += 1
    found = [LengthBin(low, min(low + width - 1, top), count, False) for low, count in zip(lows, counts, strict=True)]
    if longest > max_length:
        found.append(LengthBin(max_length + 1, longest, len(lengths) - sum(counts), True))
    return tuple(found)


def _packed(tokens: int, max_length: int) -> int:
    """The sequences XTuner's Packer makes of `tokens`: whole max_length chunks (the rest is dropped), one when fewer."""
    return tokens // max_length if tokens >= max_length else int(tokens > 0)


def _batched(items: Iterator, size: int) -> Iterator[list]:
    """Lists of `size` items (the last one shorter)."""
    while batch := list(itertools.islice(items, size)):
        yield batch


def token_report(data: Path, config: Path, cwd: Path, fmt: DatasetFormat, previews: int = PREVIEWS) -> TokenReport:
    """Token lengths of the records of `data` in `fmt`, rendered with the template of `config`, by its model's tokenizer.

    The tokenizer loads with trust_remote_code, as XTuner's configs load it for training.
    """
    source = config.read_text(encoding="utf-8")
    values = config_values(source)
    model = next((values[name] for name in MODEL_SETTINGS[:2] if isinstance(values.get(name), str)), None)
    if model is None:
        raise ConfigError(f"{config} names no model path (pretrained_model_name_or_path or llm_name_or_path)")
    max_length = values.get("max_length")
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
        raise ConfigError(f"{config} sets no max_length that can be read without running it")
    name = template_of_config(source)
    tpl = template(name) if name else None
    local = local_path(model, cwd)
    tokenizer = load_tokenizer(str(local) if local is not None else model, local is not None)
    bos, eos = tokenizer.bos_token or "", tokenizer.eos_token or ""
    lengths, cut, shown = [], [], []
    for batch in _batched(_rendered(data, fmt, tpl, bos, eos), BATCH):
        for (number, segments), length in zip(batch, _lengths(tokenizer, [s for _, s in batch]), strict=True):
            lengths.append(length)
            if length > max_length:
                cut.append(number)
            if len(shown) < previews:
                shown.append(Preview(number, length, tuple(segments)))
    packed = values.get("pack_to_max_length") is True
    trained = sum(min(n, max_length) for n in lengths)
    return TokenReport(
        model=model, template=name, max_length=max_length, packed=packed,
        records=len(lengths), shortest=min(lengths, default=0), longest=max(lengths, default=0),
        mean=statistics.fmean(lengths) if lengths else 0.0, median=statistics.median(lengths) if lengths else 0.0,
        trained_tokens=trained, samples=_packed(trained, max_length) if packed else len(lengths),
        cut=len(cut), cut_records=tuple(cut[:CUT_LISTED]),
        histogram=histogram(lengths, max_length), previews=tuple(shown),
    )  # fmt: skip
