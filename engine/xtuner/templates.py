"""XTuner's prompt templates, read from its source without importing it, and the chat prompt they make."""

from __future__ import annotations

import ast
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from engine.errors import XtunerError
from engine.xtuner.configs import builtin_root, read_settings


class TemplateError(XtunerError):
    """A prompt template that does not exist or cannot be read."""


@dataclass(frozen=True, slots=True)
class Template:
    """One entry of xtuner's PROMPT_TEMPLATE."""

    name: str
    instruction: str
    system: str = ""
    suffix: str = ""
    sep: str = ""
    stop_words: tuple[str, ...] = ()
    suffix_as_eos: bool = False  # XTuner's SUFFIX_AS_EOS: the suffix ends an answer in place of the tokenizer's EOS

    @property
    def needs_eos(self) -> bool:
        """True when training puts the tokenizer's EOS after each answer (and its BOS before the next turn)."""
        return not self.suffix_as_eos


@dataclass(frozen=True, slots=True)
class Turn:
    """One exchange of a chat: what was asked and what was answered."""

    prompt: str
    answer: str


def _literal_dict(call: ast.expr) -> dict:
    """The keywords of a `dict(...)` call of literals."""
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "dict"):
        raise TemplateError("PROMPT_TEMPLATE entry is not a dict(...) call")
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


@functools.cache
def templates() -> dict[str, Template]:
    """Every template of the installed xtuner, by name, in its order."""
    path = builtin_root().parent / "utils" / "templates.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError) as exc:
        raise TemplateError(f"cannot read xtuner's templates ({path}): {exc}") from exc
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "PROMPT_TEMPLATE" for t in node.targets):
            found = {}
            for kw in node.value.keywords:
                raw = _literal_dict(kw.value)
                found[kw.arg] = Template(
                    name=kw.arg,
                    instruction=raw["INSTRUCTION"],
                    system=raw.get("SYSTEM", ""),
                    suffix=raw.get("SUFFIX", ""),
                    sep=raw.get("SEP", ""),
                    stop_words=tuple(raw.get("STOP_WORDS", ())),
                    suffix_as_eos=bool(raw.get("SUFFIX_AS_EOS", False)),
                )
            return found
    raise TemplateError(f"no PROMPT_TEMPLATE in {path}")


def template(name: str) -> Template:
    """The template called `name` (with or without the `PROMPT_TEMPLATE.` prefix)."""
    name = name.removeprefix("PROMPT_TEMPLATE.")
    found = templates().get(name)
    if found is None:
        raise TemplateError(f"no prompt template named {name!r}; xtuner has: {', '.join(templates())}")
    return found


def template_of_config(source: str) -> str | None:
    """The template name a config sets (`PROMPT_TEMPLATE.x`, mmengine's dumped path string, or a dict), if any."""
    value = read_settings(source).get("prompt_template", "")
    name = value.strip("'\"").rpartition("PROMPT_TEMPLATE.")[2]  # `PROMPT_TEMPLATE.x`, or mmengine's dumped string
    if name in templates():
        return name
    try:  # a config may also hold the template's dict itself
        laid_out = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return None
    instruction = laid_out.get("INSTRUCTION") if isinstance(laid_out, dict) else None
    return next((t.name for t in templates().values() if instruction and t.instruction == instruction), None)


def system_of_config(source: str) -> str:
    """The SYSTEM text a config's PART 1 sets when it is a plain string literal, else ''."""
    try:
        value = ast.literal_eval(read_settings(source).get("SYSTEM", "''"))
    except (ValueError, SyntaxError):
        return ""
    return value if isinstance(value, str) else ""


def render(
    tpl: Template | None, history: Sequence[Turn], prompt: str, system: str = "", eos: str = "", bos: str = ""
) -> str:
    """The whole prompt for the next answer, laid out the way XTuner trains: system, turns, SEP between.

    `eos` and `bos` are the tokenizer's tokens: after an earlier answer and before the next turn where XTuner's
    encode_fn puts them, for a template without SUFFIX_AS_EOS (gemma: `<end_of_turn><eos>\n<bos>`) or none.
    """
    if tpl is None:
        return "".join(turn.prompt + turn.answer + eos + bos for turn in history) + prompt
    eos, bos = (eos, bos) if tpl.needs_eos else ("", "")
    text = tpl.system.format(system=system, round=1, bot_name="BOT") if system and tpl.system else ""
    for number, turn in enumerate([*history, Turn(prompt, "")], start=1):
        text += tpl.instruction.format(input=turn.prompt, round=number, bot_name="BOT")
        if number <= len(history):
            text += turn.answer + tpl.suffix + eos + tpl.sep + bos
    return text
