"""A text field for a file path where Tab completes from the filesystem, like a shell does."""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from textual.actions import SkipAction
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.widgets import Input

MAX_MATCHES = 1000  # a huge folder still completes quickly


def path_matches(text: str, cwd: Path, suffixes: Collection[str] = ()) -> tuple[str, list[str]]:
    """Split `text` at its last "/" into (head, sorted names in that folder that complete the rest); folders end in "/"."""
    if text == "~":
        return "", ["~/"]
    cut = text.rfind("/") + 1
    head, prefix = text[:cut], text[cut:]
    folder = Path(os.path.expanduser(head or "."))
    folder = folder if folder.is_absolute() else cwd / folder
    names: list[str] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if not name.startswith(prefix) or (name.startswith(".") and not prefix.startswith(".")):
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                if is_dir:
                    names.append(name + "/")
                elif not suffixes or name.lower().endswith(tuple(suffixes)):
                    names.append(name)
                if len(names) >= MAX_MATCHES:
                    break
    except OSError:
        return head, []
    return head, sorted(names, key=lambda n: (n.lower(), n))


@dataclass
class _Cycle:
    """Matches that repeated Tabs step through: the text before and after them, the current one, the text shown."""

    head: str
    names: list[str]
    tail: str
    shown: str
    index: int = -1  # none yet: the field holds their common prefix

    def step(self, step: int) -> str:
        """Move to the next (step 1) or previous (-1) match; the field's new text."""
        count = len(self.names)
        self.index = (self.index + step) % count if self.index >= 0 else (0 if step > 0 else count - 1)
        self.shown = self.head + self.names[self.index] + self.tail
        return self.shown


class PathInput(Input):
    """An Input where Tab completes the path before the cursor (~ expanded, relative to `cwd`).

    Tab extends the last path component to the longest common prefix of the matches and lists them in the
    border subtitle; further Tabs (Shift+Tab backwards) cycle through them. Folders complete with a trailing "/",
    hidden names only when the typed name starts with ".", and with `suffixes` only files ending in one are offered.
    When there is nothing to complete (empty field, no match, or a file already complete) Tab moves focus as usual.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("tab", "complete", "Complete path"),
        Binding("shift+tab", "complete(-1)", "Previous match", show=False),
    ]

    def __init__(
        self,
        value: str | None = None,
        placeholder: str = "",
        *,
        cwd: str | Path | None = None,
        suffixes: Collection[str] = (),
        **kwargs: Any,
    ) -> None:
        self._cycle: _Cycle | None = None  # before Input's init: a value given there is watched at once
        super().__init__(value, placeholder, **kwargs)
        self.cwd = Path(cwd) if cwd is not None else Path.cwd()
        self.suffixes = tuple(s.lower() for s in suffixes)
        self.matches: list[str] = []

    def watch_value(self, value: str) -> None:
        """Typing ends a completion: forget its matches."""
        if self._cycle and value != self._cycle.shown:
            self._cycle, self.matches, self.border_subtitle = None, [], None

    def action_complete(self, step: int = 1) -> None:
        """Complete the path before the cursor, or step through the matches of the previous Tab."""
        cycle = self._cycle
        if cycle and self.value == cycle.shown:
            text = cycle.step(step)
            self._set(text, len(text) - len(cycle.tail))
            return
        before, tail = self.value[: self.cursor_position], self.value[self.cursor_position :]
        if step < 0 or not before.strip():
            raise SkipAction()
        head, names = path_matches(before, self.cwd, self.suffixes)
        completed = head + os.path.commonprefix(names)
        if not names or (len(names) == 1 and completed == before):
            raise SkipAction()
        self.matches = names if len(names) > 1 else []
        self._cycle = _Cycle(head, names, tail, completed + tail) if self.matches else None
        self._set(completed + tail, len(completed))

    def _set(self, value: str, cursor: int) -> None:
        """Put `value` in the field with the cursor at `cursor`, and list the matches in the border subtitle."""
        self.value = value
        self.cursor_position = cursor
        cycle = self._cycle
        if cycle is None:
            self.border_subtitle = None
            return
        parts: list[tuple[str, str]] = [(f"{len(cycle.names)} matches:", "dim")]
        for index, name in enumerate(cycle.names):
            parts.append((" ", ""))
            parts.append((name, "reverse" if index == cycle.index else ""))
        self.border_subtitle = Content.assemble(*parts)
