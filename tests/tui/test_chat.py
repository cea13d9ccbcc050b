"""The chat screen with real tiny models on the CPU: streaming, cancel, A/B from one load, errors, images."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from PIL import Image
from textual.widgets import Input, Static

from engine.chat.decoding import Sampling
from engine.chat.generation import StopReason
from engine.chat.models import LoadOptions, ModelSource, SourceKind
from engine.chat.session import Exchange
from engine.chat.spec import ChatSpec
from engine.xtuner.templates import Turn
from tests.support.fakes import NoGpus
from tests.support.waiting import until
from tui.app import XtuiApp
from tui.dialogs.chat_setup import ChatSetupScreen
from tui.screens.chat import STATUS_CHARS, ChatScreen
from tui.widgets.chat_column import ChatColumn
from tui.widgets.image_preview import ImagePreview

pytestmark = pytest.mark.anyio
CPU = LoadOptions(device="cpu")
SNAP_ROOT = Path("/tmp/xtui-chat-snapshot")  # fixed: names show on screen


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """The demo's tiny (untrained) model and a random LoRA adapter on it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.demo.build import build_demo

    folder = tmp_path_factory.mktemp("chat")
    model_dir = build_demo(folder).model
    torch.manual_seed(1)
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    adapter = folder / "adapter"
    peft_model.save_pretrained(adapter)
    return {"model": model_dir, "adapter": adapter, "folder": folder}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XTUI_CONFIG", str(tmp_path / "settings.json"))
    monkeypatch.setenv("XTUI_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XTUI_IMAGE_MODE", "halfblock")


def _app(root: Path) -> XtuiApp:
    return XtuiApp(roots=[root], gpu_backend=NoGpus(), poll_s=0.2)


async def _open(app: XtuiApp, pilot, spec: ChatSpec) -> ChatScreen:
    screen = ChatScreen(spec)
    app.push_screen(screen)
    await until(pilot, lambda: screen.is_mounted)
    await until(pilot, lambda: screen.loaded is not None or "cannot load" in _status(screen))
    return screen


def _status(screen: ChatScreen) -> str:
    return str(screen.query_one("#chat-status", Static).render())


def _endless(screen: ChatScreen, tokens: int) -> None:
    """No stop words or EOS: the untrained model answers exactly `tokens` tokens."""
    screen.loaded.eos_ids = lambda: []
    for session in screen.sessions:
        session.sampling = Sampling(temperature=0, max_new_tokens=tokens)
        session.stop_words = lambda: ()


async def _ask(pilot, screen: ChatScreen, text: str, wait: bool = True) -> None:
    screen.query_one("#prompt", Input).value = text
    await pilot.press("enter")
    if wait:
        await until(pilot, lambda: not screen.busy)


async def test_an_answer_streams_into_the_column_and_ends_with_its_figures(tiny) -> None:
    app = _app(tiny["folder"])
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(
            app, pilot, ChatSpec(ModelSource(SourceKind.BASE, model=tiny["model"]), CPU, "internlm2_chat")
        )
        assert "ready" in _status(screen) and "cpu" in _status(screen)
        _endless(screen, 12)
        await _ask(pilot, screen, "你是谁")
        column = screen.query_one(ChatColumn)
        assert [s.render() for s in column.query(".question")][0].plain.startswith("› 你是谁")
        assert column.answer_text
        meta = str(column.query(".meta").last().render())
        assert meta.startswith("12 tokens") and "tok/s" in meta and "cut at max new tokens" in meta
        exchange = screen.sessions[0].exchanges[-1]
        assert exchange.turn.answer == column.answer_text and exchange.tokens == 12


