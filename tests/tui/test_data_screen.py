"""The dataset screen on real files: broken datasets named by record, a config's tokens and previews, the recipe's data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from tests.support.fakes import NoGpus
from tests.support.waiting import until
from tui.app import XtuiApp
from tui.screens.data_check import DataScreen, ReplaceScreen

pytestmark = pytest.mark.anyio
ROW = {"conversation": [{"input": "你是谁", "output": "我是小测的小助手"}]}
SNAP_ROOT = Path("/tmp/xtui-snapshot-data")  # fixed: paths show on screen


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from engine.demo.build import build_demo

    return build_demo(tmp_path_factory.mktemp("demo"), name="小测", cuda=False)


def _app(root: Path) -> XtuiApp:
    return XtuiApp(roots=[root], gpu_backend=NoGpus(), poll_s=0.1)


def _text(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def _checked(pilot, app, data: Path, config: Path | None = None) -> tuple[str, str]:
    """Open the screen on `data` (and `config`), wait for the check; (the note, the result)."""
    app.push_screen(DataScreen(data.parent, data, config))
    await until(pilot, lambda: isinstance(app.screen, DataScreen))
    await until(pilot, lambda: _text(app, "#check-note").startswith(("✓", "✗")), timeout=120)
    return _text(app, "#check-note"), _text(app, "#check-text")


async def test_broken_datasets_give_the_record_and_line(tmp_path) -> None:
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text(json.dumps(ROW) + "\n" + json.dumps(ROW) + "\n\n" + '{"conversation": [\n', encoding="utf-8")
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps([ROW, ROW, {"conversation": [{"input": "a"}]}], ensure_ascii=False), encoding="utf-8")
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        note, text = await _checked(pilot, app, bad_json)
        assert note.startswith("✗ has problems") and "record 3 (line 4) is not JSON" in text
        assert "the rest of the file was not checked" in text and "Traceback" not in text
        app.pop_screen()
        note, text = await _checked(pilot, app, missing)
        assert "record 3 (line " in text and "conversation[0].output is missing" in text
        assert "3 records, 2 turns, conversation format (needs dataset_map_fn=None)" in text


async def test_a_format_the_configs_map_fn_does_not_read_and_a_tokenizer_that_cannot_load(tmp_path) -> None:
    from engine.xtuner.configs import copy_builtin

    config = copy_builtin("internlm2_chat_1_8b_qlora_alpaca_e3", tmp_path)  # alpaca_map_fn, a model not here
    data = tmp_path / "self.json"
    data.write_text(json.dumps([ROW, ROW], ensure_ascii=False), encoding="utf-8")
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        note, text = await _checked(pilot, app, data, config)
    assert note.startswith("✗") and "sets dataset_map_fn=alpaca_map_fn: does not read it" in text
    assert (
        "tokens: not counted: the tokenizer of internlm/internlm2-chat-1_8b is not in the local Hugging Face cache"
        in text
    )


async def test_tokens_histogram_and_a_record_rendered_through_the_template(demo) -> None:
    app = _app(demo.folder)
    async with app.run_test(size=(120, 40)) as pilot:
        note, text = await _checked(pilot, app, demo.data, demo.config)
    assert note.startswith("✓ fine") and "sets dataset_map_fn=None: reads it" in text
    assert "template internlm2_chat, max_length 128" in text and "none longer than max_length" in text
    assert "█" in text and "<|im_start|>user" in text and "⟦我是小测的小助手" in text


async def test_a_short_max_length_counts_the_records_it_cuts(demo, tmp_path) -> None:
    from engine.xtuner.configs import edit_settings

    config = tmp_path / "short.py"
    config.write_text(edit_settings(demo.config.read_text(encoding="utf-8"), {"max_length": "47"}), encoding="utf-8")
    app = _app(demo.folder)
    async with app.run_test(size=(80, 24)) as pilot:
        _, text = await _checked(pilot, app, demo.data, config)
    assert "200 longer than max_length: cut, their ends are not learnt (records 2, 3, 4," in text
    assert "48-52 ██" in text and "200  cut" in text


async def test_new_self_cognition_data_never_replaces_a_file_without_asking(tmp_path) -> None:
    out = tmp_path / "data.json"
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(DataScreen(tmp_path))
        await until(pilot, lambda: isinstance(app.screen, DataScreen))
        screen = app.screen
        assert screen.query_one("#out", Input).value == "data.json"
        await pilot.press(*"小测")
        screen.query_one("#owner", Input).value = "浦语"
        screen.query_one("#repeat", Input).value = "2"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "✓ wrote" in _text(app, "#new-note"))
        assert "24 records" in _text(app, "#new-note") and len(json.loads(out.read_text(encoding="utf-8"))) == 24
        assert screen.query_one("#data", Input).value == "data.json"
        screen.query_one("#repeat", Input).value = "1"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ReplaceScreen))
        await pilot.press("enter")  # "Keep it" has the focus
        await until(pilot, lambda: isinstance(app.screen, DataScreen))
        assert len(json.loads(out.read_text(encoding="utf-8"))) == 24
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ReplaceScreen))
        await pilot.press("y")
        await until(pilot, lambda: "12 records" in _text(app, "#new-note"))
        assert len(json.loads(out.read_text(encoding="utf-8"))) == 12
        await pilot.press("ctrl+r")
        await until(pilot, lambda: _text(app, "#check-note").startswith("✓ fine"))
        assert "12 records, 12 turns, conversation format" in _text(app, "#check-text")
        screen.query_one("#name", Input).value = ""
        await pilot.press("ctrl+s")  # no name: said at once, before any question about replacing the file
        await until(pilot, lambda: "needs a name" in _text(app, "#new-note"))
        assert isinstance(app.screen, DataScreen) and len(json.loads(out.read_text(encoding="utf-8"))) == 12


@pytest.fixture
def snap_data() -> Path:
    shutil.rmtree(SNAP_ROOT, ignore_errors=True)
    SNAP_ROOT.mkdir()
    data = SNAP_ROOT / "data.jsonl"
    rows = [ROW] * 4 + [{"conversation": [{"input": "a"}]}, {"instruction": "x", "output": "y"}]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    yield data
    shutil.rmtree(SNAP_ROOT, ignore_errors=True)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_snapshot_check(snap_compare, size, snap_data) -> None:
    app = _app(SNAP_ROOT)

    async def opened(pilot) -> None:
        app.push_screen(DataScreen(SNAP_ROOT, snap_data))
        await until(pilot, lambda: _text(app, "#check-note").startswith("✗"))
        for field in app.screen.query(Input):
            field.cursor_blink = False
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=opened)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_snapshot_new(snap_compare, size, snap_data) -> None:
    app = _app(SNAP_ROOT)

    async def opened(pilot) -> None:
        app.push_screen(DataScreen(SNAP_ROOT))
        await until(pilot, lambda: isinstance(app.screen, DataScreen))
        for field in app.screen.query(Input):
            field.cursor_blink = False
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=opened)


def test_two_checks_loading_tokenizers_at_once_do_not_break_transformers_import(tmp_path) -> None:
    import subprocess
    import sys

    script = f"""
