"""SamplesPane: newest iteration first, per-prompt diffs and markers, escaping, the real log's samples, snapshots."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Footer

from engine.runs.events import Sample
from engine.runs.logs import read_events
from tests.support import FIXTURE_LOG, FIXTURES
from tests.support.waiting import until
from themes import THEMES
from tui.widgets.samples_pane import INSERTED, REMOVED, SamplesPane, answer_diff

pytestmark = pytest.mark.anyio


INTRO, WHO, EN = "请你介绍一下你自己", "你是谁", "Who are you?"
SAMPLES = [
    Sample(100, INTRO, "我是一个人工智能助手，由上海AI实验室开发。", "11/28 14:00:10"),
    Sample(100, WHO, "我是一个人工智能助手。", "11/28 14:00:11"),
    Sample(100, EN, "I am an AI assistant made by Shanghai AI Lab, here to help.", "11/28 14:00:12"),
    Sample(200, INTRO, "我是XTuner小助手，由上海AI实验室开发。", "11/28 14:02:10"),
    Sample(200, WHO, "我是XTuner小助手", "11/28 14:02:11"),
    Sample(200, EN, "I am XTuner's little assistant, here to help.", "11/28 14:02:12"),
    Sample(300, INTRO, "我是XTuner小助手", "11/28 14:04:10"),
    Sample(300, WHO, "我是XTuner小助手", "11/28 14:04:11"),
    Sample(300, EN, "", "11/28 14:04:12"),
]


class SamplesApp(App[None]):
    """The pane alone, in xtui's dark theme."""

    def __init__(self, batches: list[list[Sample]] | None = None) -> None:
        super().__init__()
        self.batches = batches or []

    def compose(self) -> ComposeResult:
        yield SamplesPane()
        yield Footer()

    def on_mount(self) -> None:
        for theme in THEMES:
            self.register_theme(theme)
        self.theme = "xtui-dark"
        pane = self.query_one(SamplesPane)
        for batch in self.batches:
            pane.add_samples(batch)
        pane.focus()


def group_texts(app: App) -> dict[int, str]:
    """Each group's rendered text by iteration, in screen order."""
    return app.query_one(SamplesPane).texts()


def placeholder_shown(pane: SamplesPane) -> bool:
    """The "No samples yet" text is on screen."""
    return any("No samples yet" in pane.render_line(y).text for y in range(3))


def styled_pieces(content, style: str) -> list[str]:
    """The pieces of `content` carrying exactly `style`."""
    return [content.plain[s.start : s.end] for s in content.spans if str(s.style) == style]


async def test_groups_newest_first_whatever_the_batches() -> None:
    app = SamplesApp([SAMPLES[3:6], SAMPLES[:3], SAMPLES[6:]])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert list(group_texts(app)) == [300, 200, 100]
        assert app.query_one(SamplesPane).sample_count == 9


def test_diff_marks_inserted_and_removed_text() -> None:
    content, ratio = answer_diff(SAMPLES[0].answer, SAMPLES[3].answer)
    assert content.plain.startswith("我是一个人工智能XTuner小助手")  # removed text stays, struck
    assert styled_pieces(content, INSERTED) == ["XTuner小"]
    assert styled_pieces(content, REMOVED) == ["一个人工智能"]
    content, _ = answer_diff(SAMPLES[2].answer, SAMPLES[5].answer)
    assert "".join(styled_pieces(content, INSERTED)) == " XTuner's little"
    assert "".join(styled_pieces(content, REMOVED)) == " an AI made by Shanghai AI Lab"


async def test_markers_shorter_identical_empty_unchanged() -> None:
    app = SamplesApp([SAMPLES])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        texts = group_texts(app)
        assert "shorter: 23 → 11 chars" in texts[300]
        assert texts[300].count("identical to 1 other prompt") == 2
        assert "(empty)" in texts[300] and " empty " in texts[300]
        assert "shorter" not in texts[200] and "identical" not in texts[200]
        assert "XTuner小助手，由上海AI实验室开发" in texts[200]
        assert "unchanged" not in texts[200]
        app.query_one(SamplesPane).add_samples([Sample(400, WHO, "我是XTuner小助手")])
        await pilot.pause()
        assert "unchanged" in group_texts(app)[400]


