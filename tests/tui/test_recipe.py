"""The New fine-tune screen: each step's state read from real files of a project folder, and a key opening each step."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from textual.widgets import Input, OptionList, Select, Static

from engine.xtuner.configs import copy_builtin, edit_settings
from tests.support.fakes import NoGpus, fixture_run
from tests.support.waiting import until
from tui.app import XtuiApp
from tui.screens.recipe import RecipeScreen, StepState, read_recipe

pytestmark = pytest.mark.anyio
ROW = {"conversation": [{"input": "你是谁", "output": "我是小测的小助手"}]}
SNAP_ROOT = Path("/tmp/xtui-snapshot-recipe")  # fixed: paths show on screen


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from engine.demo.build import build_demo

    return build_demo(tmp_path_factory.mktemp("demo"), name="小测", cuda=False)


def broken_project(root: Path) -> Path:
    """A project part-way through the recipe, with mistakes: data bad at record 3, a config whose map_fn does not
    read it, a finished run, no converted model, a merged one."""
    (root / "data").mkdir(parents=True)
    lines = [json.dumps(ROW, ensure_ascii=False)] * 2 + ['{"conversation": [{"input": "a", "output": ']
    (root / "data" / "self.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    copied = copy_builtin("internlm2_chat_1_8b_qlora_alpaca_e3", root)
    source = edit_settings(copied.read_text(encoding="utf-8"), {"alpaca_en_path": "'./data/self.jsonl'"})
    (root / "config.py").write_text(source, encoding="utf-8")
    copied.unlink()
    fixture_run(root, "work_dirs/x")
    (root / "work_dirs" / "x" / "iter_100.pth").write_bytes(b"")
    (root / "merged").mkdir()
    (root / "merged" / "config.json").write_text("{}")
    (root / "merged" / "model.safetensors").write_bytes(b"")
    return root


def _app(root: Path) -> XtuiApp:
    return XtuiApp(roots=[root], gpu_backend=NoGpus(), poll_s=0.1)


def test_each_step_reads_its_state_from_the_files(tmp_path) -> None:
    project = broken_project(tmp_path)
    steps = {s.name: s for s in read_recipe(project).steps}
    assert [s.key for s in steps.values()] == ["1", "2", "3", "4", "5", "6"]
    assert steps["Dataset"].state == StepState.FAILED
    assert steps["Dataset"].why.startswith("data/self.jsonl: record 3 (line 3) is not JSON")
    assert steps["Config"].state == StepState.FAILED and steps["Config"].why.startswith("config.py: bad dataset")
    assert "dataset_map_fn=alpaca_map_fn" in steps["Config"].why
    assert steps["Train"].state == StepState.DONE and steps["Train"].why.startswith("work_dirs/x: finished at iter ")
    assert steps["Convert"].state == StepState.PENDING
    assert steps["Convert"].why == "no hf/ folder yet: xtui convert work_dirs/x --out hf"
    assert steps["Merge"].state == StepState.DONE and steps["Merge"].found == project / "merged"
    assert steps["Chat"].why == "ready: chat with merged"


def test_a_merge_made_from_the_run_view_is_the_recipes_merge(tmp_path) -> None:
    project = broken_project(tmp_path)
    shutil.rmtree(project / "merged")
    assert next(s for s in read_recipe(project).steps if s.name == "Merge").state == StepState.PENDING
    made = project / "work_dirs" / "x" / "iter_40_merged"  # where the run view's `m` job writes
    made.mkdir()
    (made / "config.json").write_text("{}")
    (made / "model.safetensors").write_bytes(b"")
    merge = next(s for s in read_recipe(project).steps if s.name == "Merge")
    assert merge.state == StepState.DONE and merge.found == made


def test_an_empty_folder_is_all_pending_and_a_good_project_is_done(tmp_path, demo) -> None:
    assert {s.state for s in read_recipe(tmp_path).steps} == {StepState.PENDING}
    steps = read_recipe(demo.folder).steps
    assert (
        steps[0].state == StepState.DONE
        and steps[0].why == "data/self_cognition.jsonl: 240 records, conversation format"
    )
    assert (
        steps[1].state == StepState.DONE
        and steps[1].why == "config.py: tiny-llama, template internlm2_chat, max_length 128"
    )
    assert steps[2].why == "no run yet: launch the config"


async def test_keys_open_each_step_with_the_projects_files(demo) -> None:
    from tui.dialogs.chat_setup import ChatSetupScreen
    from tui.dialogs.launch import LaunchScreen
    from tui.screens.config_form import ConfigFormScreen
    from tui.screens.data_check import DataScreen

    app = _app(demo.folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f")  # from the dashboard
        await until(pilot, lambda: isinstance(app.screen, RecipeScreen) and app.screen.recipe is not None)
        recipe = app.screen
        assert recipe.query_one("#steps", OptionList).highlighted == 2  # the first step not done: train
        await pilot.press("3")
        await until(pilot, lambda: isinstance(app.screen, LaunchScreen))
        await until(pilot, lambda: app.screen.query_one("#config", Input).value == "config.py")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is recipe)
        await pilot.press("1")
        await until(pilot, lambda: isinstance(app.screen, DataScreen))
        assert app.screen.query_one("#data", Input).value == "data/self_cognition.jsonl"
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is recipe)
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, ConfigFormScreen))
        assert app.screen.config == demo.config
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is recipe)
        await pilot.press("6")
        await until(pilot, lambda: isinstance(app.screen, ChatSetupScreen))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is recipe)
        await pilot.press("4")
        await until(
            pilot,
            lambda: "nothing to convert yet: train first" in str(recipe.query_one("#recipe-note", Static).render()),
        )


async def test_another_folder_typed_is_read_and_a_missing_config_offers_the_built_ins(tmp_path, demo) -> None:
    from tui.screens.config_form import CopyConfigScreen

    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(RecipeScreen(tmp_path))
        await until(pilot, lambda: isinstance(app.screen, RecipeScreen) and app.screen.recipe is not None)
        screen = app.screen
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, CopyConfigScreen))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)
        await pilot.press("p")
        field = screen.query_one("#project", Input)
        field.value = str(tmp_path / "nowhere")
        await pilot.press("enter")
        await until(pilot, lambda: "no such folder" in str(screen.query_one("#recipe-note", Static).render()))
        field.value = str(demo.folder)
        await pilot.press("enter")
        await until(pilot, lambda: screen.recipe.project == demo.folder.resolve())
        assert screen.recipe.steps[1].state == StepState.DONE


async def test_the_palette_offers_it(tmp_path) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        commands["New fine-tune"].callback()
        await until(pilot, lambda: isinstance(app.screen, RecipeScreen))
        assert app.screen.project == tmp_path.resolve()


@pytest.fixture
def snap_project() -> Path:
    shutil.rmtree(SNAP_ROOT, ignore_errors=True)
    yield broken_project(SNAP_ROOT)
    shutil.rmtree(SNAP_ROOT, ignore_errors=True)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_snapshot(snap_compare, size, snap_project) -> None:
    app = _app(SNAP_ROOT)

    async def opened(pilot) -> None:
        app.push_screen(RecipeScreen(SNAP_ROOT))
        await until(pilot, lambda: isinstance(app.screen, RecipeScreen) and app.screen.recipe is not None)
        app.screen.query_one("#project", Input).cursor_blink = False
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=opened)


async def test_the_recipe_through_a_copied_built_in_config_and_new_data(tmp_path) -> None:
    from tui.screens.config_form import ConfigFormScreen, CopyConfigScreen, DiffScreen
    from tui.screens.data_check import DataScreen

    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(RecipeScreen(tmp_path))
        await until(pilot, lambda: isinstance(app.screen, RecipeScreen) and app.screen.recipe is not None)
        recipe = app.screen
        state = lambda n: recipe.recipe.steps[n].state  # noqa: E731
        await pilot.press("1")
        await until(pilot, lambda: isinstance(app.screen, DataScreen))
        await pilot.press(*"小测", "ctrl+s")
        await until(pilot, lambda: "✓ wrote" in str(app.screen.query_one("#new-note", Static).render()))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is recipe and state(0) == StepState.DONE)
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, CopyConfigScreen))
        await pilot.press(*"internlm2_chat_1_8b_qlora_alpaca_e3", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfigFormScreen))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is recipe and recipe.recipe.config is not None)
        assert (
            state(1) == StepState.PENDING and "trains on tatsu-lab/alpaca, not data.json" in recipe.recipe.steps[1].why
        )
        for field, value, map_fn in (("alpaca_en_path", "./data.json", None), (None, None, "None")):
            await pilot.press("2")
            await until(pilot, lambda: isinstance(app.screen, ConfigFormScreen))
            if field:
                app.screen.query_one(f"#f-{field}", Input).value = value
            if map_fn:
                app.screen.query_one("#f-dataset_map_fn").value = map_fn
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, DiffScreen))
            await pilot.press("y")
            await until(pilot, lambda: "wrote" in str(app.screen.query_one("#form-note", Static).render()))
            await pilot.press("escape")
            await until(pilot, lambda: app.screen is recipe)
            await pilot.pause(0.5)
            await until(pilot, lambda: "reading" not in str(recipe.query_one("#recipe-note", Static).render()))
            if field:  # the data is the conversation format; the copied config reads alpaca
                assert state(1) == StepState.FAILED and "dataset_map_fn=alpaca_map_fn" in recipe.recipe.steps[1].why
        assert state(1) == StepState.DONE, recipe.recipe.steps[1].why


async def test_a_config_that_is_not_python_fails_its_step_and_the_form_says_why(tmp_path) -> None:
    (tmp_path / "config.py").write_text("pretrained_model_name_or_path = 'x'\nmax_length = (\n", encoding="utf-8")
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(RecipeScreen(tmp_path))
        await until(pilot, lambda: isinstance(app.screen, RecipeScreen) and app.screen.recipe is not None)
        screen = app.screen
        assert screen.recipe.steps[1].state == StepState.FAILED and "not valid Python" in screen.recipe.steps[1].why
        await pilot.press("2")
        await until(pilot, lambda: "✗ not valid Python" in str(screen.query_one("#recipe-note", Static).render()))
        assert app.screen is screen


async def _chat_step(pilot, app, project: Path) -> RecipeScreen:
    """Open the recipe on `project`, then its chat step (6): the recipe screen, with the chat form on top."""
    from tui.dialogs.chat_setup import ChatSetupScreen

    app.push_screen(RecipeScreen(project))
    await until(pilot, lambda: isinstance(app.screen, RecipeScreen) and app.screen.recipe is not None)
    recipe = app.screen
    await pilot.press("6")
    await until(pilot, lambda: isinstance(app.screen, ChatSetupScreen))
    return recipe


async def _chat_step_offers(pilot, app, project: Path, model: str, kind: str) -> RecipeScreen:
    """Open the chat step, check the model and kind its form starts with, close it: the recipe screen again."""
    recipe = await _chat_step(pilot, app, project)
    await until(pilot, lambda: app.screen.query_one("#model", Input).value == model)
    assert app.screen.query_one("#kind", Select).value == kind
    await pilot.press("escape")
    await until(pilot, lambda: app.screen is recipe)
    return recipe


async def test_chat_opens_on_what_the_recipe_made(tmp_path) -> None:
    from tui.dialogs.chat_setup import ChatSetupScreen

    project = broken_project(tmp_path)
    app = _app(project)
    async with app.run_test(size=(80, 24)) as pilot:
        recipe = await _chat_step_offers(pilot, app, project, "merged", "merged")
        shutil.rmtree(project / "merged")
        (project / "hf").mkdir()
        (project / "hf" / "adapter_config.json").write_text("{}")
        await pilot.press("r")
        await until(pilot, lambda: recipe.recipe.steps[3].state == StepState.DONE)
        await pilot.press("6")
        await until(pilot, lambda: isinstance(app.screen, ChatSetupScreen))
        await until(pilot, lambda: app.screen.query_one("#adapter", Input).value == "hf")
        assert app.screen.query_one("#kind", Select).value == "adapter"
        assert app.screen.query_one("#template", Select).value == "internlm2_chat"


async def test_f1_opens_help_on_every_step_whose_first_focus_is_an_input_and_esc_closes_only_the_help(demo) -> None:
    from tui.dialogs.help import HelpScreen
    from tui.widgets.key_bar import KeyBar

    app = _app(demo.folder)
    async with app.run_test(size=(80, 24)) as pilot:
        app.action_new_fine_tune()
        await until(pilot, lambda: isinstance(app.screen, RecipeScreen) and app.screen.recipe is not None)
        recipe = app.screen
        for key in ("1", "2", "3"):
            await pilot.press(key)
            await until(pilot, lambda: app.screen is not recipe and isinstance(app.focused, Input))
            step, field = app.screen, app.focused
            before = field.value
            bar = step.query(KeyBar)
            hints = " ".join(str(w.render()) for w in step.query(Static) if w.display)
            assert " f1 Help " in bar.first().render().plain if bar else "f1 help" in hints, key  # a modal has none
            await pilot.press("f1")
            await until(pilot, lambda: isinstance(app.screen, HelpScreen))
            await pilot.press("escape")
            await until(pilot, lambda step=step: app.screen is step)
            assert app.focused is field and field.value == before  # the step and its fields kept
            await pilot.press("escape")
            await until(pilot, lambda: app.screen is recipe)
        await pilot.press("question_mark")  # no Input focused: ? still opens it
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("f1")  # and f1 closes it
        await until(pilot, lambda: app.screen is recipe)


async def test_a_run_with_no_checkpoint_is_not_ready_to_chat_and_the_form_opens_on_the_base_model(tmp_path) -> None:
    project = broken_project(tmp_path)
    shutil.rmtree(project / "merged")
    (project / "work_dirs" / "x" / "iter_100.pth").unlink()  # failed, or before its first save
    steps = {s.name: s for s in read_recipe(project).steps}
    assert steps["Convert"].why == "work_dirs/x: no checkpoint yet to convert" and "xtui" not in steps["Convert"].why
    assert steps["Chat"].why.startswith("work_dirs/x: no checkpoint yet") and steps["Chat"].found is None
    app = _app(project)
    async with app.run_test(size=(80, 24)) as pilot:
        recipe = await _chat_step_offers(pilot, app, project, "internlm/internlm2-chat-1_8b", "base")
        (project / "work_dirs" / "x" / "iter_100.pth").write_bytes(b"")  # its first save
        await pilot.press("r")
        await until(pilot, lambda: recipe.recipe.steps[5].why == "ready: chat with work_dirs/x")
        assert recipe.recipe.steps[3].why == "no hf/ folder yet: xtui convert work_dirs/x --out hf"


async def test_the_train_step_follows_a_running_run_on_the_apps_beat(tmp_path) -> None:
    from tests.support.fakes import FIXTURE_LOG

    lines = FIXTURE_LOG.read_text(encoding="utf-8").splitlines(keepends=True)
    log = tmp_path / "work" / "20261128_135200" / "20261128_135200.log"
    log.parent.mkdir(parents=True)
    cut = next(i for i, line in enumerate(lines) if "Iter(train) [10/" in line) + 1
    log.write_text("".join(lines[:cut]), encoding="utf-8")  # training: at iter 10
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(RecipeScreen(tmp_path))
        await until(pilot, lambda: isinstance(app.screen, RecipeScreen) and app.screen.recipe is not None)
        recipe = app.screen
        await until(pilot, lambda: recipe.recipe.steps[2].why == "work: stopped at iter 10/40")  # no process here
        with log.open("a", encoding="utf-8") as out:
            out.write("".join(lines[cut:]))  # it trains on and finishes; no r pressed
        await until(pilot, lambda: recipe.recipe.steps[2].why.startswith("work: finished at iter "))
        assert recipe.recipe.steps[2].state == StepState.DONE