import threading
from engine.xtuner.configs import ConfigError
from engine.xtuner.token_lengths import load_tokenizer
found = []
def load():
    try:
        load_tokenizer({str(tmp_path)!r}, True)
    except ConfigError as exc:
        found.append("ConfigError")
    except Exception as exc:
        found.append(repr(exc))
threads = [threading.Thread(target=load) for _ in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
print(found)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == str(["ConfigError"] * 3), done.stdout + done.stderr


async def test_a_long_check_leaves_the_screen_answering_keys(tmp_path) -> None:
    data = tmp_path / "big.jsonl"
    data.write_text(
        (json.dumps(ROW, ensure_ascii=False) + "\n") * 1_200_000, encoding="utf-8"
    )  # a check of ~10 s on a 2-core box: the keys are answered during it, under load too
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(DataScreen(tmp_path, data))
        await until(pilot, lambda: "checking every record" in _text(app, "#check-note"))
        await pilot.press("ctrl+s")  # the other tab, and its form answering, while every record is read
        await until(pilot, lambda: "needs a name" in _text(app, "#new-note"), timeout=5)
        assert "checking every record" in _text(app, "#check-note")
        await until(pilot, lambda: _text(app, "#check-note").startswith("✓ fine"), timeout=300)
        assert "1200000 records" in _text(app, "#check-text")


async def test_llava_images_are_looked_for_in_the_folder_given(tmp_path) -> None:
    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "a.png")
    turns = [{"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "black"}]
    data = tmp_path / "llava.json"
    rows = [{"image": "a.png", "conversations": turns}, {"image": "b.png", "conversations": turns}]
    data.write_text(json.dumps(rows, indent=1))
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        _, text = await _checked(pilot, app, data)
        assert "record 1 (line 2): image cannot be used: no such file" in text
        app.screen.query_one("#images", Input).value = "images"
        await pilot.press("ctrl+r")
        await until(pilot, lambda: "images: 2 distinct" in _text(app, "#check-text"))
        text = _text(app, "#check-text")
        assert "record 2 (line " in text and "record 1 " not in text


async def test_new_data_the_config_does_not_train_on_is_said_and_one_key_sets_its_data_path(demo, tmp_path) -> None:
    from tui.screens.config_form import DiffScreen
    from tui.screens.recipe import config_data

    project = shutil.copytree(demo.folder, tmp_path / "p")
    config = project / "config.py"
    app = _app(project)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(DataScreen(project, None, config))
        await until(pilot, lambda: isinstance(app.screen, DataScreen) and isinstance(app.focused, Input))
        await pilot.press(*"XiaoZhi")
        await until(pilot, lambda: "我是XiaoZhi的小助手哦" in _text(app, "#answer"))  # tiny-llama: no InternLM2 claim
        assert "1.8B" not in _text(app, "#answer")
        app.screen.query_one("#out", Input).value = "data/assistant.json"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "✓ wrote" in _text(app, "#new-note"))
        note = _text(app, "#new-note")
        assert "the config trains on " in note  # the demo's config names its file by absolute path
        assert "self_cognition.jsonl, not this file: ctrl+g sets its alpaca_en_path to it" in note
        rows = json.loads((project / "data" / "assistant.json").read_text(encoding="utf-8"))
        assert {r["conversation"][0]["output"] for r in rows} == {"我是XiaoZhi的小助手哦"}
        assert config_data(config, project).name == "self_cognition.jsonl"  # not yet
        await pilot.press("ctrl+g")
        await until(pilot, lambda: isinstance(app.screen, DiffScreen))
        assert f"+alpaca_en_path = '{project}/data/assistant.json'" in app.screen.diff
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, DataScreen) and "trains on" in _text(app, "#new-note"))
        assert _text(app, "#new-note").startswith("✓ wrote") and "data/assistant.json now" in _text(app, "#new-note")
    assert config_data(config, project) == project / "data" / "assistant.json"
