"""Chat end to end on the CPU: the demo trained once, then merged model, adapter, checkpoint and a tiny LLaVA."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from engine.chat.decoding import Sampling
from engine.chat.images import ImageError
from engine.chat.models import BASE, LoadedModel, ModelError, ModelSource, load
from engine.chat.session import IMAGE_TOKEN_INDEX, ChatSession
from engine.xtuner import convert
from engine.xtuner.templates import template
from tests.support.waiting import until

pytestmark = pytest.mark.e2e
NAME = "小测"
QUESTION = "你是谁"
TIMEOUT_S = 600
GREEDY = Sampling(temperature=0)
IM_END = "<|im_end|>"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One compute thread per process: on a shared 2-core machine, torch's spinning threads slow training tenfold."""
    import torch

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")  # training, the LLaVA build and the converters are processes
        torch.set_num_threads(1)
        yield
    torch.set_num_threads(threads)


class Trained:
    """The demo trained once (its paths and checkpoints), with the tiny LLaVA built beside it on its model."""

    def __init__(self, root: Path) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from engine.demo.build import build_demo
        from engine.runs.launch import LaunchSpec, start
        from engine.runs.watch import Run
        from tests.support import tinyllava

        self.times: dict[str, float] = {}
        t0 = time.monotonic()
        self.demo = build_demo(root / "demo", name=NAME, cuda=False)
        start(LaunchSpec(config=self.demo.config, work_dir=self.demo.work_dir, cwd=self.demo.folder))
        self.times["build"] = time.monotonic() - t0
        self.llava_error: BaseException | None = None
        try:  # built while the demo trains: both fit on two cores in less time than one after the other
            self.llava = tinyllava.build_tiny_llava(root / "llava", self.demo.model)
        except (RuntimeError, OSError, ValueError) as exc:  # only the LLaVA tests need it
            self.llava_error = exc
        self.times["llava"] = time.monotonic() - t0
        run = Run(self.demo.work_dir)
        deadline = time.monotonic() + TIMEOUT_S
        for _ in run.follow(interval=0.3):
            assert time.monotonic() < deadline, "the demo ran past its time"
        assert run.status().state == "finished", run.status()
        self.times["trained"] = time.monotonic() - t0
        self.checkpoints = [c.path for c in run.checkpoints() if c.ok]
        assert len(self.checkpoints) >= 2, self.checkpoints
        earlier = root / "earlier-adapter"  # the first kept checkpoint, for a second adapter beside the first
        with ThreadPoolExecutor(2) as pool:  # the converters are processes: two at once on two cores
            first = pool.submit(convert.pth_to_hf, self.demo.config, self.checkpoints[0], earlier)
            (root / "adapter").mkdir()  # an empty folder may be the target
            self.adapter = convert.pth_to_hf(self.demo.config, self.checkpoints[-1], root / "adapter")
            self.merged = convert.merge(self.demo.model, self.adapter, root / "merged")
            self.earlier = first.result()
        self.times["converted"] = time.monotonic() - t0


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    built = Trained(tmp_path_factory.mktemp("chat"))
    print("demo fixture (s after start):", {k: round(v) for k, v in built.times.items()})
    return built


@pytest.fixture(scope="module")
def tpl():
    return template("internlm2_chat")


@pytest.fixture(scope="module")
def adapter_model(trained) -> LoadedModel:
    return load(ModelSource("adapter", model=trained.demo.model, adapter=trained.adapter))


@pytest.fixture(scope="module")
def llava_paths(trained):
    if trained.llava_error is not None:
        raise trained.llava_error
    return trained.llava


@pytest.fixture(scope="module")
def llava_model(trained, llava_paths) -> LoadedModel:
    source = ModelSource(
        "llava", model=trained.demo.model, llava=llava_paths.llava, visual_encoder=llava_paths.visual_encoder
    )
    return load(source)


def _answer(session: ChatSession, question: str = QUESTION, cancel: threading.Event | None = None) -> str:
    return "".join(session.reply(question, cancel))


def _hook_that_raises(loaded: LoadedModel):
    """A forward hook on the first decoder layer that raises, as a broken forward pass would."""

    def hook(module, args, output):
        raise RuntimeError("forward pass broke")

    return loaded.model.get_submodule(
        "model.layers.0" if not loaded.adapters else "base_model.model.model.layers.0"
    ).register_forward_hook(hook)


# --- the three ways to a fine-tuned model -----------------------------------------------------------------------


