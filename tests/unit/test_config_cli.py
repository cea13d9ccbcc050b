"""`xtui config list|copy|show|set|check`: XTuner's recipe steps on configs, without running one or importing torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine.xtuner import configs
from tests.support import ROOT
from tui.cli import main

SEED = "internlm2_chat_1_8b_qlora_alpaca_e3"
LLAVA = "llava_internlm2_chat_1_8b_qlora_clip_vit_large_p14_336_lora_e1_gpu8_finetune"


def _run(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def copied(tmp_path):
    from engine.xtuner.configs import copy_builtin

    return copy_builtin(SEED, tmp_path)


def test_list_is_list_cfg_with_a_pattern(capsys) -> None:
    code, out, _ = _run(capsys, "config", "list", "INTERNLM2_CHAT_1_8B_QLORA")
    assert code == 0 and out.split() == configs.list_builtin("internlm2_chat_1_8b_qlora") and SEED in out.split()
    code, out, err = _run(capsys, "config", "list", "no_such_thing")
    assert code == 1 and out == "" and "no built-in config name contains 'no_such_thing'" in err


def test_copy_is_copy_cfg_and_never_overwrites(capsys, tmp_path) -> None:
    code, out, _ = _run(capsys, "config", "copy", SEED, tmp_path / "cfg")
    target = tmp_path / "cfg" / f"{SEED}_copy.py"
    assert code == 0 and f"copied to {target}" in out and target.read_bytes() == configs.find_builtin(SEED).read_bytes()
    target.write_text("# mine")
    code, _, err = _run(capsys, "config", "copy", SEED, tmp_path / "cfg")
    assert code == 2 and err.count("\n") == 1 and "already exists" in err and target.read_text() == "# mine"


def test_show_groups_part1_and_works_out_expressions(capsys) -> None:
    code, out, _ = _run(capsys, "config", "show", LLAVA)
    assert code == 0 and "\n# Data\ndata_root = " in out
    assert (
        "data_path = data_root + \"LLaVA-Instruct-150K/llava_v1_5_mix665k.json\"  # = './data/llava_data/LLaVA-Instruct-150K/llava_v1_5_mix665k.json'"
        in out
    )
    assert "batch_size = 16  # per_device" in out and "lr = 2e-4\n" in out and "tokenizer" not in out
    code, out, _ = _run(capsys, "config", "show", LLAVA, "--json")
    settings = {s["name"]: s for s in json.loads(out)}
    assert settings["max_length"] == {
        "name": "max_length", "text": "int(2048 - (336 / 14) ** 2)", "value": 1472, "known": True,
        "line": settings["max_length"]["line"], "section": "Data", "comment": "",
    }  # fmt: skip
    assert settings["betas"]["value"] == [0.9, 0.999] and settings["prompt_template"]["known"] is False


def test_set_shows_a_diff_and_writes_only_with_yes(capsys, copied) -> None:
    before = copied.read_bytes()
    code, out, err = _run(capsys, "config", "set", copied, "max_length=512", "SYSTEM=你是小助手")
    assert code == 0 and "-max_length = 2048\n+max_length = 512\n" in out and "+SYSTEM = '你是小助手'\n" in out
    assert "not written (add --yes to write)" in err and copied.read_bytes() == before
    code, out, _ = _run(capsys, "config", "set", copied, "max_length=512", "--yes")
    assert code == 0 and f"wrote {copied}" in out and b"max_length = 512\n" in copied.read_bytes()
    code, out, _ = _run(capsys, "config", "set", copied, "max_length=512", "--yes")
    assert code == 0 and "nothing to change" in out


@pytest.mark.parametrize("answer, written", [("y", True), ("", False)])
def test_set_asks_on_a_terminal(capsys, monkeypatch, copied, answer, written) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    asked = []
    monkeypatch.setattr("builtins.input", lambda question: asked.append(question) or answer)
    code, _, _ = _run(capsys, "config", "set", copied, "lr=1e-4")
    assert code == 0 and asked and asked[0].endswith("[y/N] ")
    assert (b"lr = 1e-4\n" in copied.read_bytes()) is written


def test_set_refuses_xtuners_own_files_and_bad_values_in_one_line(capsys, copied) -> None:
    code, _, err = _run(capsys, "config", "set", SEED, "lr=1e-4")
    assert code == 2 and "copy NAME DIR first" in err
    code, _, err = _run(capsys, "config", "set", configs.find_builtin(SEED), "lr=1e-4", "--yes")
    assert code == 2 and "one of XTuner's own configs" in err
    code, _, err = _run(capsys, "config", "set", copied, "batch_size=0", "--yes")
    assert code == 2 and err.count("\n") == 1 and "batch_size must be a whole number of at least 1, not 0" in err
    assert copied.read_bytes() == configs.find_builtin(SEED).read_bytes()


def test_check_prints_advice_and_the_runs_length(capsys, tmp_path) -> None:
    from engine.demo.build import build_demo

    demo = build_demo(tmp_path / "demo", name="小测", cuda=False)
    code, out, _ = _run(capsys, "config", "check", demo.config)
    assert code == 0 and "nothing found to mend" in out and "run: ~" in out and "save_steps=50:" in out
    source = configs.edit_settings(
        demo.config.read_text(encoding="utf-8"), {"save_steps": "5000", "evaluation_inputs": "[]"}
    )
    (demo.folder / "late.py").write_text(source, encoding="utf-8")
    code, out, _ = _run(capsys, "config", "check", demo.folder / "late.py")
    assert (
        code == 0
        and "warning: save_steps=5000 is more than the whole run" in out
        and "warning: evaluation_inputs is empty" in out
    )
    code, out, _ = _run(capsys, "config", "check", demo.folder / "late.py", "--json", "--no-tokens")
    found = json.loads(out)
    assert found["ok"] is True and {a["topic"] for a in found["advice"]} >= {"evaluation_inputs"}


EVIL = """import os
open({marker!r}, "w").write("ran")
os.system("touch {marker}")
from xtuner.utils import PROMPT_TEMPLATE
#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Data
data_path = "./data.json"
prompt_template = PROMPT_TEMPLATE.internlm2_chat
max_length = 512
evaluation_inputs = ["你是谁"]
"""


def test_a_config_that_writes_a_file_when_run_is_shown_edited_and_checked_without_it(
    capsys, tmp_path, monkeypatch
) -> None:
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.py"
    config.write_text(EVIL.format(marker=str(marker)), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.json").write_text(
        json.dumps([{"conversation": [{"input": "你是谁", "output": "我"}]}], ensure_ascii=False)
    )
    assert _run(capsys, "config", "show", config)[0] == 0
    assert _run(capsys, "config", "set", config, "max_length=1024", "prompt_template=qwen_chat", "--yes")[0] == 0
    assert _run(capsys, "config", "check", config)[0] == 0
    assert _run(capsys, "data", "check", tmp_path / "data.json", "--config", config)[0] == 0
    assert not marker.exists()
    text = config.read_text(encoding="utf-8")
    assert "max_length = 1024\n" in text and "PROMPT_TEMPLATE.qwen_chat\n" in text
    assert text == EVIL.format(marker=str(marker)).replace("512", "1024").replace("internlm2_chat", "qwen_chat")


def test_config_commands_do_not_import_torch(tmp_path) -> None:
    script = (
        "import sys\nfrom tui.cli import main\n"
        f"assert main(['config', 'list', 'qlora']) == 0\n"
        f"assert main(['config', 'copy', {SEED!r}, {str(tmp_path)!r}]) == 0\n"
        f"assert main(['config', 'show', {str(tmp_path / (SEED + '_copy.py'))!r}]) == 0\n"
        f"assert main(['config', 'set', {str(tmp_path / (SEED + '_copy.py'))!r}, 'lr=1e-4', '--yes']) == 0\n"
        "assert 'torch' not in sys.modules and 'xtuner' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_runs_length_says_how_many_checkpoints_are_kept(tmp_path) -> None:
    from engine.xtuner.config_advice import run_length
    from tui.cli.config import describe_length

    config = tmp_path / "c.py"
    config.write_text("save_steps = 50\nsave_total_limit = 2\nmax_epochs = 1\n")
    assert describe_length(run_length(400, {"max_epochs": 1}), config).endswith("save_steps=50: 8 saved, 2 kept")
    config.write_text("save_steps = 50\nsave_total_limit = -1\n")
    assert describe_length(run_length(400, {}), config).endswith("save_steps=50: 8 checkpoints")
