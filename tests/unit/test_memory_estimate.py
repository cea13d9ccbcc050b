"""The GPU memory estimate: grows with what costs memory, ZeRO splits it, it meets the H200's measured figures, and a
config is read (model shape from its config.json, method, r, lengths) without running it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from engine.gpu import GpuReading
from engine.xtuner import configs
from engine.xtuner.memory_estimate import (
    GIB,
    EstimateError,
    Method,
    ModelShape,
    Training,
    estimate,
    estimate_config,
    fit,
)

MIB = 1 << 20
# InternLM2-1.8B's shape as a Llama (../shared/GPU.md): the model of the measured figures
SHAPE = ModelShape(vocab=92544, hidden=2048, layers=24, intermediate=8192, heads=16, kv_heads=8, head_dim=128)
CONFIG_JSON = {
    "architectures": ["LlamaForCausalLM"], "vocab_size": 92544, "hidden_size": 2048, "num_hidden_layers": 24,
    "intermediate_size": 8192, "num_attention_heads": 16, "num_key_value_heads": 8, "tie_word_embeddings": False,
    "torch_dtype": "float16",
}  # fmt: skip
REFERENCE = Training(Method.LORA, lora_r=64, max_length=1024, batch_size=1, dtype_bytes=2)


def mib(run: Training, shape: ModelShape = SHAPE) -> float:
    """The estimate in MiB, the unit of mmengine's logged `memory`."""
    return estimate(shape, run).total / MIB


def test_the_shape_has_the_1_89b_parameters_of_the_reference_model() -> None:
    assert round(SHAPE.parameters / 1e9, 2) == 1.89


@pytest.mark.parametrize(
    ("run", "measured"), [(REFERENCE, (9400, 10000)), (replace(REFERENCE, method=Method.QLORA), (4960, 4960))]
)
def test_within_20_percent_of_the_figures_measured_on_the_h200(run, measured) -> None:
    for figure in measured:  # plain xtuner 0.2.0, max_length 1024 packed, batch 1: the log's `memory` (MiB)
        assert abs(mib(run) - figure) / figure < 0.2, (mib(run), figure)


@pytest.mark.parametrize("method", list(Method))
def test_more_tokens_more_memory(method) -> None:
    run = replace(REFERENCE, method=method)
    lengths = [mib(replace(run, max_length=n)) for n in (256, 512, 1024, 2048, 4096, 8192)]
    batches = [mib(replace(run, batch_size=n)) for n in (1, 2, 4, 8)]
    for grown in (lengths, batches):  # a full fine-tune's short runs peak at AdamW's step, whatever their length
        assert grown == sorted(grown) and grown[-1] > grown[0]
    if method is not Method.FULL:
        assert len(set(lengths)) == len(lengths) and len(set(batches)) == len(batches)


def test_a_larger_lora_rank_more_memory_and_4_bits_less() -> None:
    ranks = [mib(replace(REFERENCE, lora_r=r)) for r in (8, 16, 64, 256)]
    assert ranks == sorted(ranks) and len(set(ranks)) == 4
    assert mib(replace(REFERENCE, method=Method.QLORA)) < mib(REFERENCE) < mib(replace(REFERENCE, method=Method.FULL))


def test_gradient_checkpointing_saves_memory() -> None:
    assert mib(replace(REFERENCE, gradient_checkpointing=False)) > mib(REFERENCE) + 1000


def parts(run: Training) -> dict[str, int]:
    """The estimate's parts by name."""
    return dict(estimate(SHAPE, run).parts)


def test_zero3_divides_the_weights_by_the_ranks() -> None:
    full = Training(Method.FULL, max_length=1024, dtype_bytes=2, zero_stage=3)
    gathered = parts(replace(full, world_size=1, offload=True))["weights"]  # what ZeRO-3 keeps whole on each GPU
    one, eight = (parts(replace(full, world_size=n))["weights"] - gathered for n in (1, 8))
    assert one == 8 * eight == SHAPE.parameters * 2
    assert parts(replace(full, world_size=8))["optimizer"] * 8 == SHAPE.parameters * 12