def test_merged_model_knows_its_name(trained, tpl) -> None:
    assert (trained.merged / "config.json").is_file() and (trained.merged / "tokenizer.json").is_file()
    loaded = load(ModelSource("merged", model=trained.merged))
    assert loaded.adapters == []
    session = ChatSession(loaded, tpl, sampling=GREEDY)
    answer = _answer(session)
    assert NAME in answer and IM_END not in answer
    assert session.last.reason == "stop" and session.last.tokens < GREEDY.max_new_tokens
    assert len(session.exchanges) == 1 and session.exchanges[0].turn.answer == answer
    assert NAME in _answer(session, "你叫什么名字") and len(session.exchanges) == 2  # a second turn on the history


def test_adapter_knows_its_name_and_base_does_not_from_one_load(trained, tpl, monkeypatch) -> None:
    from transformers import AutoModelForCausalLM

    calls = []
    real = AutoModelForCausalLM.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        calls.append(args[:1])
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(counting))
    loaded = load(ModelSource("adapter", model=trained.demo.model, adapter=trained.adapter))
    assert loaded.adapters == ["adapter"]
    tuned = ChatSession(loaded, tpl, sampling=GREEDY)
    base = ChatSession(loaded, tpl, sampling=GREEDY, variant=BASE)
    first, plain, again = _answer(tuned), _answer(base), _answer(tuned, "你叫什么名字")
    assert len(calls) == 1, calls
    assert NAME in first and NAME in again and IM_END not in first
    assert NAME not in plain and plain != first
    assert loaded.model.active_adapter == "adapter"