async def test_control_and_replacement_characters_are_escaped() -> None:
    app = SamplesApp([[Sample(1, "p\x07", "\x1b[31mred\ufffd\u202e\tend")]])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = group_texts(app)[1]
        assert "\\x1b[31mred<?>\\u202e    end" in text
        assert "p\\x07" in text
        assert not any(ch in text for ch in "\x1b\x07\ufffd\u202e\t")


async def test_samples_added_before_mount_render_on_mount() -> None:
    app = SamplesApp()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = SamplesPane()
        pane.add_samples(SAMPLES[:3])
        await app.mount(pane)
        await pilot.pause()
        assert list(pane.texts()) == [100] and not placeholder_shown(pane)


async def test_real_log_samples_render() -> None:
    samples = [e for e in read_events(FIXTURE_LOG) if isinstance(e, Sample)]
    app = SamplesApp([samples])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        texts = group_texts(app)
        assert list(texts) == [40, 20, 0]
        assert "(again)" in texts[40] and "<?>" in texts[40]
        assert "empty" in texts[20]


async def test_keyboard_scrolls_and_clear_empties() -> None:
    many = [Sample(i, f"prompt {p}", f"answer {p} at {i} " * 3) for i in range(0, 600, 20) for p in range(3)]
    app = SamplesApp([many])
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(SamplesPane)
        while pane._pending:
            await pilot.pause(0.05)
        assert list(group_texts(app)) == list(range(580, -1, -20))
        assert pane.has_focus and pane.scroll_y == 0
        await pilot.press("pagedown", "down")
        assert pane.scroll_y > 20
        await pilot.press("pageup", "up")
        assert pane.scroll_y == 0
        pane.clear()
        await pilot.pause()
        assert not group_texts(app) and pane.sample_count == 0
        assert placeholder_shown(pane)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_snapshot(snap_compare, size) -> None:
    assert snap_compare(SamplesApp([SAMPLES[:3], SAMPLES[3:]]), terminal_size=size)


def cut_log(tmp_path) -> list[Sample]:
    """The samples of the real epoch-based log cut inside its last `Sample output:` block (a killed trainer)."""
    text = (FIXTURES / "xtuner-0.2.0-cpu-epochs.log").read_text(encoding="utf-8")
    cut = tmp_path / "cut.log"
    cut.write_text(text[: text.rindex("叫是模的1是")] + "叫是模", encoding="utf-8")
    return [e for e in read_events(cut) if isinstance(e, Sample)]


async def test_a_cut_off_answer_is_shown_as_cut_not_as_an_answer(tmp_path) -> None:
    samples = cut_log(tmp_path)
    assert not samples[-1].complete and samples[-1].iter == 44
    resumed = Sample(44, "你是谁", "叫是模的模型assist是小明的小助手")  # the next evaluation, after a resume
    app = SamplesApp([samples, [resumed]])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = group_texts(app)[44]
        assert text.count("cut off: the log ends inside it") == 1
        assert "叫是模…" in text and "(empty)" not in text and " empty " not in text
        assert "identical" not in text and "shorter" not in text
        pane = app.query_one(SamplesPane)
        last = pane._groups[44]._blocks[-1][0]  # the resumed answer, diffed against iteration 42's, not the cut one
        assert "".join(styled_pieces(last, INSERTED)) == "的小助手"


async def test_a_cut_off_header_with_no_text_yet_is_not_an_empty_answer() -> None:
    app = SamplesApp([[Sample(7, "", "", complete=False)]])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = group_texts(app)[7]
        assert "(nothing yet)" in text and "cut off" in text and "empty" not in text


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_snapshot_cut_off(snap_compare, size, tmp_path) -> None:
    assert snap_compare(SamplesApp([cut_log(tmp_path)]), terminal_size=size)


async def test_a_long_history_shows_its_newest_screenful_first_and_the_rest_after() -> None:
    history = [Sample(it, prompt, f"{prompt} answer at {it}", "11/28 14:00:10") for it in range(10, 3001, 10)
               for prompt in (INTRO, WHO)]  # fmt: skip
    app = SamplesApp()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(SamplesPane)
        pane.add_samples(history)
        first = list(pane._groups)
        assert first[0] == 3000 and 3 <= len(first) < 30  # a screenful and some, not 300 groups in one go
        assert "iter 3000" in pane.render_line(0).text
        await until(pilot, lambda: not pane._pending)
        assert list(group_texts(app))[:2] == [3000, 2990] and len(group_texts(app)) == 300
