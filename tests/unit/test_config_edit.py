"""PART 1 edits typed as KEY=VALUE: values checked, the rest of the file byte for byte, still a config mmengine loads."""

from __future__ import annotations

import os

import pytest

from engine.errors import XtunerError
from engine.xtuner import configs
from engine.xtuner.config_edit import plan_edit, setting_text, split_assignment, write_edit
from engine.xtuner.configs import ConfigError, copy_builtin

SEED = "internlm2_chat_1_8b_qlora_alpaca_e3"


@pytest.fixture
def copied(tmp_path):
    return copy_builtin(SEED, tmp_path / "cfg")


@pytest.fixture(scope="module")
def seed_source() -> str:
    return configs.find_builtin(SEED).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "name, typed, expected",
    [
        ("prompt_template", "qwen_chat", "PROMPT_TEMPLATE.qwen_chat"),
        ("prompt_template", "PROMPT_TEMPLATE.llama3_chat", "PROMPT_TEMPLATE.llama3_chat"),
        ("SYSTEM", "你是小助手", "'你是小助手'"),
        ("SYSTEM", "'quoted'", "'quoted'"),
        ("SYSTEM", "123", "'123'"),
        ("SYSTEM", "SYSTEM_TEMPLATE.alpaca", "SYSTEM_TEMPLATE.alpaca"),
        ("alpaca_en_path", "./data/x.json", "'./data/x.json'"),
        ("pretrained_model_name_or_path", "internlm/internlm2-chat-7b", "'internlm/internlm2-chat-7b'"),
        ("lr", "1e-4", "1e-4"),
        ("evaluation_inputs", '["你是谁", "请你介绍一下你自己"]', '["你是谁", "请你介绍一下你自己"]'),
        ("pack_to_max_length", "False", "False"),
    ],
)
def test_typed_values_become_python_source(seed_source, name, typed, expected) -> None:
    assert setting_text(name, typed, seed_source) == expected


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("max_length=abc", "is not a Python value"),
        ("max_length=0", "max_length must be a whole number of at least 1, not 0"),
        ("batch_size=1.5", "batch_size must be a whole number"),
        ("lr=2", "lr must be a number between 0 and 1"),
        ("save_total_limit=0", "-1 (keep all) or"),
        ("warmup_ratio=1", "from 0 up to"),
        ("betas=(0.9,)", "two numbers"),
        ("evaluation_inputs='你是谁'", "a list of questions"),
        ("pack_to_max_length=1", "True or False"),
        ("max_norm='1'", "max_norm must be a number above 0"),
        ("resume=1", "resume holds bool (False), not int (1)"),
        ("prompt_template=no_such", "no prompt template named 'no_such'"),
        ("alpaca_en_path=./missing.json", "no such file or folder"),
        ("pretrained_model_name_or_path=/no/such/model", "no such file or folder: /no/such/model"),
        ("no_such_setting=1", "'no_such_setting' is not a top-level assignment"),
        ("tokenizer=1", "tokenizer is not a setting"),
        ("=1", "not KEY=VALUE"),
        ("lr", "not KEY=VALUE"),
    ],
)
def test_wrong_values_are_refused_with_what_is_wanted(copied, tmp_path, assignment, message) -> None:
    with pytest.raises(XtunerError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_edit(copied, [assignment], tmp_path)


def test_an_edit_changes_only_its_values_and_still_loads_in_mmengine(copied, tmp_path) -> None:
    data = tmp_path / "data" / "self.json"
    data.parent.mkdir()
    data.write_text("[]")
    before = copied.read_bytes()
    edit = plan_edit(
        copied,
        ["max_length=512", "prompt_template=qwen_chat", "alpaca_en_path=./data/self.json", "SYSTEM=你是小助手"],
        tmp_path,
    )
    assert copied.read_bytes() == before  # planned, not written
    assert [c.name for c in edit.changes] == ["max_length", "prompt_template", "alpaca_en_path", "SYSTEM"]
    assert edit.changes[0].before == "2048" and edit.changes[0].after == "512"
    assert (
        "-max_length = 2048\n" in edit.diff
        and "+max_length = 512\n" in edit.diff
        and edit.diff.startswith(f"--- {copied}\n+++ {copied}\n")
    )
    write_edit(edit)
    after = copied.read_bytes().decode()
    changed = [(a, b) for a, b in zip(before.decode().splitlines(), after.splitlines(), strict=True) if a != b]
    assert len(changed) == 4 and "# Copyright (c) OpenMMLab. All rights reserved." in after
    assert "batch_size = 1  # per_device" in after
    from mmengine.config import Config

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        cfg = Config.fromfile(str(copied))
    finally:
        os.chdir(cwd)
    assert cfg.max_length == 512 and cfg.SYSTEM == "你是小助手" and cfg.alpaca_en_path == "./data/self.json"
    assert cfg.prompt_template["SUFFIX"] == "<|im_end|>" and "im_start" in cfg.prompt_template["INSTRUCTION"]


def test_crlf_mode_and_links_are_kept_and_a_changed_file_is_not_overwritten(tmp_path) -> None:
    config = tmp_path / "real.py"
    config.write_bytes(b"# PART 1\r\nlr = 2e-4  # mine\r\nmax_epochs = 3\r\n")
    config.chmod(0o640)
    link = tmp_path / "link.py"
    link.symlink_to(config)
    edit = plan_edit(link, ["lr=1e-3"], tmp_path)
    write_edit(edit)
    assert config.read_bytes() == b"# PART 1\r\nlr = 1e-3  # mine\r\nmax_epochs = 3\r\n"
    assert link.is_symlink() and config.stat().st_mode & 0o777 == 0o640
    stale = plan_edit(link, ["max_epochs=1"], tmp_path)
    config.write_bytes(config.read_bytes() + b"# edited by hand meanwhile\r\n")
    with pytest.raises(ConfigError, match="changed since it was read"):
        write_edit(stale)
    assert config.read_bytes().endswith(b"meanwhile\r\n")


def test_copy_is_copy_cfg_and_never_overwrites(tmp_path, seed_source) -> None:
    target = copy_builtin(SEED, tmp_path / "a" / "b")
    assert target == tmp_path / "a" / "b" / f"{SEED}_copy.py" and target.read_text(encoding="utf-8") == seed_source
    target.write_text("# mine")
    with pytest.raises(ConfigError, match="already exists"):
        copy_builtin(SEED, tmp_path / "a" / "b")
    assert target.read_text() == "# mine" and [p.name for p in target.parent.iterdir()] == [target.name]
    with pytest.raises(ConfigError, match="no built-in config"):
        copy_builtin("no_such_config", tmp_path)


def test_split_assignment_keeps_equals_signs_in_the_value() -> None:
    assert split_assignment("SYSTEM=a=b") == ("SYSTEM", "a=b")
