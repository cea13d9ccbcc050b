"""`xtui data`: make a self-cognition dataset, check a dataset (against a config too), repeat a LLaVA dataset."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from tui.cli.common import shell, to_json
from tui.terminal_text import printable

BAR = 30  # characters of the longest histogram bar


def register(sub: argparse._SubParsersAction) -> None:
    """Add `data` and its subcommands to the subcommands."""
    p = sub.add_parser("data", help="make, check and repeat datasets (the recipe's self-cognition data)")
    inner = p.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    new = inner.add_parser("new", help="write a self-cognition dataset in XTuner's conversation format")
    new.add_argument("out", type=Path, help="the file to write: .json (an array) or .jsonl")
    new.add_argument("--name", required=True, help="the assistant's name")
    new.add_argument("--owner", default="", help="whose assistant it is")
    new.add_argument(
        "--answer", default="", help="the answer's template with {name} and {owner} (default: the recipe's)"
    )
    new.add_argument("--repeat", type=int, default=100, help="how many times each question appears (default: 100)")
    new.add_argument(
        "--mix", type=Path, help="a general dataset (conversation, messages or alpaca) to mix in against forgetting"
    )
    new.add_argument("--ratio", type=float, help="general rows per self-cognition row, with --mix (e.g. 1)")
    new.add_argument("--force", action="store_true", help="replace OUT if it exists")
    new.set_defaults(func=run_new)

    check = inner.add_parser("check", help="format, map_fn, record-precise problems; token lengths with --config")
    check.add_argument("file", type=Path, help="a .json or .jsonl dataset")
    check.add_argument(
        "--config", help="config file (or built-in name) to check the data against: map_fn, tokenizer, max_length"
    )
    check.add_argument(
        "--image-folder",
        type=Path,
        help="where a LLaVA dataset's images are (default: the config's, or the file's folder)",
    )
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(func=run_check)

    repeat = inner.add_parser("repeat", help="write a dataset's records N times over (the LLaVA recipe's repeat step)")
    repeat.add_argument("source", type=Path, help="the dataset to repeat")
    repeat.add_argument("out", type=Path, help="the file to write: .json or .jsonl")
    repeat.add_argument("times", type=int, help="how many times")
    repeat.add_argument("--force", action="store_true", help="replace OUT if it exists")
    repeat.set_defaults(func=run_repeat)


def run_new(args: argparse.Namespace) -> int:
    """Write the self-cognition dataset and say what is in it."""
    from engine.data.selfcognition import QUESTIONS, write_self_cognition
    from engine.errors import UsageError

    if (args.mix is None) != (args.ratio is None):
        raise UsageError("--mix and --ratio go together")
    written = write_self_cognition(
        args.out, args.name, args.repeat, args.owner, args.answer, args.mix, args.ratio or 0.0, args.force
    )  # fmt: skip
    print(printable(f"wrote {written.path}: {written.records} records"))
    print(
        printable(
            f"  {written.self_cognition} self-cognition ({len(QUESTIONS)} questions x {args.repeat}), answering: {written.answer}"
        )
    )
    if written.general is not None:
        general = written.general
        short = (
            f" (asked for {general.asked}; the file has {general.available})"
            if general.available < general.asked
            else ""
        )
        print(printable(f"  {len(general.rows)} general conversations from {args.mix}{short}, shuffled in"))
    print(f"next: {shell('xtui', 'data', 'check', written.path, '--config', 'CONFIG')}")
    return 0


def run_repeat(args: argparse.Namespace) -> int:
    """Write the repeated dataset."""
    from engine.data.records import repeat_records

    count = repeat_records(args.source, args.out, args.times, args.force)
    print(printable(f"wrote {args.out}: {count} records ({args.source} x {args.times})"))
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Check the dataset and print what was found; 1 when it has problems or the config does not read it."""
    from engine.xtuner.configs import resolve_config
    from engine.xtuner.data_check import check_data

    config = resolve_config(args.config) if args.config else None
    check = check_data(args.file, Path.cwd(), config, args.image_folder)
    if args.json:
        found = dataclasses.asdict(check) | {"ok": check.ok, "map_fn_fits": check.map_fn_fits}
        print(to_json(found, indent=2, default=str))
    else:
        for line in describe_check(check):
            print(printable(line))
    return 0 if check.ok else 1


