"""Bad input to the CLI: one clear line on stderr, a non-zero exit, nothing launched or written."""

import json
from pathlib import Path

import pytest

from engine.xtuner.configs import find_builtin
from tui.cli import main

CONFIG = """\
pretrained_model_name_or_path = {model!r}
data_path = {data!r}
dataset = dict(type='json', dataset_map_fn=None)
"""


def _config(tmp_path: Path, model: Path, data: Path) -> Path:
    path = tmp_path / "cfg.py"
    path.write_text(CONFIG.format(model=str(model), data=str(data)))
    return path


def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.fixture
def good(tmp_path: Path) -> tuple[Path, Path]:
    model = tmp_path / "model"
    model.mkdir()
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"conversation": [{"input": "你是谁", "output": "我是小明"}]}) + "\n")
    return model, data


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "nope.py", "--work-dir", "w"], "config not found: nope.py"),
        (["train", "no_such_builtin_cfg", "--work-dir", "w"], "unknown config 'no_such_builtin_cfg'"),
        (["status", "/no/such/folder"], "no such folder: /no/such/folder"),
        (["stop", "."], "has no run launched by xtui"),
    ],
)
def test_one_line_errors(argv, expected, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = _run(argv, capsys)
    assert code == 2 and expected in err and err.count("\n") == 0 and "Traceback" not in err


def test_missing_model(tmp_path, good, capsys) -> None:
    _, data = good
    cfg = _config(tmp_path, tmp_path / "gone", data)
    code, err = _run(["train", str(cfg), "--work-dir", str(tmp_path / "w")], capsys)
    assert code == 2 and "model not found" in err and not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    "content, expected",
    [
        ('{"conversation": [{"input": "a", "output": "b"}]}\nnot json\n', "record 2 (line 2) is not JSON"),
        ('{"instruction": "a", "output": "b"}\n', '"conversation"'),
        ("", "no records"),
        ("[1, 2]", "record 1 (line 1) is a number, not a JSON object"),
    ],
)
def test_bad_dataset(tmp_path, good, capsys, content, expected) -> None:
    model, _ = good
    data = tmp_path / ("bad.json" if content.startswith("[") else "bad.jsonl")
    data.write_text(content)
    cfg = _config(tmp_path, model, data)
    code, err = _run(["train", str(cfg), "--work-dir", str(tmp_path / "w")], capsys)
    assert code == 2 and "bad dataset" in err and expected in err, err
    assert not (tmp_path / "w").exists()


def test_missing_data_and_broken_config(tmp_path, good, capsys) -> None:
    model, _ = good
    cfg = _config(tmp_path, model, tmp_path / "nothing.jsonl")
    code, err = _run(["train", str(cfg), "--work-dir", str(tmp_path / "w")], capsys)
    assert code == 2 and "data not found" in err
    cfg.write_text("x = (\n")
    code, err = _run(["train", str(cfg), "--work-dir", str(tmp_path / "w")], capsys)
    assert code == 2 and "not valid Python" in err


def test_builtin_name_resolves(tmp_path, capsys) -> None:
    from engine.xtuner.configs import resolve_config

    assert resolve_config("internlm2_1_8b_qlora_alpaca_e3") == find_builtin("internlm2_1_8b_qlora_alpaca_e3")


def test_bad_deepspeed_and_gpus(tmp_path, good, capsys) -> None:
    model, data = good
    cfg = _config(tmp_path, model, data)
    code, err = _run(["train", str(cfg), "--work-dir", str(tmp_path / "w"), "--deepspeed", "zero9"], capsys)
    assert code == 2 and "unknown DeepSpeed config 'zero9'" in err
    code, err = _run(["train", str(cfg), "--work-dir", str(tmp_path / "w"), "--gpus", "0"], capsys)
    assert code == 2 and "at least 1" in err


def test_work_dir_holding_the_config_is_refused(tmp_path, good, capsys) -> None:
    model, data = good
    cfg = _config(tmp_path, model, data)
    before = cfg.read_text()
    code, err = _run(["train", str(cfg), "--work-dir", str(tmp_path)], capsys)
    assert code == 2 and "would overwrite" in err and cfg.read_text() == before
