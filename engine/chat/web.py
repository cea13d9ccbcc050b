"""A local web chat: a Gradio page on 127.0.0.1 that streams a ChatSession's answers over a model folder."""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.chat.decoding import Sampling
from engine.chat.models import LoadedModel, LoadOptions, load
from engine.chat.session import ChatSession, Exchange
from engine.chat.spec import ChatSpec, build_spec
from engine.errors import ChatError
from engine.xtuner.model_template import template_of_model
from engine.xtuner.templates import Template, Turn, template

HOST = "127.0.0.1"  # never another interface: reach it from elsewhere through an SSH tunnel
GRADIO_MISSING = "the web chat needs Gradio, an optional extra: pip install 'xtui[web]'"


class WebError(ChatError):
    """A web chat that cannot be served as asked."""


@dataclass
class WebChat:
    """A web chat being served: its address and port; `close()` stops the server."""

    url: str
    port: int
    page: object  # the gradio Blocks

    def close(self) -> None:
        """Stop serving."""
        self.page.close(verbose=False)


def tunnel_command(port: int) -> str:
    """The SSH command that brings the page to the user's own machine (run there)."""
    return f"ssh -L {port}:{HOST}:{port} {getpass.getuser()}@{socket.gethostname()}"


def web_spec(
    model: Path, adapter: Path | None = None, template_name: str | None = None, device: str = "auto"
) -> ChatSpec:
    """What the web chat talks to: a model folder (merged, or base + adapter), in the template the folders carry."""
    folders = [f for f in (adapter, model) if f is not None]
    name = template_name or template_of_model(*folders)
    return build_spec(model=model, adapter=adapter, template=name, options=LoadOptions(device=device))


def _text(content: object) -> str:
    """The text of a Gradio message's content (a string, or a list of parts)."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else [content]
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict))


def _exchanges(history: list[dict]) -> list[Exchange]:
    """The exchanges a Gradio history (role/content messages) holds, each question with the answer after it."""
    exchanges, question = [], None
    for message in history:
        if message.get("role") == "user":
            question = _text(message.get("content"))
        elif message.get("role") == "assistant" and question is not None:
            exchanges.append(Exchange(Turn(question, _text(message.get("content")))))
            question = None
    return exchanges


def responder(
    loaded: LoadedModel, tpl: Template | None, system: str, sampling: Sampling
) -> Callable[[str, list], Iterator[str]]:
    """The page's answer function: the whole answer so far after each piece, the browser's history as the chat's."""

    def respond(message: str, history: list[dict]) -> Iterator[str]:
        session = ChatSession(loaded, tpl, system, sampling)
        session.exchanges.extend(_exchanges(history))
        text = ""
        for piece in session.reply(message):
            text += piece
            yield text

    return respond


def _free(port: int | None) -> int:
    """`port` when nobody listens on it on HOST, else WebError; a free one when None."""
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port or 0))
        except OSError:
            raise WebError(
                f"port {port} is in use on {HOST}: pick another --port, or leave it out for a free one"
            ) from None
        return sock.getsockname()[1]


def serve(spec: ChatSpec, port: int | None = None, sampling: Sampling | None = None,
          say: Callable[[str], None] = lambda _: None, loaded: LoadedModel | None = None) -> WebChat:  # fmt: skip
    """Load the model (unless `loaded`: the chat screen's) and serve its chat page on HOST (at `port`, else a free
    one) until `close()`."""
    try:
        import gradio
    except ImportError:
        raise WebError(GRADIO_MISSING) from None
    port = _free(port)
    loaded = loaded or load(spec.source, spec.options, say)
    tpl = template(spec.template) if spec.template else None
    names = [p.name for p in (spec.source.model, spec.source.adapter) if p is not None]
    page = gradio.ChatInterface(
        responder(loaded, tpl, spec.system, sampling or Sampling()), title=f"xtui chat: {' + '.join(names)}",
        description=f"template {spec.template or 'none'}, on {loaded.device}", analytics_enabled=False,
        concurrency_limit=1,  # one model, one decoder: answers take turns
    )  # fmt: skip
    say(f"starting the page on {HOST}:{port}")
    page.launch(server_name=HOST, server_port=port, prevent_thread_lock=True, quiet=True, share=False,
                inbrowser=False, ssr_mode=False)  # fmt: skip
    return WebChat(f"http://{HOST}:{port}/", port, page)
