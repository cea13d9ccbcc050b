"""The recipe end to end on the CPU: `xtui data new`, `xtui config set`, the checks, then the real xtuner learns the name."""

from __future__ import annotations

import time

import pytest

from engine.runs import manifest as mf
from engine.runs.events import Sample, TrainStep
from engine.runs.launch import LaunchSpec, start
from engine.runs.watch import Run
from engine.xtuner.config_advice import advise
from engine.xtuner.data_check import check_data
from tui.cli import main

pytestmark = pytest.mark.e2e
NAME, OWNER = "小测", "浦语"  # characters the demo's tokenizer was trained on
TIMEOUT_S = 900


def test_a_generated_dataset_trains_the_tiny_model_to_say_its_name(tmp_path, capsys) -> None:
    from engine.demo.build import build_demo

    demo = build_demo(tmp_path / "demo", name=NAME)  # its tiny model and CPU config; the data is ours
    data = demo.folder / "data" / "assistant.json"
    assert main(["data", "new", str(data), "--name", NAME, "--owner", OWNER, "--repeat", "20"]) == 0
    assert main(["config", "set", str(demo.config), f"alpaca_en_path={data}", "--yes"]) == 0
    capsys.readouterr()

    check = check_data(data, demo.folder, demo.config)
    assert check.ok and check.map_fn_fits and check.tokens.cut == 0 and check.report.records == 240
    advice = advise(demo.config, demo.folder)
    assert advice.ok and advice.data == (data,), advice.advice

    work_dir = demo.folder / "work-recipe"
    start(LaunchSpec(config=demo.config, work_dir=work_dir, cwd=demo.folder))
    run, events = Run(work_dir), []
    deadline = time.monotonic() + TIMEOUT_S
    for event in run.follow(interval=0.5):
        events.append(event)
        assert time.monotonic() < deadline, events[-5:]
    console = (work_dir / mf.CONSOLE).read_text(errors="replace")[-3000:]
    assert run.status().state == "finished", console
    steps = [e for e in events if isinstance(e, TrainStep)]
    assert steps and steps[-1].max_iters == advice.length.iterations, (steps[-1], advice.length)
    answers = [e.answer for e in events if isinstance(e, Sample) and e.prompt == "你是谁"]
    assert any(NAME in a and OWNER in a for a in answers), answers[-4:]
