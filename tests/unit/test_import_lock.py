"""Importing transformers in two threads at once: a dataset check beside the chat's model loading, in a fresh process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support import ROOT

SCRIPT = textwrap.dedent("""
    import sys, threading
    from pathlib import Path
    from engine.demo.tinymodel import build_tiny_model
    model = build_tiny_model(Path(sys.argv[1]), ["你是谁", "我是小明"] * 20)
    for name in [m for m in sys.modules if m.startswith(("transformers", "peft"))]:
        del sys.modules[name]  # the builder imported them: start again from nothing, as the app does
    from engine.chat.models import LoadOptions, ModelSource, SourceKind, load
    from engine.xtuner.token_lengths import load_tokenizer
    failed, start = [], threading.Barrier(2)
    def run(job):
        start.wait()
        try:
            job()
        except Exception as exc:
            failed.append(f"{type(exc).__name__}: {exc}")
    jobs = [lambda: load_tokenizer(str(model), local=True),
            lambda: load(ModelSource(SourceKind.MERGED, model=model), LoadOptions(device="cpu"))]
    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(failed or "ok")
""")


def test_a_check_and_a_model_loading_import_transformers_together(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "tiny")], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "ok"