def describe_check(check) -> list[str]:
    """The check as lines of text: summary, map_fn, problems, token lengths with a histogram, previews."""
    report = check.report
    fmt = (
        f"{report.format} format (needs dataset_map_fn={report.map_fn})" if report.format else "no format XTuner reads"
    )
    lines = [f"{report.path}: {report.records} records, {report.turns} turns, {fmt}"]
    if check.image_folder is not None:
        lines.append(f"  images: {report.images} distinct, looked for in {check.image_folder}")
    if check.config is not None:
        fits = {True: "reads it", False: "does not read it", None: "xtui cannot tell whether it reads it"}[
            check.map_fn_fits
        ]
        set_to = f"sets dataset_map_fn={check.map_fn_set}" if check.map_fn_set else "has no dataset for this file"
        lines.append(
            f"config {check.config} {set_to}: {fits if check.map_fn_set else 'give the config this data path'}"
        )
    if report.problems:
        listed = "" if len(report.problems) >= report.bad_records else f", the first {len(report.problems)}"
        lines.append(f"problems in {report.bad_records} records{listed}:" if report.bad_records else "problems:")
        lines += [f"  {p}" for p in report.problems]
        if not report.complete:
            lines.append("  (reading stopped there: the rest of the file was not checked)")
    elif report.records == 0:
        lines.append("problem: the file holds no records")
    if check.tokens_problem:
        lines.append(f"tokens: not counted: {check.tokens_problem}")
    if check.tokens is not None:
        lines += describe_tokens(check.tokens)
    return lines


def describe_tokens(tokens) -> list[str]:
    """Token lengths as lines: the figures, the histogram as bars, the previews with the trained text marked."""
    lines = [
        f"tokens (tokenizer of {tokens.model}, template {tokens.template or 'none'}, max_length {tokens.max_length}):",
        f"  {tokens.records} records: shortest {tokens.shortest}, median {tokens.median:g}, mean {tokens.mean:.1f}, longest {tokens.longest}",
    ]
    if tokens.cut:
        first = ", ".join(str(n) for n in tokens.cut_records)
        lines.append(
            f"  {tokens.cut} longer than max_length: cut, their ends are not learnt (records {first}{', ...' if tokens.cut > len(tokens.cut_records) else ''})"
        )
    else:
        lines.append("  none longer than max_length")
    if tokens.packed:
        lines.append(f"  packed into ~{tokens.samples} sequences of {tokens.max_length} tokens per epoch")
    top = max((b.count for b in tokens.histogram), default=0)
    for b in tokens.histogram:
        span = f"{b.low}" if b.low == b.high else f"{b.low}-{b.high}"
        bar = "█" * (round(BAR * b.count / top) if top else 0) or ("▏" if b.count else "")
        lines.append(f"  {span:>11} {bar:<{BAR}} {b.count}{'  cut' if b.cut else ''}")
    for preview in tokens.previews:
        lines.append(
            f"record {preview.number} as trained ({preview.tokens} tokens; the loss learns what is inside ⟦ ⟧):"
        )
        text = "".join(f"⟦{s.text}⟧" if s.trained else s.text for s in _merged(preview.segments))
        lines += [f"  | {line}" for line in text.removesuffix("\n").split("\n")]
    return lines


def _merged(segments) -> list:
    """Adjacent segments that are both trained (or both not) joined, so that one answer is one ⟦ ⟧."""
    from engine.xtuner.token_lengths import Segment

    joined: list = []
    for s in segments:
        if joined and joined[-1].trained == s.trained:
            joined[-1] = Segment(joined[-1].text + s.text, s.trained)
        else:
            joined.append(s)
    return joined