async def test_the_status_line_says_which_decoder_answers_and_when_the_compiled_one_takes_over(tiny) -> None:
    """A switching decoder (eager, then dynamo-compiled once a gate opens): the status line follows it, idle too."""
    import threading

    from engine.chat.decoding import EagerDecoder, SwitchingDecoder, compiled

    gate = threading.Event()

    class SwitchingChat(ChatScreen):
        def on_model_ready(self, message) -> None:  # runs before ChatScreen's own handler
            model = message.loaded.model
            build = lambda stop: gate.wait(60) and compiled(model, {"backend": "eager", "fullgraph": True}, stop)  # noqa: E731
            message.loaded.decoder = SwitchingDecoder(EagerDecoder(model), build)
            message.loaded.decoder.warm_up()

    app = _app(tiny["folder"])
    async with app.run_test(size=(100, 30)) as pilot:
        screen = SwitchingChat(ChatSpec(ModelSource(SourceKind.BASE, model=tiny["model"]), CPU, "internlm2_chat"))
        app.push_screen(screen)
        await until(pilot, lambda: screen.loaded is not None)
        assert _status(screen).endswith("· eager (compiling…)")
        _endless(screen, 8)
        await _ask(pilot, screen, "你是谁")
        first = screen.query_one(ChatColumn).answer_text
        assert _status(screen).endswith("· eager (compiling…)")
        gate.set()
        await until(pilot, lambda: _status(screen).endswith("· eager (compiled: next answer)"))
        screen.action_reset()
        await _ask(pilot, screen, "你是谁")
        assert _status(screen).endswith("· compiled") and screen.query_one(ChatColumn).answer_text == first


async def test_escape_cancels_at_once_and_keeps_the_partial_answer_then_leaves(tiny) -> None:
    app = _app(tiny["folder"])
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(
            app, pilot, ChatSpec(ModelSource(SourceKind.BASE, model=tiny["model"]), CPU, "internlm2_chat")
        )
        _endless(screen, 300)
        slow = screen.loaded.model.register_forward_hook(lambda *_: time.sleep(0.02))  # 300 tokens take 6 s or more
        await _ask(pilot, screen, "请你介绍一下你自己", wait=False)
        await until(pilot, lambda: screen.sessions[0].last is not None and screen.sessions[0].last.tokens > 3)
        await pilot.press("escape")
        await until(pilot, lambda: not screen.busy)
        exchange = screen.sessions[0].exchanges[-1]
        assert exchange.reason is StopReason.CANCELLED and 3 < exchange.tokens < 300
        slow.remove()
        assert "cancelled" in str(screen.query_one(ChatColumn).query(".meta").last().render())
        assert app.screen is screen
        await pilot.press("escape")
        assert app.screen is not screen


async def test_ab_answers_base_and_adapter_side_by_side_from_one_load(tiny, monkeypatch) -> None:
    from transformers import AutoModelForCausalLM

    loads = []
    original = AutoModelForCausalLM.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        loads.append(args[0])
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(counting))
    app = _app(tiny["folder"])
    async with app.run_test(size=(120, 30)) as pilot:
        source = ModelSource(SourceKind.ADAPTER, model=tiny["model"], adapter=tiny["adapter"])
        screen = await _open(app, pilot, ChatSpec(source, CPU, "internlm2_chat"))
        await pilot.press("ctrl+b")
        await until(pilot, lambda: len(screen.query(ChatColumn)) == 2)
        _endless(screen, 10)
        await _ask(pilot, screen, "你是谁")
        base, adapted = (s.exchanges[-1].turn.answer for s in screen.sessions)
        assert base and adapted and base != adapted
        titles = [c.border_title for c in screen.query(ChatColumn)]
        assert titles[0] == "base (adapter off)" and "adapter" in titles[1]
        assert len(loads) == 1, loads
        await pilot.press("ctrl+b")
        await until(pilot, lambda: len(screen.query(ChatColumn)) == 1)
        await pilot.pause(0.2)
        assert [e.turn.answer for e in screen.sessions[0].exchanges] == [base]  # the first column's history goes on
        assert screen.query_one(ChatColumn).answer_text == base


