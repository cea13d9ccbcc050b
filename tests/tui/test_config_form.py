"""The config form on real copies of XTuner's built-in configs: typed edits, checks, the diff, mmengine loading the result."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from textual.widgets import Input, Select, Static

from engine.xtuner.configs import copy_builtin
from tests.support.fakes import NoGpus
from tests.support.waiting import until
from tui.app import XtuiApp
from tui.screens.config_form import ConfigFormScreen, CopyConfigScreen, DiffScreen

pytestmark = pytest.mark.anyio
SEED = "internlm2_chat_1_8b_qlora_alpaca_e3"
SNAP_ROOT = Path("/tmp/xtui-snapshot-config")  # fixed: the path shows on screen


def _app(root: Path) -> XtuiApp:
    return XtuiApp(roots=[root], gpu_backend=NoGpus(), poll_s=0.1)


async def _type(pilot, field: Input, text: str) -> None:
    """Empty a field and type into it, key by key."""
    field.focus()
    await pilot.pause()
    field.clear()
    await pilot.press(*text)


def _shown(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def _load(config: Path, cwd: Path):
    from mmengine.config import Config

    here = os.getcwd()
    os.chdir(cwd)
    try:
        return Config.fromfile(str(config))
    finally:
        os.chdir(here)


async def _open_form(pilot, app, config: Path, folder: Path) -> ConfigFormScreen:
    """The config form on `config`, once it is the screen."""
    app.push_screen(ConfigFormScreen(config, folder))
    await until(pilot, lambda: isinstance(app.screen, ConfigFormScreen))
    return app.screen


async def test_typed_edits_are_checked_shown_as_a_diff_and_written_keeping_the_rest(tmp_path) -> None:
    config = copy_builtin(SEED, tmp_path)
    (tmp_path / "data.json").write_text(json.dumps([{"instruction": "q", "input": "", "output": "a"}]))
    before = config.read_text(encoding="utf-8")
    app = _app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        form = await _open_form(pilot, app, config, tmp_path)
        await _type(pilot, form.query_one("#f-max_length", Input), "0")
        await until(pilot, lambda: "at least 1" in _shown(app, "#p-max_length"))
        await pilot.press("ctrl+s")  # a wrong value: no diff, the form says why
        await until(pilot, lambda: "max_length must be" in _shown(app, "#form-note"))
        assert isinstance(app.screen, ConfigFormScreen) and config.read_text(encoding="utf-8") == before

        await _type(pilot, form.query_one("#f-max_length", Input), "1024")
        await _type(pilot, form.query_one("#f-alpaca_en_path", Input), "./missing.json")
        await until(pilot, lambda: "no such file" in _shown(app, "#p-alpaca_en_path"))
        await _type(pilot, form.query_one("#f-alpaca_en_path", Input), "./data.json")
        await _type(pilot, form.query_one("#f-SYSTEM", Input), "你是小助手")
        await _type(pilot, form.query_one("#f-evaluation_inputs", Input), '["你是谁", "你好"]')
        form.query_one("#f-prompt_template", Select).value = "qwen_chat"
        form.query_one("#f-dataset_map_fn", Select).value = "None"
        await until(pilot, lambda: not form.query_one("#p-alpaca_en_path").display)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, DiffScreen))
        diff = app.screen.diff
        assert "-max_length = 2048\n" in diff and "+max_length = 1024\n" in diff
        assert "+prompt_template = PROMPT_TEMPLATE.qwen_chat\n" in diff and "dataset_map_fn=None" in diff
        assert config.read_text(encoding="utf-8") == before  # shown, not written yet
        await pilot.press("y")
        await until(pilot, lambda: "wrote" in _shown(app, "#form-note"))
    after = config.read_text(encoding="utf-8")
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert [a.split("=")[0].strip() for a, _ in changed] == [
        "alpaca_en_path", "prompt_template", "max_length", "SYSTEM", "evaluation_inputs", "dataset_map_fn",
    ]  # fmt: skip
    assert all(b.startswith(a[: len(a) - len(a.lstrip())]) for a, b in changed)  # indentation kept
    cfg = _load(config, tmp_path)
    assert cfg.max_length == 1024 and cfg.alpaca_en_path == "./data.json" and cfg.SYSTEM == "你是小助手"
    assert cfg.evaluation_inputs == ["你是谁", "你好"] and cfg.alpaca_en.dataset_map_fn is None
    assert "<|im_start|>" in cfg.prompt_template["INSTRUCTION"]


async def test_back_from_the_diff_writes_nothing_and_a_map_fn_missing_is_imported(tmp_path) -> None:
    config = copy_builtin(SEED, tmp_path)
    before = config.read_text(encoding="utf-8")
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_form(pilot, app, config, tmp_path)
        app.screen.query_one("#f-dataset_map_fn", Select).value = "openai_map_fn"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, DiffScreen))
        assert "+from xtuner.dataset.map_fns import openai_map_fn\n" in app.screen.diff
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ConfigFormScreen))
        assert config.read_text(encoding="utf-8") == before
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, DiffScreen))
        await pilot.press("y")
        await until(pilot, lambda: "wrote" in _shown(app, "#form-note"))
        form = app.screen
        await _type(pilot, form.query_one("#f-max_epochs", Input), "5")
        await pilot.press("escape")  # an unsaved change: said, the form stays
        await until(pilot, lambda: "unsaved changes" in _shown(app, "#form-note"))
        assert app.screen is form
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is not form)
    assert _load(config, tmp_path).alpaca_en.dataset_map_fn.__name__ == "openai_map_fn"
    assert "max_epochs = 3\n" in config.read_text(encoding="utf-8")


EVIL = """import os
open({marker!r}, "w").write("ran")
os.system("touch {marker}")
from xtuner.utils import PROMPT_TEMPLATE
#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Model
pretrained_model_name_or_path = "internlm/internlm2-chat-1_8b"
# Data
data_path = "./data.json"
prompt_template = PROMPT_TEMPLATE.internlm2_chat
max_length = 512
save_steps = 100000
evaluation_inputs = []
#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
train_dataset = dict(
    type=process_hf_dataset,
    dataset=dict(type=load_dataset, path="json", data_files=dict(train=data_path)),
    dataset_map_fn=None,
    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
)
custom_hooks = [dict(type=EvaluateChatHook, evaluation_inputs=evaluation_inputs, prompt_template=prompt_template)]
"""


async def test_a_config_that_writes_a_file_when_run_is_shown_advised_and_edited_without_it(tmp_path) -> None:
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.py"
    config.write_text(EVIL.format(marker=str(marker)), encoding="utf-8")
    (tmp_path / "data.json").write_text(json.dumps([{"conversation": [{"input": "你是谁", "output": "我"}]}]))
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_form(pilot, app, config, tmp_path)
        await until(pilot, lambda: "save_steps=100000 is more than the whole run" in _shown(app, "#advice"))
        assert "evaluation_inputs is empty" in _shown(app, "#advice")
        assert "not in the local Hugging Face cache" in _shown(app, "#advice")  # no tokenizer: said, not raised
        await _type(pilot, app.screen.query_one("#f-max_length", Input), "1024")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, DiffScreen))
        await pilot.press("y")
        await until(pilot, lambda: "wrote" in _shown(app, "#form-note"))
    assert not marker.exists()
    assert config.read_text(encoding="utf-8") == EVIL.format(marker=str(marker)).replace("512", "1024")


async def test_copy_a_built_in_filtered_by_name_never_over_an_existing_one(tmp_path) -> None:
    app = _app(tmp_path)
    copied: list = []
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(CopyConfigScreen(tmp_path), copied.append)
        await until(pilot, lambda: isinstance(app.screen, CopyConfigScreen))
        await pilot.press(*SEED)
        await pilot.press("enter")
        await until(pilot, lambda: copied)
        assert copied == [tmp_path / f"{SEED}_copy.py"] and copied[0].is_file()
        app.push_screen(CopyConfigScreen(tmp_path), copied.append)
        await until(pilot, lambda: isinstance(app.screen, CopyConfigScreen))
        await pilot.press(*SEED, "enter")
        await until(pilot, lambda: "exists" in _shown(app, "#copy-note"))
        assert isinstance(app.screen, CopyConfigScreen) and len(copied) == 1


@pytest.fixture
def snap_config() -> Path:
    shutil.rmtree(SNAP_ROOT, ignore_errors=True)
    SNAP_ROOT.mkdir()
    yield copy_builtin(SEED, SNAP_ROOT)
    shutil.rmtree(SNAP_ROOT, ignore_errors=True)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_snapshot(snap_compare, size, snap_config) -> None:
    app = _app(SNAP_ROOT)

    async def opened(pilot) -> None:
        app.push_screen(ConfigFormScreen(snap_config, SNAP_ROOT))
        await until(pilot, lambda: "run:" in _shown(app, "#advice") or "data" in _shown(app, "#advice"))
        for field in app.screen.query(Input):
            field.cursor_blink = False
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=opened)


async def test_a_llava_config_offers_its_visual_encoder_and_pretrained_pth_checked_as_paths(tmp_path) -> None:
    from engine.xtuner.configs import list_builtin

    name = next(n for n in list_builtin("llava_internlm2_chat_1_8b") if n.endswith("_finetune"))
    config = copy_builtin(name, tmp_path)
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await _open_form(pilot, app, config, tmp_path)
        assert form.names[:3] == ["llm_name_or_path", "visual_encoder_name_or_path", "pretrained_pth"]
        assert {"data_root", "data_path", "image_folder"} <= set(form.names)
        assert form.query_one("#f-max_length", Input).value == "int(2048 - (336 / 14) ** 2)"
        await _type(pilot, form.query_one("#f-pretrained_pth", Input), "./no/projector.pth")
        await until(pilot, lambda: "no such file or folder" in _shown(app, "#p-pretrained_pth"))
        (tmp_path / "clip").mkdir()
        await _type(pilot, form.query_one("#f-visual_encoder_name_or_path", Input), "./clip")
        await until(pilot, lambda: not form.query_one("#p-visual_encoder_name_or_path").display)


async def test_a_long_diff_scrolls_inside_its_dialog_with_the_buttons_and_keys_in_view_at_80x24(tmp_path) -> None:
    config = copy_builtin(SEED, tmp_path)
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await _open_form(pilot, app, config, tmp_path)
        for name, value in [("max_length", "256"), ("lr", "1e-4"), ("max_epochs", "5"), ("batch_size", "2")]:
            await _type(pilot, form.query_one(f"#f-{name}", Input), value)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, DiffScreen))
        await pilot.pause(0.2)
        box = app.screen.query_one("#diff-dialog").region
        assert box.bottom <= 24
        for button in ("#back", "#write"):
            region = app.screen.query_one(button).region
            assert region.height and box.contains_region(region), button
        assert "y write" in _shown(app, "#diff-keys") and "esc back" in _shown(app, "#diff-keys")
        dialog = app.screen.query_one("#diff-dialog")
        assert dialog.max_scroll_y > 0 and dialog.scroll_y == 0
        await pilot.press("pagedown")  # the diff scrolls, the buttons stay
        await until(pilot, lambda: dialog.scroll_y > 0)
        assert box.contains_region(app.screen.query_one("#write").region)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from engine.demo.build import build_demo

    return build_demo(tmp_path_factory.mktemp("demo"), name="小测", cuda=False)


async def test_advice_runs_on_the_forms_values_says_so_and_counts_the_checkpoints_kept(demo) -> None:
    config = demo.config
    before = config.read_text(encoding="utf-8")
    app = _app(demo.folder)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(ConfigFormScreen(config, demo.folder))
        await until(pilot, lambda: "run: " in _shown(app, "#advice"), timeout=120)
        saved = _shown(app, "#advice")
        assert "on: config.py as saved" in saved
        run = saved.split("run: ")[1]
        form = app.screen
        await _type(pilot, form.query_one("#f-max_length", Input), "256")
        await _type(pilot, form.query_one("#f-save_steps", Input), "5")
        await pilot.press("ctrl+r")
        await until(pilot, lambda: "not saved yet" in _shown(app, "#advice") and "run: " in _shown(app, "#advice"))
        edited = _shown(app, "#advice").split("run: ")[1]
        assert edited != run and "save_steps=5: " in edited  # the packed samples of 256 tokens, not the file's 128
        assert " saved, 2 kept" in edited  # save_total_limit = 2
        assert config.read_text(encoding="utf-8") == before  # advised, not written
    assert not list(config.parent.glob(".xtui-advice-*"))