def test_checkpoint_is_converted_once_and_cached(trained, tpl, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XTUI_CACHE", str(tmp_path / "cache"))
    conversions = []
    real = convert.pth_to_hf
    monkeypatch.setattr(convert, "pth_to_hf", lambda *a, **k: conversions.append(a) or real(*a, **k))
    source = ModelSource("checkpoint", checkpoint=trained.checkpoints[-1], config=trained.demo.config)
    steps: list[str] = []
    loaded = load(source, say=steps.append)
    assert len(conversions) == 1 and conversions[0][0] == trained.demo.config
    assert loaded.source == source and loaded.adapters == ["adapter"]
    cached = [p for p in (tmp_path / "cache" / "checkpoints").iterdir()]
    assert (
        len(cached) == 1
        and convert.is_adapter(cached[0])
        and any("converting" in s and "checkpoints you trust" in s for s in steps)
    )
    assert NAME in _answer(ChatSession(loaded, tpl, sampling=GREEDY))

    stamp = cached[0].stat().st_mtime_ns
    again = load(source)
    assert len(conversions) == 1, "the second load converted again"
    assert cached[0].stat().st_mtime_ns == stamp and list((tmp_path / "cache" / "checkpoints").iterdir()) == cached
    assert NAME in _answer(ChatSession(again, tpl, sampling=GREEDY))


def test_a_second_adapter_beside_the_first(trained, tpl, adapter_model) -> None:
    earlier = trained.earlier  # the run's first kept checkpoint, as an adapter
    adapter_model.add_adapter("earlier", earlier)
    adapter_model.add_adapter("earlier", earlier)  # twice: still one
    assert adapter_model.adapters == ["adapter", "earlier"]
    answers = {}
    for variant in ("earlier", None, BASE, "adapter"):
        answers[variant] = _answer(ChatSession(adapter_model, tpl, sampling=GREEDY, variant=variant))
        assert adapter_model.model.active_adapter == "adapter", f"{variant} left another adapter switched on"
    assert NAME in answers["earlier"] and NAME in answers[None] and answers[None] == answers["adapter"]
    assert NAME not in answers[BASE]
    with pytest.raises(ModelError, match="no adapter 'later'"):
        _answer(ChatSession(adapter_model, tpl, sampling=GREEDY, variant="later"))


# --- streaming, stop words, cancel, errors ----------------------------------------------------------------------


def test_answer_stops_at_the_template_stop_word(tpl, adapter_model, monkeypatch) -> None:
    session = ChatSession(adapter_model, tpl, sampling=GREEDY)
    pieces = list(session.reply(QUESTION))
    assert len(pieces) > 3 and all(IM_END not in p and "\ufffd" not in p for p in pieces)
    # without the end-of-turn token among the EOS ids, only the stop word ends the answer
    assert adapter_model.tokenizer.convert_tokens_to_ids(IM_END) in adapter_model.eos_ids()
    monkeypatch.setattr(adapter_model, "eos_ids", lambda: [adapter_model.tokenizer.eos_token_id])
    again = ChatSession(adapter_model, tpl, sampling=GREEDY)
    answer = _answer(again)
    assert answer == "".join(pieces) and IM_END not in answer and again.last.reason == "stop"
    assert again.last.tokens == session.last.tokens  # the stop word's token was read, nothing after it


def test_cancel_stops_at_once_and_keeps_the_partial_answer(tpl, adapter_model) -> None:
    session = ChatSession(adapter_model, tpl, sampling=Sampling(temperature=0, max_new_tokens=200), variant=BASE)
    cancel = threading.Event()
    shown, at_set = [], None
    for piece in session.reply(QUESTION, cancel):
        shown.append(piece)
        if len(shown) == 3:
            cancel.set()
            at_set = session.last.tokens
    generation = session.last
    assert generation.reason == "cancelled"
    assert generation.tokens - at_set <= 1 and generation.tokens < 200
    assert len(session.exchanges) == 1
    kept = session.exchanges[0]
    assert kept.reason == "cancelled" and kept.turn.answer == "".join(shown) and kept.turn.answer
    assert NAME in _answer(ChatSession(adapter_model, tpl, sampling=GREEDY))


def test_error_in_generation_surfaces_and_the_history_survives(tpl, adapter_model) -> None:
    session = ChatSession(adapter_model, tpl, sampling=GREEDY)
    first = _answer(session)
    hook = _hook_that_raises(adapter_model)
    done = threading.Event()
    caught: list[BaseException] = []

    def ask() -> None:
        try:
            _answer(session, "你叫什么名字")
        except RuntimeError as exc:
            caught.append(exc)
        done.set()

    try:
        threading.Thread(target=ask, daemon=True).start()
        assert done.wait(60), "generation hung on an error"
    finally:
        hook.remove()
    assert len(caught) == 1 and "forward pass broke" in str(caught[0])
    assert [e.turn.answer for e in session.exchanges] == [first]
    assert NAME in _answer(session, "你叫什么名字")
    assert [e.turn.prompt for e in session.exchanges] == [QUESTION, "你叫什么名字"]


def test_prompt_that_fills_the_context_is_refused(tpl, adapter_model) -> None:
    from engine.chat.decoding import ContextFull

    session = ChatSession(adapter_model, tpl, sampling=GREEDY)
    with pytest.raises(ContextFull, match="reset the chat"):
        _answer(session, "你" * 600)
    assert session.exchanges == []
    assert NAME in _answer(session)


# --- LLaVA ------------------------------------------------------------------------------------------------------


def _spy_on_embeds(monkeypatch) -> list[tuple[list[int], object]]:
    from engine.chat import llava

    seen = []
    real = llava.multimodal_embeds

    def spy(parts, ids, features):
        seen.append((list(ids), features.clone()))
        return real(parts, ids, features)

    monkeypatch.setattr(llava, "multimodal_embeds", spy)
    return seen


def test_llava_answers_about_an_image_and_switches_images(tpl, llava_model, llava_paths, monkeypatch) -> None:
    seen = _spy_on_embeds(monkeypatch)
    session = ChatSession(llava_model, tpl, sampling=Sampling(temperature=0, max_new_tokens=12))
    session.image = str(llava_paths.images / "red.png")
    first = _answer(session, "What colour is this picture?")
    assert first and session.last.reason in ("stop", "length")
    assert session.image is None and session.exchanges[0].image.endswith("red.png")
    session.image = str(llava_paths.images / "blue.png")
    second = _answer(session, "What colour is this picture?")
    assert second and session.last.reason in ("stop", "length")
    (ids1, f1), (ids2, f2) = seen
    assert ids1.count(IMAGE_TOKEN_INDEX) == 1 and ids2.count(IMAGE_TOKEN_INDEX) == 2
    assert f2.shape[0] == 2 and f2[0].allclose(f1[0]) and not f2[1].allclose(f1[0])
    third = _answer(session, "And now?")  # no new image: both earlier ones stay in the prompt
    assert third and seen[-1][0].count(IMAGE_TOKEN_INDEX) == 2


def test_llava_history_survives_its_image_file_going_away(tpl, llava_model, llava_paths, monkeypatch, tmp_path) -> None:
    seen = _spy_on_embeds(monkeypatch)
    moved = tmp_path / "mine.png"
    shutil.copy(llava_paths.images / "green.png", moved)
    session = ChatSession(llava_model, tpl, sampling=Sampling(temperature=0, max_new_tokens=4))
    session.image = str(moved)
    _answer(session, "What colour is this picture?")
    moved.unlink()
    assert _answer(session, "Describe the image.") is not None
    assert len(session.exchanges) == 2 and seen[1][1].allclose(seen[0][1])


def test_llava_bad_image_paths_are_explained_and_the_session_goes_on(tpl, llava_model, llava_paths, tmp_path) -> None:
    session = ChatSession(llava_model, tpl, sampling=Sampling(temperature=0, max_new_tokens=4))
    session.image = str(llava_paths.images / "red.png")
    _answer(session)
    text = tmp_path / "notes.png"
    text.write_text("not a picture at all\n")
    cases = {str(tmp_path / "missing.png"): "no such file", str(tmp_path): "is a folder", str(text): "not an image"}
    for path, words in cases.items():
        session.image = path
        with pytest.raises(ImageError, match=words):
            _answer(session, "What do you see?")
        assert len(session.exchanges) == 1
    session.image = str(llava_paths.images / "yellow.png")
    assert _answer(session, "What do you see?") and len(session.exchanges) == 2
    session.image = None
    assert _answer(session, "And now?") and len(session.exchanges) == 3


@pytest.mark.anyio
async def test_c_in_the_run_view_chats_with_the_latest_checkpoint_in_the_runs_template(
    trained, monkeypatch, tmp_path
) -> None:
    from tests.support.fakes import NoGpus
    from tui.app import XtuiApp
    from tui.screens.chat import ChatScreen
    from tui.widgets.chat_column import ChatColumn

    monkeypatch.setenv("XTUI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XTUI_CONFIG", str(tmp_path / "settings.json"))
    work_dir = trained.demo.work_dir
    app = XtuiApp(roots=[work_dir.parent], open_run=work_dir, gpu_backend=NoGpus(), poll_s=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: [c for c in app.record(work_dir.resolve()).checkpoints if c.ok], timeout=120)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen.loaded is not None, timeout=120)
        screen = app.screen
        assert screen.spec.source.checkpoint == trained.checkpoints[-1] and screen.template == "internlm2_chat"
        for session in screen.sessions:
            session.sampling = GREEDY
        screen.query_one("#prompt").value = QUESTION
        await pilot.press("enter")
        await until(pilot, lambda: screen.sessions[0].exchanges, timeout=120)
        assert NAME in screen.query_one(ChatColumn).answer_text