async def test_an_error_inside_generation_shows_in_the_pane_and_the_chat_goes_on(tiny) -> None:
    app = _app(tiny["folder"])
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(
            app, pilot, ChatSpec(ModelSource(SourceKind.BASE, model=tiny["model"]), CPU, "internlm2_chat")
        )
        _endless(screen, 5)

        def boom(module, args, output):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

        hook = screen.loaded.model.model.layers[1].register_forward_hook(boom)
        await _ask(pilot, screen, "你好")
        error = str(screen.query_one(ChatColumn).query(".error").last().render())
        assert "RuntimeError" in error and "illegal memory access" in error
        assert screen.sessions[0].exchanges == []
        hook.remove()
        await _ask(pilot, screen, "你好")
        assert len(screen.sessions[0].exchanges) == 1 and screen.sessions[0].exchanges[0].tokens == 5


async def test_a_source_that_cannot_load_says_why_and_images_are_checked_on_attach(tiny, tmp_path) -> None:
    picture = tmp_path / "red.png"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(picture)
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    app = _app(tiny["folder"])
    async with app.run_test(size=(100, 30)) as pilot:
        source = ModelSource(SourceKind.LLAVA, model=tiny["model"], llava=tmp_path / "missing-llava")
        screen = await _open(app, pilot, ChatSpec(source, CPU, "internlm2_chat"))
        assert "cannot load" in _status(screen) and "projector" in _status(screen)
        await _ask(pilot, screen, "what colour?", wait=False)  # not loaded: told, nothing breaks
        assert not screen.busy
        field = screen.query_one("#image-path", Input)
        for bad, words in ((tmp_path / "nope.png", "no such file"), (text, "not an image")):
            field.value = str(bad)
            field.focus()
            await pilot.press("enter")
            assert words in _status(screen) and screen.image is None
        field.value = str(picture)
        field.focus()
        await pilot.press("enter")
        preview = screen.query_one(ImagePreview)
        await until(pilot, lambda: preview.info is not None)
        assert screen.image == str(picture) and "red.png (40x30)" in _status(screen)


async def test_a_long_load_error_keeps_the_status_short_and_shows_whole_in_the_column(tiny, tmp_path) -> None:
    unknown = tmp_path / "unknown-model"
    unknown.mkdir()
    (unknown / "config.json").write_text('{"model_type": "no-such-architecture"}')  # transformers lists every type
    app = _app(tiny["folder"])
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(app, pilot, ChatSpec(ModelSource(SourceKind.BASE, model=unknown), CPU, "internlm2_chat"))
        status = _status(screen)
        assert status.startswith("cannot load") and len(status) <= STATUS_CHARS and "\n" not in status
        errors = [str(w.render()) for w in screen.query(ChatColumn).first().query(".error")]
        assert len(errors) == 1 and "no-such-architecture" in errors[0] and len(errors[0]) > STATUS_CHARS


async def test_setup_form_checks_paths_and_opens_the_chat(tiny) -> None:
    app = _app(tiny["folder"])
    async with app.run_test(size=(100, 40)) as pilot:
        app.action_chat()
        await until(pilot, lambda: isinstance(app.screen, ChatSetupScreen) and app.screen.is_mounted)
        form = app.screen
        await pilot.pause(0.1)
        form.query_one("#kind").value = "adapter"
        form.query_one("#model", Input).value = str(tiny["model"])
        form.query_one("#adapter", Input).value = str(tiny["folder"] / "nowhere")
        form.query_one("#device", Input).value = "cpu"
        await pilot.press("ctrl+s")
        assert "not an adapter folder" in str(form.query_one("#setup-error", Static).render())
        assert app.screen is form
        form.query_one("#adapter", Input).value = str(tiny["adapter"])
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ChatScreen))
        assert app.screen.spec.source.adapter == tiny["adapter"] and app.screen.spec.options.device == "cpu"


