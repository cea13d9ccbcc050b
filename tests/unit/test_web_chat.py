"""The web chat's parts that need no model: Gradio missing, the history it is given, ports, the SSH line."""

from __future__ import annotations

import socket
import sys

import pytest

from engine.chat.web import HOST, WebError, _exchanges, _free, tunnel_command
from tui.cli import main


def test_without_gradio_the_web_chat_says_how_to_get_it(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    assert main(["web", str(tmp_path)]) == 2
    assert "the web chat needs Gradio, an optional extra: pip install 'xtui[web]'" in capsys.readouterr().err


def test_the_browser_history_becomes_the_chat_history() -> None:
    history = [
        {"role": "user", "content": "你是谁"}, {"role": "assistant", "content": "我是小测"},
        {"role": "user", "content": [{"type": "text", "text": "你好"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "你"}, {"type": "text", "text": "好"}]},
        {"role": "user", "content": "unanswered"},
    ]  # fmt: skip
    assert [(e.turn.prompt, e.turn.answer) for e in _exchanges(history)] == [("你是谁", "我是小测"), ("你好", "你好")]


def test_a_busy_port_is_refused_and_none_gives_a_free_one() -> None:
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(WebError, match=f"port {port} is in use on 127.0.0.1: pick another --port"):
            _free(port)
    assert _free(None) > 0


def test_the_tunnel_line_forwards_the_same_port() -> None:
    line = tunnel_command(7861)
    assert line.startswith("ssh -L 7861:127.0.0.1:7861 ") and "@" in line
