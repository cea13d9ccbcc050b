"""`xtui config`: XTuner's built-in configs listed and copied, PART 1 shown and edited, a config checked; never executed."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import sys
from pathlib import Path

from tui.cli.common import shell, to_json
from tui.terminal_text import printable


def register(sub: argparse._SubParsersAction) -> None:
    """Add `config` and its subcommands to the subcommands."""
    p = sub.add_parser("config", help="list, copy, show, edit and check XTuner configs (read, never run)")
    inner = p.add_subparsers(dest="config_command", metavar="COMMAND", required=True)

    listing = inner.add_parser("list", help="XTuner's built-in configs, as `xtuner list-cfg -p PATTERN`")
    listing.add_argument("pattern", nargs="?", default="", help="part of the name, any case")
    listing.set_defaults(func=run_list)

    copy = inner.add_parser("copy", help="copy a built-in config into a folder as NAME_copy.py (never overwrites)")
    copy.add_argument("name", help="a built-in config's name")
    copy.add_argument("dir", type=Path, help="the folder to copy into")
    copy.set_defaults(func=run_copy)

    show = inner.add_parser("show", help="a config's PART 1 settings, with the values worked out")
    show.add_argument("config", help="config file or built-in name")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=run_show)

    edit = inner.add_parser("set", help="change PART 1 settings: KEY=VALUE ..., checked, shown as a diff")
    edit.add_argument("config", type=Path, help="the config file to edit")
    edit.add_argument("assignments", nargs="+", metavar="KEY=VALUE", help="e.g. max_length=512 data_path=./data/x.json")
    edit.add_argument("--yes", action="store_true", help="write without asking")
    edit.set_defaults(func=run_set)

    check = inner.add_parser("check", help="templates, evaluation inputs, checkpoints vs the run's length, map_fn")
    check.add_argument("config", help="config file or built-in name")
    check.add_argument("--data", type=Path, help="the dataset to check against (default: the config's local data)")
    check.add_argument("--gpus", type=int, default=1, help="GPUs the run will use, for its length (default: 1)")
    check.add_argument("--no-tokens", action="store_true", help="do not load the tokenizer to count tokens")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(func=run_check)


def run_list(args: argparse.Namespace) -> int:
    """Print the built-in configs whose name contains the pattern; 1 when none does."""
    from engine.xtuner.configs import list_builtin

    names = list_builtin(args.pattern)
    for name in names:
        print(name)
    if not names:
        print(printable(f"no built-in config name contains {args.pattern!r}"), file=sys.stderr)
    return 0 if names else 1


def run_copy(args: argparse.Namespace) -> int:
    """Copy the built-in config and say what to do next."""
    from engine.xtuner.configs import copy_builtin

    target = copy_builtin(args.name, args.dir)
    print(printable(f"copied to {target}"))
    print(
        f"next: {shell('xtui', 'config', 'show', target)}    then: {shell('xtui', 'config', 'set', target, 'KEY=VALUE')}"
    )
    return 0


def _plain(value: object) -> object:
    """A worked-out value as JSON can hold it (its repr when it cannot)."""
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _is_literal(text: str) -> bool:
    """True when a value's source text is a plain literal, which needs no worked-out value beside it."""
    try:
        ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def run_show(args: argparse.Namespace) -> int:
    """Print the PART 1 settings, grouped under their headings."""
    from engine.xtuner.config_values import part1_settings
    from engine.xtuner.configs import resolve_config

    path = resolve_config(args.config)
    settings = part1_settings(path.read_text(encoding="utf-8"))
    if args.json:
        print(to_json([dataclasses.asdict(s) | {"value": _plain(s.value)} for s in settings], indent=2))
        return 0
    print(printable(f"# {path}: PART 1"))
    section = None
    for s in settings:
        if s.section != section:
            section = s.section
            print(printable(f"\n# {section}" if section else ""))
        notes = [f"= {s.value!r}"] if s.known and not _is_literal(s.text) else []  # data_root + "x.json"
        notes += [s.comment] if s.comment else []
        print(printable(f"{s.name} = {s.text}" + (f"  # {'; '.join(notes)}" if notes else "")))
    return 0


def _ask(question: str) -> bool:
    """True when the user answers y on a terminal; False without one."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return False
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        return False


def run_set(args: argparse.Namespace) -> int:
    """Check the new values, print the diff, write it with --yes or a y at the prompt."""
    from engine.xtuner.config_edit import plan_edit, write_edit
    from engine.xtuner.configs import ConfigError, builtin_root

    if not args.config.is_file():
        raise ConfigError(f"no such config file: {args.config} (for a built-in one: xtui config copy NAME DIR first)")
    if args.config.resolve().is_relative_to(builtin_root().resolve()):
        raise ConfigError(f"{args.config} is one of XTuner's own configs: copy it first (xtui config copy NAME DIR)")
    edit = plan_edit(args.config, args.assignments, Path.cwd())
    if edit.edited == edit.source:
        print("nothing to change: the values are already these")
        return 0
    print(printable(edit.diff), end="")
    if args.yes or _ask(f"write these changes to {printable(str(args.config), newlines=False)}? [y/N] "):
        write_edit(edit)
        print(printable(f"wrote {args.config}"))
        return 0
    print("not written (add --yes to write)", file=sys.stderr)
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Print what would fail at launch and what would go wrong in the run; 1 when any of it is a problem."""
    from engine.xtuner.config_advice import advise
    from engine.xtuner.configs import resolve_config
    from engine.xtuner.memory_estimate import memory_line

    path = resolve_config(args.config)
    advice = advise(path, Path.cwd(), args.data, count_tokens=not args.no_tokens, gpus=args.gpus)
    fits, memory = memory_line(path, Path.cwd(), None, args.gpus)
    if args.json:
        extra = {"ok": advice.ok, "memory": memory, "memory_fits": fits}
        print(to_json(dataclasses.asdict(advice) | extra, indent=2, default=str))
        return 0 if advice.ok else 1
    for a in advice.advice:
        print(printable(f"{a.severity}: {a.message}"))
    if advice.length is not None:
        print(printable(describe_length(advice.length, path)))
    print(printable(memory if fits else f"warning: {memory}"))
    if not advice.advice:
        print(printable(f"{path}: nothing found to mend"))
    return 0 if advice.ok else 1


def describe_length(length, config: Path) -> str:
    """The run's length in one line: iterations (what save_steps counts), per epoch, optimizer steps."""
    from engine.xtuner.config_values import config_values

    values = config_values(config.read_text(encoding="utf-8"))
    save_steps = values.get("save_steps")
    saves = ""
    if isinstance(save_steps, int) and save_steps > 0:
        count, limit = length.iterations // save_steps, values.get("save_total_limit")
        kept = (
            f"{count} saved, {limit} kept" if isinstance(limit, int) and 0 < limit < count else f"{count} checkpoints"
        )
        saves = f"; save_steps={save_steps}: {kept}"
    gpus = f" on {length.gpus} GPUs" if length.gpus > 1 else " on 1 GPU"
    return (
        f"run: ~{length.iterations} iterations{gpus} ({length.iterations_per_epoch} per epoch over {length.samples} samples), "
        f"{length.optimizer_steps} optimizer steps{saves}"
    )
