"""The recipe after training, end to end on the CPU: the demo trained once, then convert, merge, export, web chat."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.chat.decoding import Sampling
from engine.chat.models import ModelSource, load
from engine.chat.session import ChatSession
from engine.xtuner import convert
from engine.xtuner.templates import render, template
from tui.cli import main

pytestmark = pytest.mark.e2e
NAME = "小测"
QUESTION = "你是谁"
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "results" / "web-demo-chromium.png"
TRAIN_TIMEOUT_S = 600


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One compute thread per process: on a shared 2-core machine, torch's spinning threads slow training tenfold."""
    import torch

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo trained to its end (LoRA on the tiny model: it learns its name)."""
    from engine.demo.build import build_demo
    from engine.runs.launch import LaunchSpec, start
    from engine.runs.watch import Run

    paths = build_demo(tmp_path_factory.mktemp("after") / "demo", name=NAME, cuda=False)
    start(LaunchSpec(config=paths.config, work_dir=paths.work_dir, cwd=paths.folder))
    run = Run(paths.work_dir)
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    for _ in run.follow(interval=0.3):
        assert time.monotonic() < deadline, "the demo ran past its time"
    assert run.status().state == "finished", run.status()
    return paths


@pytest.fixture(scope="module")
def adapter(demo) -> Path:
    """`xtui convert` of the demo's latest checkpoint."""
    out = demo.folder / "adapter"
    assert main(["convert", str(demo.work_dir), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def exported(demo) -> Path:
    """`xtui export` of the demo's run."""
    out = demo.folder / "export"
    assert main(["export", str(demo.work_dir), "--out", str(out)]) == 0
    return out


def test_convert_picks_the_latest_checkpoint_shows_the_tool_and_never_overwrites(demo, adapter, capsys) -> None:
    assert convert.is_adapter(adapter) and (adapter / "adapter_model.safetensors").is_file()
    assert main(["convert", str(demo.work_dir), "--out", str(adapter)]) == 2
    err = capsys.readouterr().err
    assert f"{adapter} already exists: pick a new folder (xtui never overwrites one)" in err
    assert (
        main(["convert", str(demo.work_dir), "--checkpoint", "iter_250.pth", "--out", str(demo.folder / "a250")]) == 0
    )
    out, err = capsys.readouterr()
    assert "converting " + str(demo.work_dir / "iter_250.pth") in out and "adapter in " in out and "xtui merge " in out
    assert "  | " in err and "All done!" in err


def test_a_checkpoint_converted_with_another_config_is_explained(demo, tmp_path) -> None:
    wrong = tmp_path / "r16.py"
    wrong.write_text(demo.config.read_text(encoding="utf-8").replace("r=8,", "r=16,"))
    with pytest.raises(convert.ConvertError, match="the checkpoint does not fit this config"):
        convert.pth_to_hf(wrong, demo.work_dir / "iter_250.pth", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_merge_saves_the_whole_model_with_its_tokenizer(demo, adapter, capsys) -> None:
    merged = demo.folder / "merged"
    assert main(["merge", str(demo.model), str(adapter), "--out", str(merged)]) == 0
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in merged.iterdir()}
    assert "merged model in " in capsys.readouterr().out


def test_export_is_a_model_ready_to_upload(demo, exported) -> None:
    from transformers import AutoTokenizer

    names = {p.name for p in exported.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md",
            "xtuner_template.json", "xtuner_config.py"} <= names and not any(n.startswith(".") for n in names)  # fmt: skip
    card = (exported / "README.md").read_text(encoding="utf-8")
    assert f'base_model: "{demo.model}"' in card and str(demo.data) in card and "LoRA (r=8" in card
    assert "final loss 0.0" in card and f"> 我是{NAME}" in card and "**你是谁**" in card
    tokenizer = AutoTokenizer.from_pretrained(str(exported))
    shown = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], tokenize=False)
    assert shown == render(template("internlm2_chat"), [], QUESTION)
    loaded = load(ModelSource("merged", model=exported))
    answer = "".join(ChatSession(loaded, template("internlm2_chat"), sampling=Sampling(temperature=0)).reply(QUESTION))
    assert NAME in answer
    assert main(["export", str(demo.work_dir), "--out", str(exported)]) == 2  # never over an export


def _lines(proc: subprocess.Popen) -> queue.Queue:
    """The process's output lines, read on a thread as they come."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    return lines


def _started(lines: queue.Queue, timeout: float = 180) -> list[str]:
    """`xtui web`'s output up to its last line before serving (the SSH tunnel to it)."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=1).rstrip("\n"))
        except queue.Empty:
            continue
        if seen[-1].startswith("from your own machine: "):
            return seen
    raise AssertionError(f"xtui web did not come up: {seen}")


def _chromium():
    """Headless Chromium through Debian's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,760"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


# Records every text the newest answer bubble shows, to tell a streamed answer from one that arrives whole.
WATCH_ANSWERS = """
window.shown = [];
new MutationObserver(() => {
  const bots = document.querySelectorAll("[data-testid='bot']");
  const text = bots.length ? bots[bots.length - 1].textContent.trim() : "";
  if (text && window.shown[window.shown.length - 1] !== text) window.shown.push(text);
}).observe(document.body, {subtree: true, childList: true, characterData: true});
"""


@pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("chromedriver")),
    reason="needs chromium and chromium-driver (.ci/run installs them)",
)
def test_the_web_chat_streams_an_answer_in_chromium(exported) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "web", str(exported), "--device", "cpu"], cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    browser = None
    try:
        *_, address, tunnel = _started(_lines(proc))
        url = address.split()[3]
        port = url.rstrip("/").rsplit(":", 1)[1]
        assert url.startswith("http://127.0.0.1:") and "(template internlm2_chat)" in address
        assert tunnel.startswith(f"from your own machine: ssh -L {port}:127.0.0.1:{port} ") and tunnel.endswith(url)
        browser = _chromium()
        browser.get(url)
        box = WebDriverWait(browser, 60).until(lambda b: b.find_element(By.CSS_SELECTOR, "textarea"))
        browser.execute_script(WATCH_ANSWERS)
        box.send_keys(QUESTION, Keys.ENTER)
        WebDriverWait(browser, 120).until(lambda b: NAME in "".join(b.execute_script("return window.shown")))
        time.sleep(1)  # the rest of the answer
        shown = browser.execute_script("return window.shown")
        assert len(shown) >= 3 and all(shown[-1].startswith(s) for s in shown), shown  # streamed: growing pieces
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT))
    finally:
        if browser is not None:
            browser.quit()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