def test_zero_stages_split_more_as_they_go_up_and_offload_leaves_no_optimizer() -> None:
    run = Training(Method.FULL, max_length=1024, dtype_bytes=2, world_size=4)
    by_stage = [mib(replace(run, zero_stage=stage)) for stage in (1, 2, 3)]
    assert by_stage == sorted(by_stage, reverse=True)
    assert parts(replace(run, zero_stage=1))["gradients"] == 4 * parts(replace(run, zero_stage=2))["gradients"]
    assert parts(replace(run, zero_stage=2, offload=True))["optimizer"] == 0


def test_more_gpus_need_less_each_under_zero_but_not_without_deepspeed() -> None:
    run = Training(Method.FULL, max_length=1024, dtype_bytes=2, zero_stage=3)
    assert mib(replace(run, world_size=8)) < mib(replace(run, world_size=2))
    plain = replace(REFERENCE, zero_stage=0)
    assert mib(replace(plain, world_size=8)) == mib(plain)


def test_shape_from_config_json_and_what_it_refuses() -> None:
    assert ModelShape.from_config(CONFIG_JSON) == SHAPE
    assert ModelShape.from_config({**CONFIG_JSON, "tie_word_embeddings": True}).parameters < SHAPE.parameters
    with pytest.raises(EstimateError, match="mixture-of-experts"):
        ModelShape.from_config({**CONFIG_JSON, "num_local_experts": 8})
    with pytest.raises(EstimateError, match="hidden_size"):
        ModelShape.from_config({k: v for k, v in CONFIG_JSON.items() if k != "hidden_size"})


def config_with_model(tmp_path: Path, name: str = "internlm2_1_8b_qlora_alpaca_e3", **edits) -> Path:
    """A built-in config whose model is a local folder holding only the reference shape's config.json."""
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text(json.dumps(CONFIG_JSON), encoding="utf-8")
    source = configs.find_builtin(name).read_text(encoding="utf-8")
    source = configs.edit_settings(source, {"pretrained_model_name_or_path": repr(str(model)), **edits})
    path = tmp_path / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    return path


def test_a_qlora_config_is_read_without_running_it(tmp_path) -> None:
    found = estimate_config(config_with_model(tmp_path, max_length="1024"), tmp_path)
    assert found.training == Training(Method.QLORA, lora_r=64, max_length=1024, batch_size=1, dtype_bytes=2)
    assert found.total == estimate(SHAPE, found.training).total
    assert "qlora r64, 1 x 1024 tokens" in found.describe()


def test_lora_without_4_bits_and_a_full_config_with_deepspeed(tmp_path) -> None:
    qlora = config_with_model(tmp_path)
    lora = tmp_path / "lora.py"
    lora.write_text(configs.edit_call(qlora.read_text(), "model.llm", drop=("quantization_config",)))
    assert estimate_config(lora, tmp_path).training.method is Method.LORA
    full = estimate_config(config_with_model(tmp_path, "internlm2_1_8b_full_alpaca_e3"), tmp_path, "deepspeed_zero3", 8)
    assert (full.training.method, full.training.dtype_bytes) == (Method.FULL, 4)  # no torch_dtype: float32
    assert (full.training.zero_stage, full.training.world_size, full.training.offload) == (3, 8, False)
    assert estimate_config(qlora, tmp_path, "deepspeed_zero2_offload", 2).training.offload


def test_a_hub_model_is_found_in_the_local_cache_or_named(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    config = tmp_path / "builtin.py"
    config.write_text(configs.find_builtin("internlm2_1_8b_qlora_alpaca_e3").read_text())  # internlm/internlm2-1_8b
    with pytest.raises(EstimateError, match="no config.json of the model 'internlm/internlm2-1_8b'"):
        estimate_config(config, tmp_path)
    snapshot = tmp_path / "hub" / "models--internlm--internlm2-1_8b" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(CONFIG_JSON))
    assert estimate_config(config, tmp_path).training.max_length == 2048


def gpu(index: int, free_gib: float) -> GpuReading:
    """An H200 with `free_gib` free."""
    total = 140 * GIB
    return GpuReading(index, "NVIDIA H200", total - int(free_gib * GIB), total, 0, 30, None, None)


