"""KeyBar: the screen's key hints on the bottom line, one widget drawn as one line of text.

Textual's Footer mounts a widget per key and builds them again whenever the bindings change (each focus move);
with xtui's style sheet that cost about 0.5 s of the main thread on opening a run. This draws the same hints
from `Screen.active_bindings` on each change, leaves out whole hints that do not fit (never a cut word; the
command palette's key first), and runs a hint's key when it is clicked.
"""

from __future__ import annotations

from typing import NamedTuple

from textual import events
from textual.content import Content
from textual.screen import Screen
from textual.style import Style
from textual.widget import Widget


class Hint(NamedTuple):
    """One key hint: the key to press, how it is shown, what it does, whether it works now."""

    key: str
    display: str
    description: str
    enabled: bool


class KeyBar(Widget, can_focus=False):
    """One line of key hints for the screen's shown bindings; the command palette's key on the right."""

    ALLOW_SELECT = False
    COMPONENT_CLASSES = {"key-bar--key", "key-bar--description"}
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
        & > .key-bar--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        & > .key-bar--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._spans: list[tuple[int, int, Hint]] = []  # cells each drawn hint takes, for clicks

    def on_mount(self) -> None:
        """Draw again whenever the screen's bindings change (focus moves, a binding is enabled)."""
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        """Stop listening to the screen."""
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen) -> None:
        """The bindings changed: draw the hints again."""
        if self.is_attached and screen is self.screen:
            self.refresh()

    def hints(self) -> tuple[list[Hint], Hint | None]:
        """(the shown bindings, one per action in the screen's order; the command palette's), as they stand now."""
        app = self.app
        palette_key = app.COMMAND_PALETTE_BINDING if app.ENABLE_COMMAND_PALETTE else None
        shown: dict[str, Hint] = {}
        palette = None
        for key, (_node, binding, enabled, _tooltip) in self.screen.active_bindings.items():
            hint = Hint(binding.key, app.get_key_display(binding), binding.description, enabled)
            if key == palette_key:
                palette = hint
            elif binding.show and binding.action not in shown:
                shown[binding.action] = hint
        return list(shown.values()), palette

    def render(self) -> Content:
        """The hints that fit the width, whole, left to right; the palette's key at the right end when all fit."""
        styles = {"key": self.get_visual_style("key-bar--key"), "text": self.get_visual_style("key-bar--description")}
        hints, palette = self.hints()
        width = self.size.width
        if palette and sum(map(_width, hints)) + _width(palette) > width:
            palette = None  # too narrow for all: the screen's own keys first (its help names the palette's key)
        room = width - (_width(palette) if palette else 0)
        parts: list[tuple[str, Style]] = []
        self._spans = []
        for hint in hints:
            at = self._spans[-1][1] if self._spans else 0
            if at + _width(hint) > room:
                break
            parts += _parts(hint, styles)
            self._spans.append((at, at + _width(hint), hint))
        if palette:
            at = self._spans[-1][1] if self._spans else 0
            parts.append((" " * (room - at), styles["text"]))
            parts += _parts(palette, styles)
            self._spans.append((room, width, palette))
        return Content.assemble(*parts)

    def on_click(self, event: events.Click) -> None:
        """A click on a hint presses its key (a bell when it is disabled)."""
        for start, end, hint in self._spans:
            if start <= event.x < end:
                if hint.enabled:
                    self.app.simulate_key(hint.key)
                else:
                    self.app.bell()
                return


def _parts(hint: Hint, styles: dict[str, Style]) -> list[tuple[str, Style]]:
    """A hint drawn: ` key ` then `description `, dim when the binding is disabled now."""
    dim = Style(dim=True) if not hint.enabled else Style()
    parts = [(f" {hint.display} ", styles["key"] + dim)]
    if hint.description:
        parts.append((f"{hint.description} ", styles["text"] + dim))
    return parts


def _width(hint: Hint) -> int:
    """Cells a hint takes."""
    return len(hint.display) + 2 + (len(hint.description) + 1 if hint.description else 0)