async def test_the_form_and_the_command_line_build_a_chat_by_the_same_rules(tmp_path, monkeypatch, capsys) -> None:
    import torch

    from engine.chat.spec import SpecError
    from tests.support.fakes import fixture_run
    from tui.cli import main, parser
    from tui.cli.chat import chat_spec

    run = fixture_run(tmp_path).resolve()
    (run / "qwen_lora.py").write_text("prompt_template = PROMPT_TEMPLATE.qwen_chat\nSYSTEM = '你是小测的助手'\n")
    for n in (100, 200):
        torch.save({"iter": n}, run / f"iter_{n}.pth")
    monkeypatch.chdir(tmp_path)  # the checkpoints are named relative to the run
    argv = ["chat", str(run), "--checkpoint", "iter_100.pth", "--compare", "iter_200.pth", "--device"]
    cli = chat_spec(parser().parse_args([*argv, "cpu"]))
    assert cli.source.checkpoint == run / "iter_100.pth" and cli.compare.checkpoint == run / "iter_200.pth"
    assert (cli.template, cli.system) == ("qwen_chat", "你是小测的助手")  # the run's config says
    with pytest.raises(SpecError) as caught:
        chat_spec(parser().parse_args([*argv, "gpu"]))
    assert main(["chat", str(tmp_path / "nothing")]) == 2
    assert "xtui: error: not a model folder (no config.json)" in capsys.readouterr().err
    app = _app(tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        app.action_chat()
        await until(pilot, lambda: isinstance(app.screen, ChatSetupScreen) and app.screen.is_mounted)
        form = app.screen
        await pilot.pause(0.1)
        form.query_one("#kind").value = SourceKind.CHECKPOINT
        form.query_one("#checkpoint", Input).value = str(run / "iter_100.pth")
        form.query_one("#compare", Input).value = str(run / "iter_200.pth")
        form.query_one("#template").value = "qwen_chat"
        form.query_one("#device", Input).value = "cpu"
        assert form.spec() == cli  # the config found in the checkpoint's run, its SYSTEM too
        form.query_one("#device", Input).value = "gpu"
        await pilot.press("ctrl+s")
        assert str(form.query_one("#setup-error", Static).render()) == str(caught.value)
        assert "device must be auto, cpu or cuda:N (not 'gpu')" in str(caught.value) and app.screen is form


async def test_settings_apply_to_the_sessions_and_a_saved_transcript_reopens(tiny) -> None:
    from tui.dialogs.chat_settings import ChatSettingsScreen
    from tui.dialogs.transcripts import TranscriptsScreen

    app = _app(tiny["folder"])
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(
            app, pilot, ChatSpec(ModelSource(SourceKind.BASE, model=tiny["model"]), CPU, "internlm2_chat")
        )
        await pilot.press("f2")
        await until(pilot, lambda: isinstance(app.screen, ChatSettingsScreen) and app.screen.is_mounted)
        await pilot.pause(0.1)
        app.screen.query_one("#max_new_tokens", Input).value = "7"
        app.screen.query_one("#temperature", Input).value = "0"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.screen is screen)
        assert screen.sessions[0].sampling.max_new_tokens == 7 and screen.sessions[0].sampling.temperature == 0
        screen.loaded.eos_ids = lambda: []
        screen.sessions[0].stop_words = lambda: ()
        await _ask(pilot, screen, "你是谁")
        answer = screen.sessions[0].exchanges[-1].turn.answer
        assert screen.sessions[0].exchanges[-1].tokens == 7
        await pilot.press("ctrl+s")
        await pilot.press("ctrl+r")
        assert screen.sessions[0].exchanges == []
        await pilot.press("ctrl+o")
        await until(pilot, lambda: isinstance(app.screen, TranscriptsScreen) and app.screen.is_mounted)
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is screen and screen.sessions[0].exchanges)
        assert screen.sessions[0].exchanges[0].turn.answer == answer
        assert screen.query_one(ChatColumn).answer_text == answer


