"""The web demo from the chat screen, on the real tiny model: f3 serves the model already loaded on 127.0.0.1 and a
free port, shows the address and the ssh -L line, and stops with f3 or when the chat closes; without Gradio it
says how to install it."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

import pytest
from textual.widgets import Static

from engine.chat import models, web
from engine.chat.models import LoadOptions, ModelSource, SourceKind
from engine.chat.spec import ChatSpec
from engine.chat.web import GRADIO_MISSING
from tests.support.fakes import NoGpus
from tests.support.waiting import until
from tui.app import XtuiApp
from tui.screens.chat import ChatScreen

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The demo's tiny model."""
    from engine.demo.build import build_demo

    return build_demo(tmp_path_factory.mktemp("web")).model


def _line(screen: ChatScreen) -> str:
    line = screen.query_one("#web-status", Static)
    return str(line.render()) if line.display else ""


def _page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode("utf-8", "replace")


async def _chat(app: XtuiApp, pilot, model) -> ChatScreen:
    screen = ChatScreen(
        ChatSpec(ModelSource(SourceKind.BASE, model=model), LoadOptions(device="cpu"), "internlm2_chat")
    )
    app.push_screen(screen)
    await until(pilot, lambda: screen.loaded is not None, timeout=120)
    return screen


async def test_f3_serves_the_loaded_model_shows_the_tunnel_and_stops_with_f3_or_the_chat(model, monkeypatch) -> None:
    loads = []
    real_load = models.load
    counting = lambda *a, **k: loads.append(a) or real_load(*a, **k)  # noqa: E731
    monkeypatch.setattr(models, "load", counting)  # the chat's load
    monkeypatch.setattr(web, "load", counting)  # the web page's, were it to load its own
    app = XtuiApp(roots=[model.parent], gpu_backend=NoGpus(), poll_s=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _chat(app, pilot, model)
        await pilot.press("f3")
        await until(pilot, lambda: screen.web is not None, timeout=180)
        page = screen.web
        line = _line(screen)
        assert f"web chat on {page.url}" in line and page.url.startswith("http://127.0.0.1:")
        assert f"\nssh -L {page.port}:127.0.0.1:{page.port} " in line and "f3 stops it" in line
        assert "xtui chat: tiny-llama" in _page(page.url)
        assert len(loads) == 1  # the page answers with the model the chat loaded, not a second copy
        await pilot.press("f3")
        assert screen.web is None and _line(screen) == ""
        with pytest.raises(urllib.error.URLError):
            _page(page.url)

        await pilot.press("f3")  # again, then leave the chat: the page goes with it
        await until(pilot, lambda: screen.web is not None, timeout=180)
        page = screen.web
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ChatScreen))
        await pilot.pause(0.2)
        with pytest.raises(urllib.error.URLError):
            _page(page.url)


async def test_without_gradio_f3_says_how_to_install_it(model, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError, as where it is missing
    app = XtuiApp(roots=[model.parent], gpu_backend=NoGpus(), poll_s=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _chat(app, pilot, model)
        await pilot.press("f3")
        await until(pilot, lambda: GRADIO_MISSING in _line(screen), timeout=60)
        assert screen.web is None and "pip install 'xtui[web]'" in GRADIO_MISSING


async def test_quitting_the_app_stops_the_page(model) -> None:
    app = XtuiApp(roots=[model.parent], gpu_backend=NoGpus(), poll_s=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _chat(app, pilot, model)
        await pilot.press("f3")
        await until(pilot, lambda: screen.web is not None, timeout=180)
        url = screen.web.url
        assert _page(url)
        app.exit()
    with pytest.raises(urllib.error.URLError):
        _page(url)
