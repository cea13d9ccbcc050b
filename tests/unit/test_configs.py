"""Built-in config discovery and settings read/edit by syntax tree, on the real xtuner configs."""

from __future__ import annotations

import ast

import pytest

from engine.xtuner import configs
from engine.xtuner.configs import ConfigError

SEED = "internlm2_1_8b_qlora_alpaca_e3"


@pytest.fixture(scope="module")
def seed_source() -> str:
    return configs.find_builtin(SEED).read_text(encoding="utf-8")


def test_builtin_configs_are_found_without_importing_xtuner() -> None:
    names = configs.list_builtin()
    assert len(names) > 100 and SEED in names and names == sorted(names)
    assert not any(n.startswith("_") for n in names)
    assert configs.list_builtin("INTERNLM2_1_8B_QLORA") == [n for n in names if "internlm2_1_8b_qlora" in n]
    assert configs.find_builtin(SEED + ".py") == configs.find_builtin(SEED)
    with pytest.raises(ConfigError):
        configs.find_builtin("no_such_config")


def test_copy_builtin_like_copy_cfg(tmp_path, seed_source) -> None:
    copied = configs.copy_builtin(SEED, tmp_path / "cfg")
    assert copied.name == f"{SEED}_copy.py" and copied.read_text(encoding="utf-8") == seed_source


def test_read_settings_of_the_seed_config(seed_source) -> None:
    settings = configs.read_settings(seed_source)
    assert settings["pretrained_model_name_or_path"] == '"internlm/internlm2-1_8b"'
    assert settings["prompt_template"] == "PROMPT_TEMPLATE.default"
    assert settings["lr"] == "2e-4" and settings["max_length"] == "2048"
    assert settings["betas"] == "(0.9, 0.999)" and settings["optim_type"] == "AdamW"
    assert settings["evaluation_inputs"].startswith('["请给我介绍五个上海的景点"')
    assert "tokenizer" not in settings and "model" not in settings  # dict(...) calls are not settings
    assert "sampler" not in settings  # a conditional expression is not either


def test_edit_round_trip_keeps_everything_else_byte_identical(seed_source) -> None:
    changes = {
        "lr": "1e-3",
        "evaluation_inputs": repr(["你是谁", "请你介绍一下你自己"]),
        "prompt_template": "PROMPT_TEMPLATE.internlm2_chat",
        "SYSTEM": repr(""),
        "max_norm": "2",
    }
    edited = configs.edit_settings(seed_source, changes)
    settings = configs.read_settings(edited)
    assert {k: settings[k] for k in changes} == changes
    assert "max_norm = 2  # grad clip" in edited
    assert "# Copyright (c) OpenMMLab. All rights reserved." in edited
    before, after = seed_source.splitlines(), edited.splitlines()
    assert len(before) == len(after)
    assert sum(a != b for a, b in zip(before, after)) == len(changes)
    assert configs.edit_settings(edited, {k: configs.read_settings(seed_source)[k] for k in changes}) == seed_source


def test_edit_handles_multiline_values_and_non_ascii_columns() -> None:
    source = 'x = ["你好", "世界"]; y = 1  # 注释\nz = [\n    1,\n    2,\n]  # keep\n'
    edited = configs.edit_settings(source, {"y": "2", "z": "[3]", "x": repr("好")})
    assert edited == "x = '好'; y = 2  # 注释\nz = [3]  # keep\n"


def test_editing_an_unknown_or_nested_name_raises(seed_source) -> None:
    with pytest.raises(ConfigError, match="no_such_setting"):
        configs.edit_settings(seed_source, {"no_such_setting": "1"})
    with pytest.raises(ConfigError, match="type"):
        configs.edit_settings(seed_source, {"type": "1"})  # only a keyword inside dict(...)
    with pytest.raises(ConfigError, match="expression"):
        configs.edit_settings(seed_source, {"lr": "1e-3 +"})
    with pytest.raises(ConfigError, match="not valid Python"):
        configs.read_settings("x = (")


def test_edit_call_sets_adds_and_drops_keywords(seed_source) -> None:
    edited = configs.edit_call(
        seed_source, "model.llm", {"torch_dtype": "torch.float32"}, drop=("quantization_config",)
    )
    edited = configs.edit_call(edited, "optim_wrapper", {"type": "OptimWrapper"}, drop=("loss_scale", "dtype"))
    edited = configs.edit_call(edited, "custom_hooks.EvaluateChatHook", {"max_new_tokens": "40"})
    assert "quantization_config" not in edited and "BitsAndBytesConfig," not in edited
    assert "loss_scale" not in edited and 'dtype="float16"' not in edited
    assert "        prompt_template=prompt_template,\n        max_new_tokens=40,\n    ),\n]" in edited
    ast.parse(edited)
    assert configs.edit_call("a = dict(b=1, c=2)\n", "a", drop=("c",)) == "a = dict(b=1)\n"
    assert configs.edit_call("a = dict(b=1, c=2)\n", "a", {"d": "3"}, drop=("b",)) == "a = dict(c=2, d=3)\n"


def test_edit_call_refuses_a_changed_shape(seed_source) -> None:
    with pytest.raises(ConfigError, match="no_such"):
        configs.edit_call(seed_source, "model.llm", drop=("no_such",))
    with pytest.raises(ConfigError, match="EvaluateChat"):
        configs.edit_call(seed_source, "custom_hooks.EvaluateChat", {"x": "1"})
    with pytest.raises(ConfigError, match="not a call"):
        configs.edit_call(seed_source, "lr", {"x": "1"})


def test_statement_insert_and_import_rename(seed_source) -> None:
    line = 'setattr(__import__("torch").cpu, "is_bf16_supported", lambda: False)'
    edited = configs.insert_after_imports(seed_source, line)
    assert f"from xtuner.utils import PROMPT_TEMPLATE, SYSTEM_TEMPLATE\n{line}\n" in edited
    renamed = configs.rename_import(edited, "mmengine.optim", "AmpOptimWrapper", "OptimWrapper")
    assert "from mmengine.optim import OptimWrapper, CosineAnnealingLR, LinearLR\n" in renamed
    with pytest.raises(ConfigError):
        configs.rename_import(renamed, "mmengine.optim", "AmpOptimWrapper", "OptimWrapper")
    with pytest.raises(ConfigError):
        configs.insert_after_imports(seed_source, "a = (")
