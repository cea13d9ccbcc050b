"""The prompt template a model folder carries: written into an export (as xtuner's fields and as a Hugging Face chat
template), and read back for a chat."""

from __future__ import annotations

import json
import string
from pathlib import Path

from engine.files import write_atomic
from engine.xtuner.templates import Template, TemplateError, template_of_config, templates

TEMPLATE_FILE = "xtuner_template.json"  # the template's fields, as xtuner names them
CONFIG_COPY = "xtuner_config.py"  # the training config pth_to_hf copies into what it converts
# The fields xtuner's templates use, as Jinja expressions in a chat template.
_FIELDS = {"input": "message['content']", "system": "message['content']", "round": "ns.round", "bot_name": '"BOT"'}


def _jinja(text: str) -> str:
    """A format string of xtuner's (`{input}`, `{round}`...) as Jinja output: literals quoted, fields as expressions."""
    out = []
    for literal, field, _, _ in string.Formatter().parse(text):
        if literal:
            out.append("{{ " + json.dumps(literal, ensure_ascii=False) + " }}")
        if field is not None:
            if field not in _FIELDS:
                raise TemplateError(f"the template uses {{{field}}}, which has no chat-template equivalent")
            out.append("{{ " + _FIELDS[field] + " }}")
    return "".join(out)


def chat_template(tpl: Template) -> str:
    """`tpl` as a Hugging Face chat template (Jinja) that lays out a conversation as engine.xtuner.templates.render."""
    system = "{%- if message['content'] -%}" + _jinja(tpl.system) + "{%- endif -%}" if tpl.system else ""
    return (
        "{%- set ns = namespace(round=0) -%}"
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'system' -%}" + system +
        "{%- elif message['role'] == 'user' -%}{%- set ns.round = ns.round + 1 -%}" + _jinja(tpl.instruction) +
        "{%- else -%}{{ message['content'] }}" + _jinja(tpl.suffix + tpl.sep) +
        "{%- endif -%}"
        "{%- endfor -%}"
    )  # fmt: skip


def write_template(folder: Path, tpl: Template) -> None:
    """Give a model folder its prompt template: xtuner's fields in TEMPLATE_FILE, the chat template in its tokenizer."""
    fields = {"name": tpl.name, "SYSTEM": tpl.system, "INSTRUCTION": tpl.instruction, "SUFFIX": tpl.suffix,
              "SEP": tpl.sep, "STOP_WORDS": list(tpl.stop_words)}  # fmt: skip
    write_atomic(folder / TEMPLATE_FILE, json.dumps(fields, ensure_ascii=False, indent=2) + "\n")
    tokenizer_config = folder / "tokenizer_config.json"
    settings = json.loads(tokenizer_config.read_text(encoding="utf-8")) if tokenizer_config.is_file() else {}
    settings["chat_template"] = chat_template(tpl)
    write_atomic(tokenizer_config, json.dumps(settings, ensure_ascii=False, indent=2) + "\n")


def template_of_model(*folders: Path) -> str | None:
    """The template name the first of `folders` that says one carries (an export's TEMPLATE_FILE, a conversion's config)."""
    for folder in folders:
        try:
            name = json.loads((folder / TEMPLATE_FILE).read_text(encoding="utf-8")).get("name")
        except (OSError, ValueError, AttributeError):
            name = None
        if name in templates():
            return name
        config = folder / CONFIG_COPY
        if config.is_file():
            found = template_of_config(config.read_text(encoding="utf-8", errors="replace"))
            if found:
                return found
    return None
