"""KeyBar: the screen's shown bindings on one line, whole hints only, following focus; a click runs a hint's key;
and `xtui WORK_DIR`'s run view gives way to the dashboard on Esc (the dashboard is not built before that)."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Input, Static

from tests.support.waiting import until
from tui.widgets.key_bar import KeyBar

pytestmark = pytest.mark.anyio


class Field(Input):
    """An input with a binding of its own, shown only while it has focus."""

    BINDINGS = [Binding("ctrl+t", "app.ring", "Field only")]


class BarApp(App[None]):
    """Three app bindings, one hidden, one disabled while `locked`; a focusable field with its own."""

    AUTO_FOCUS = None
    BINDINGS = [
        Binding("a", "ring", "Alpha"),
        Binding("b", "other", "Bravo hint"),
        Binding("h", "ring", "Hidden", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rang = 0
        self.locked = False

    def compose(self) -> ComposeResult:
        yield Static("body")
        yield Field()
        yield KeyBar()

    def action_ring(self) -> None:
        self.rang += 1

    def action_other(self) -> None:
        self.rang += 10

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return None if action == "other" and self.locked else True  # None: shown, disabled


def bar_text(app: App) -> str:
    return app.query_one(KeyBar).render().plain


async def test_the_bar_shows_the_shown_bindings_and_the_palette_key_at_the_right_end() -> None:
    app = BarApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = bar_text(app)
        assert text.startswith(" a Alpha  b Bravo hint ") and "Hidden" not in text
        assert text.endswith(" ^p palette ") and len(text) == 80


@pytest.mark.parametrize(
    "width, shown, left_out",
    [
        (35, ["Alpha", "Bravo hint", "^p palette"], []),
        (34, ["Alpha", "Bravo hint"], ["palette"]),  # the palette's key goes first (the help names it)
        (20, ["Alpha"], ["Brav", "palette"]),  # then whole hints, never a cut word
    ],
)
async def test_hints_that_do_not_fit_are_left_out_whole_the_palette_first(width, shown, left_out) -> None:
    app = BarApp()
    async with app.run_test(size=(width, 10)) as pilot:
        await pilot.pause()
        text = bar_text(app)
        assert all(word in text for word in shown) and not any(word in text for word in left_out)
        assert len(text) <= width


async def test_the_bar_follows_focus_and_a_disabled_binding_is_dim() -> None:
    app = BarApp()
    async with app.run_test(size=(80, 24)) as pilot:
        assert "Field only" not in bar_text(app)
        app.query_one(Field).focus()
        await until(pilot, lambda: "Field only" in bar_text(app))
        assert "Alpha" not in bar_text(app)  # the field takes printable keys
        app.set_focus(None)
        await until(pilot, lambda: "Field only" not in bar_text(app))
        app.locked = True
        app.refresh_bindings()
        await pilot.pause()
        bar = app.query_one(KeyBar).render()
        bravo = bar.plain.index("Bravo")
        assert any(span.start <= bravo < span.end and "dim" in str(span.style) for span in bar.spans)


async def test_a_click_on_a_hint_presses_its_key_and_a_disabled_one_only_rings() -> None:
    app = BarApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = bar_text(app)
        await pilot.click(KeyBar, offset=(text.index("Alpha"), 0))
        await until(pilot, lambda: app.rang == 1)
        await pilot.click(KeyBar, offset=(text.index("Bravo"), 0))
        await until(pilot, lambda: app.rang == 11)
        app.locked = True
        app.refresh_bindings()
        await pilot.pause()
        await pilot.click(KeyBar, offset=(text.index("Bravo"), 0))
        await pilot.pause()
        assert app.rang == 11