def test_fit_compares_with_the_least_free_gpu_the_run_uses() -> None:
    found = estimate(SHAPE, REFERENCE)
    ok, line = fit(found, [gpu(0, 100), gpu(1, 5)], None, 1)
    assert ok and "GPU 0 has 100.0 GiB free: fits" in line
    ok, line = fit(found, [gpu(0, 100), gpu(1, 5)], "0,1", 2)
    assert not ok and "GPU 1 has 5.0 GiB free: will not fit" in line
    assert fit(found, [], None, 1) == (True, f"peak {found.describe()}")


def test_train_dry_run_and_config_check_print_the_estimate(capsys, tmp_path, monkeypatch) -> None:
    from tui.cli import main

    monkeypatch.chdir(tmp_path)
    config = config_with_model(tmp_path, max_length="1024")
    assert main(["train", str(config), "--work-dir", str(tmp_path / "work"), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == "# dry run: nothing started"
    assert out[-1].startswith("# memory: peak ~5.1 GiB per GPU for qlora r64, 1 x 1024 tokens (weights 2.4")
    assert main(["train", str(config), "--work-dir", "w", "--dry-run", "--deepspeed", "deepspeed_zero2"]) == 0
    assert "ZeRO-2 on 1" in capsys.readouterr().out.splitlines()[-1]
    main(["config", "check", str(config), "--no-tokens"])
    assert any(line.startswith("memory: peak ~5.1 GiB per GPU") for line in capsys.readouterr().out.splitlines())
    main(["config", "check", str(config), "--no-tokens", "--json"])
    assert json.loads(capsys.readouterr().out)["memory"].startswith("memory: peak ~5.1 GiB")


def test_a_model_without_a_local_config_json_is_said_so(capsys, tmp_path, monkeypatch) -> None:
    from tui.cli import main

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    main(["config", "check", "internlm2_1_8b_qlora_alpaca_e3", "--no-tokens"])
    out = capsys.readouterr().out
    assert "memory: not estimated (no config.json of the model 'internlm/internlm2-1_8b' on this machine)" in out


def test_llava_trains_the_llms_lora_and_its_pretraining_is_not_estimated(tmp_path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(CONFIG_JSON))
    for name in configs.list_builtin("llava_internlm2_chat_1_8b"):
        path = tmp_path / f"{name}.py"
        source = configs.find_builtin(name).read_text(encoding="utf-8")
        path.write_text(configs.edit_settings(source, {"llm_name_or_path": repr(str(model))}))
        if name.endswith("_pretrain"):
            with pytest.raises(EstimateError, match="frozen LLM"):
                estimate_config(path, tmp_path)
        else:
            found = estimate_config(path, tmp_path)
            assert (found.training.method, found.training.lora_r) == (Method.QLORA, 512)
            assert found.notes == ("the visual encoder is not counted",)


def test_lora_target_modules_count_only_the_linears_named(tmp_path) -> None:
    qlora = config_with_model(tmp_path)
    for targets, indexes in (('["q_proj", "v_proj"]', (0, 2)), ('["wqkv", "w2"]', (0, 1, 2, 6)), ('["lm_x"]', ())):
        path = tmp_path / "targets.py"
        path.write_text(configs.edit_call(qlora.read_text(), "model.lora", {"target_modules": targets}))
        assert estimate_config(path, tmp_path).training.lora_targets == indexes
    assert SHAPE.lora_params(64, (0, 2)) == 24 * 64 * ((2048 + 2048) + (2048 + 1024))
    assert SHAPE.lora_params(64, (0, 2)) < SHAPE.lora_params(64) == SHAPE.lora_params(64, tuple(range(7)))


def test_a_tiny_model_is_said_in_mib_not_as_0_gib() -> None:
    demo = ModelShape(vocab=321, hidden=128, layers=2, intermediate=256, heads=4, kv_heads=4, head_dim=32)  # xtui demo
    line = estimate(demo, replace(REFERENCE, lora_r=8, max_length=256)).describe()
    assert line.startswith("~9.") and " MiB per GPU for lora r8, 1 x 256 tokens (weights 1." in line, line
    assert "()" not in line and " GiB per GPU for lora r64" in estimate(SHAPE, REFERENCE).describe()
