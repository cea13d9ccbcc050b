"""The chat settings and saved-transcripts dialogs: Pilot tests of what they dismiss with, and snapshots."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from textual.app import App
from textual.screen import Screen
from textual.widgets import DataTable, Input, Select, Static, TextArea

from engine import locations
from engine.chat.decoding import Sampling
from engine.chat.generation import StopReason
from engine.chat.session import Exchange
from engine.chat.transcripts import Column, Transcript, save
from engine.xtuner.templates import Turn
from tests.support import ROOT
from themes import THEMES
from tui.dialogs.chat_settings import ChatSettings, ChatSettingsScreen
from tui.dialogs.transcripts import TranscriptsScreen

pytestmark = pytest.mark.anyio

DATA = Path("/tmp/xtui-snapshot-data")  # fixed: the empty state shows the folder
SAVED_AT = 1795858496.0  # 2026-11-28 09:34:56 UTC
SIZES = [(80, 24), (120, 40)]
SIZE_IDS = ["80x24", "120x40"]
CURRENT = ChatSettings("internlm2_chat", "你是XTuner小助手，由上海AI实验室开发。", Sampling(seed=42))
NOT_YET = object()


class DialogApp(App[None]):
    """Pushes one dialog at start and keeps what it was dismissed with."""

    CSS_PATH = ROOT / "tui" / "xtui.tcss"

    def __init__(self, make_screen) -> None:
        super().__init__()
        self.make_screen = make_screen
        self.result: object = NOT_YET

    def on_mount(self) -> None:
        for theme in THEMES:
            self.register_theme(theme)
        self.theme = "xtui-dark"
        self.push_screen(self.make_screen(), self.record)

    def record(self, result: object) -> None:
        self.result = result


@pytest.fixture(autouse=True)
def data(monkeypatch) -> Path:
    monkeypatch.setenv("XTUI_DATA", str(DATA))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    shutil.rmtree(DATA, ignore_errors=True)
    yield locations.transcripts_dir()
    shutil.rmtree(DATA, ignore_errors=True)
    monkeypatch.undo()
    time.tzset()


def saved_transcripts(folder: Path) -> list[Path]:
    """Two good transcripts (one A/B) an hour apart, and a broken file between them."""
    intro = Exchange(
        Turn("请你介绍一下你自己", "我是XTuner小助手，由上海AI实验室开发。"), None, StopReason.STOP, 12, 210.0
    )
    who = Exchange(Turn("Who are you?", "I am XTuner's assistant."), None, StopReason.STOP, 6, 190.0)
    base = Exchange(Turn("请你介绍一下你自己", "我是一个人工智能助手。"), None, StopReason.STOP, 9, 220.0)
    old = Transcript(
        "internlm2-1.8b (merged)", "internlm2_chat", "", Sampling(), (Column("merged", (intro, who)),), SAVED_AT - 3600
    )
    ab = Transcript(
        "tiny-llama: adapter vs base",
        "default",
        "",
        Sampling(),
        (Column("adapter", (intro,)), Column("base", (base,))),
        SAVED_AT,
    )
    paths = [save(ab, folder), save(old, folder)]
    broken = folder / "20261128-090000-half-written.json"
    broken.write_text('{"kind": "xtui-transcript", "version": 1', encoding="utf-8")
    os.utime(broken, (SAVED_AT - 60, SAVED_AT - 60))
    return [paths[0], broken, paths[1]]


def ready(screen: Screen, screen_type: type[Screen]) -> bool:
    """Whether the dialog is up and (for the transcripts) has read its folder."""
    if not isinstance(screen, screen_type):
        return False
    return not isinstance(screen, TranscriptsScreen) or "reading" not in str(
        screen.query_one("#transcripts-empty").render()
    )


async def settle(pilot, screen_type: type[Screen]) -> Screen:
    """The dialog, once it is ready."""
    for _ in range(100):
        await pilot.pause(0.02)
        if ready(pilot.app.screen, screen_type):
            break
    await pilot.pause()
    return pilot.app.screen


async def test_apply_returns_the_changed_settings() -> None:
    app = DialogApp(lambda: ChatSettingsScreen(CURRENT))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await settle(pilot, ChatSettingsScreen)
        assert screen.query_one("#template", Select).value == "internlm2_chat"
        assert screen.query_one("#seed", Input).value == "42"
        screen.query_one("#template", Select).value = "qwen_chat"
        temperature = screen.query_one("#temperature", Input)
        temperature.value = ""
        temperature.focus()
        await pilot.press("0", ".", "7")
        screen.query_one("#system", TextArea).text = "Be brief."
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert app.result == ChatSettings("qwen_chat", "Be brief.", Sampling(temperature=0.7, seed=42))


async def test_no_template_is_none_and_the_button_applies() -> None:
    app = DialogApp(lambda: ChatSettingsScreen(CURRENT))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await settle(pilot, ChatSettingsScreen)
        screen.query_one("#template", Select).clear()
        await pilot.click("#apply")
        await pilot.pause()
    assert app.result == ChatSettings(None, CURRENT.system, CURRENT.sampling)


async def test_bad_values_are_shown_and_do_not_dismiss() -> None:
    app = DialogApp(lambda: ChatSettingsScreen(CURRENT))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await settle(pilot, ChatSettingsScreen)
        error = screen.query_one("#chat-settings-error", Static)
        screen.query_one("#top_p", Input).value = "2"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is screen and app.result is NOT_YET
        assert "✗ top-p must be above 0 and at most 1" in str(error.render())
        screen.query_one("#top_p", Input).value = "0.5"
        screen.query_one("#seed", Input).value = ""
        await pilot.pause()
        assert str(error.render()).strip() == ""  # an edit clears the verdict
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "✗ seed must be a whole number" in str(error.render()) and app.result is NOT_YET
        screen.query_one("#seed", Input).value = "1"
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert app.result == ChatSettings(CURRENT.template, CURRENT.system, Sampling(top_p=0.5, seed=1))


async def test_escape_cancels_even_from_the_system_prompt() -> None:
    app = DialogApp(lambda: ChatSettingsScreen(CURRENT))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await settle(pilot, ChatSettingsScreen)
        screen.query_one("#system", TextArea).focus()
        await pilot.press("x", "escape")
        await pilot.pause()
    assert app.result is None


async def test_transcripts_enter_opens_the_selected_file(data) -> None:
    paths = saved_transcripts(data)
    app = DialogApp(TranscriptsScreen)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await settle(pilot, TranscriptsScreen)
        assert screen.query_one(DataTable).row_count == 3
        await pilot.press("down", "down", "enter")
        await pilot.pause()
    assert app.result == paths[2]


async def test_transcripts_columns_follow_the_terminal_width(data) -> None:
    saved_transcripts(data)
    app = DialogApp(TranscriptsScreen)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await settle(pilot, TranscriptsScreen)
        table = screen.query_one(DataTable)
        await pilot.press("down")
        narrow = sum(c.width for c in table.columns.values())
        await pilot.resize_terminal(120, 40)
        await pilot.pause(0.1)
        assert (
            sum(c.width for c in table.columns.values()) == narrow + 28
        )  # the dialog: 90% of 80, then its 100-column maximum
        assert table.row_count == 3 and table.cursor_row == 1


async def test_a_broken_transcript_says_why_and_stays(data) -> None:
    saved_transcripts(data)
    app = DialogApp(TranscriptsScreen)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await settle(pilot, TranscriptsScreen)
        await pilot.press("down", "enter")
        await pilot.pause()
        error = str(screen.query_one("#transcripts-error", Static).render())
        assert "cannot be opened: not valid JSON" in error and app.screen is screen and app.result is NOT_YET
        await pilot.press("escape")
        await pilot.pause()
    assert app.result is None


async def test_transcripts_empty_state(data) -> None:
    app = DialogApp(TranscriptsScreen)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await settle(pilot, TranscriptsScreen)
        assert f"no saved transcripts yet in {data}" in str(screen.query_one("#transcripts-empty", Static).render())
        assert not screen.query_one(DataTable).display
        await pilot.press("enter", "escape")
        await pilot.pause()
    assert app.result is None


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_chat_settings_snapshot(snap_compare, size) -> None:
    async def up(pilot) -> None:
        await settle(pilot, ChatSettingsScreen)

    assert snap_compare(DialogApp(lambda: ChatSettingsScreen(CURRENT)), terminal_size=size, run_before=up)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_transcripts_snapshot(snap_compare, size, data) -> None:
    saved_transcripts(data)

    async def up(pilot) -> None:
        await settle(pilot, TranscriptsScreen)
        await pilot.press("down", "enter")  # the broken one: its error shows inline

    assert snap_compare(DialogApp(TranscriptsScreen), terminal_size=size, run_before=up)


def test_transcripts_empty_snapshot(snap_compare) -> None:
    async def up(pilot) -> None:
        await settle(pilot, TranscriptsScreen)

    assert snap_compare(DialogApp(TranscriptsScreen), terminal_size=(80, 24), run_before=up)