async def test_a_full_gpu_offers_the_alternatives_and_the_choice_comes_back(tiny) -> None:
    from engine.chat.device import GIB, plan
    from engine.gpu import GpuProcess, GpuReading
    from tui.dialogs.device_choice import DeviceChoiceScreen

    busy = GpuReading(0, "NVIDIA H200", 139 * GIB, 141 * GIB, 99, 70, 600.0, 700.0, (GpuProcess(4242, 130 * GIB),))
    idle = GpuReading(1, "NVIDIA H200", 1 * GIB, 141 * GIB, 0, 30, 80.0, 700.0, ())
    full = plan([busy, idle], 5 * GIB, want=0, need_4bit=int(1.8 * GIB), owners={4242: "demo/work"})
    assert not full.fits and full.alternatives == ("cuda:1", "4bit", "cpu")
    chosen = []
    app = _app(tiny["folder"])
    async with app.run_test(size=(100, 30)) as pilot:
        app.push_screen(DeviceChoiceScreen(full), chosen.append)
        await until(pilot, lambda: isinstance(app.screen, DeviceChoiceScreen) and app.screen.is_mounted)
        text = " ".join(str(s.render()) for s in app.screen.query(Static))
        assert "training run demo/work holds 130.0 GB" in text
        await pilot.press("tab")  # from GPU 1 (the focused best choice) to 4-bit
        await pilot.press("enter")
        await until(pilot, lambda: chosen)
    assert chosen == ["4bit"]


def _snapshot_app() -> XtuiApp:
    """A LLaVA chat with a fixed transcript and picture, the loading left out (nothing timed on screen)."""
    shutil.rmtree(SNAP_ROOT, ignore_errors=True)
    SNAP_ROOT.mkdir()
    picture = SNAP_ROOT / "colours.png"
    image = Image.new("RGB", (64, 48), (30, 90, 200))
    image.paste((220, 40, 40), (0, 0, 32, 24))
    image.paste((250, 220, 60), (32, 24, 64, 48))
    image.save(picture)
    exchanges = (
        Exchange(
            Turn("你是谁", "我是小明的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦"),
            None,
            StopReason.STOP,
            33,
            251.0,
        ),
        Exchange(
            Turn("What colours are in the picture?", "Red, blue and yellow."),
            str(picture),
            StopReason.CANCELLED,
            6,
            240.0,
        ),
    )

    class StillChat(ChatScreen):
        def load_model(self, options) -> None:
            self._status("ready · cuda:0 · template internlm2_chat  ctrl+b: A/B")

    app = _app(SNAP_ROOT)

    async def fill(pilot) -> None:
        screen = StillChat(
            ChatSpec(
                ModelSource(SourceKind.LLAVA, model=SNAP_ROOT / "llm", llava=SNAP_ROOT / "llava"), CPU, "internlm2_chat"
            )
        )
        app.push_screen(screen)
        await pilot.pause(0.2)
        for field in screen.query(Input):
            field.cursor_blink = False  # a blink would make the picture depend on timing
        screen.query_one(ChatColumn).show_exchanges(exchanges)
        screen.query_one("#image-path", Input).value = str(picture)
        screen.query_one(ImagePreview).show(picture)
        await until(pilot, lambda: screen.query_one(ImagePreview).info is not None, timeout=10)
        await pilot.pause(0.3)
        screen.query_one(ChatColumn).scroll_end(animate=False)  # wherever a late refresh left it
        await pilot.wait_for_scheduled_animations()
        await pilot.pause(0.2)

    app.fill = fill
    return app


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_chat_screen_snapshot(snap_compare, size) -> None:
    app = _snapshot_app()
    assert snap_compare(app, terminal_size=size, run_before=app.fill)


@pytest.mark.anyio
async def test_esc_in_xtui_chat_goes_back_to_the_shell_and_from_a_run_back_a_screen(tiny, tmp_path) -> None:
    spec = ChatSpec(ModelSource("base", model=tiny["model"]), CPU, "internlm2_chat")
    app = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.2, chat=spec)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen.loaded is not None)
        await pilot.press("escape")
        await until(pilot, lambda: not app.is_running, timeout=10)
    other = _app(tmp_path)
    async with other.run_test(size=(80, 24)) as pilot:
        await _open(other, pilot, spec)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(other.screen, ChatScreen))
        assert other.is_running