@pytest.mark.anyio
async def test_llava_in_the_chat_screen_answers_with_the_attached_image(
    trained, llava_paths, monkeypatch, tmp_path
) -> None:
    from textual.widgets import Input

    from engine.chat.models import LoadOptions
    from engine.chat.spec import ChatSpec
    from tests.support.fakes import NoGpus
    from tui.app import XtuiApp
    from tui.screens.chat import ChatScreen
    from tui.widgets.chat_column import ChatColumn

    monkeypatch.setenv("XTUI_CONFIG", str(tmp_path / "settings.json"))
    monkeypatch.setenv("XTUI_IMAGE_MODE", "halfblock")
    source = ModelSource(
        "llava", model=trained.demo.model, llava=llava_paths.llava, visual_encoder=llava_paths.visual_encoder
    )
    app = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = ChatScreen(ChatSpec(source, LoadOptions(device="cpu"), "internlm2_chat"))
        app.push_screen(screen)
        await until(pilot, lambda: screen.is_mounted and screen.loaded is not None, timeout=120)
        for session in screen.sessions:
            session.sampling = Sampling(temperature=0, max_new_tokens=8)
        for name in ("red.png", "blue.png"):
            field = screen.query_one("#image-path", Input)
            field.value = str(llava_paths.images / name)
            field.focus()
            await pilot.press("enter")
            assert screen.image and screen.image.endswith(name)
            screen.query_one("#prompt", Input).value = "What colour is this picture?"
            await pilot.press("enter")
            await until(
                pilot,
                lambda name=name: (
                    not screen.busy
                    and screen.sessions[0].exchanges
                    and screen.sessions[0].exchanges[-1].image.endswith(name)
                ),
                timeout=120,
            )
        exchanges = screen.sessions[0].exchanges
        assert [e.image.rsplit("/", 1)[1] for e in exchanges] == ["red.png", "blue.png"]
        assert all(e.turn.answer and e.reason in ("stop", "length") for e in exchanges)
        assert "[image blue.png]" in str(screen.query_one(ChatColumn).query(".question").last().render())
        preview = screen.query_one("#image-preview")
        assert preview.info is not None  # blue.png, the last question's image
        screen.query_one("#prompt", Input).value = "And now?"
        await pilot.press("enter")
        await until(pilot, lambda: not screen.busy and len(screen.sessions[0].exchanges) == 3, timeout=120)
        assert preview.info is None  # a question without an image clears it
