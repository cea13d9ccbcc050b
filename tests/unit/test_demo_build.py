"""The demo's build step: tiny model + tokenizer, self-cognition data, CPU config; reused, never clobbered."""

from __future__ import annotations

import ast
import json

import pytest

from engine.demo import build as demo
from engine.demo import tinymodel
from engine.xtuner import configs
from engine.xtuner.compat import NO_BF16_ON_CPU

NAME = "小测"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return demo.build_demo(tmp_path_factory.mktemp("demo"), name=NAME, cuda=False)


def _imports(source: str) -> list[str]:
    return [ast.unparse(n) for n in ast.parse(source).body if isinstance(n, ast.Import | ast.ImportFrom)]


def test_layout_and_data(built) -> None:
    assert built.config == built.folder / "config.py" and built.work_dir == built.folder / "work"
    assert tinymodel.is_complete(built.model)
    rows = [json.loads(line) for line in built.data.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(demo.QUESTIONS) * demo.REPEATS >= 200
    inputs = {row["conversation"][0]["input"] for row in rows}
    assert {"你是谁", "请你介绍一下你自己", "你是我的小助手吗"} <= inputs
    assert {row["conversation"][0]["output"] for row in rows} == {demo.answer(NAME)}
    assert demo.answer(NAME) == "我是小测的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦"


def test_cpu_config_is_the_seed_adapted_without_exec(built) -> None:
    source = built.config.read_text(encoding="utf-8")
    seed = configs.find_builtin(demo.SEED_CONFIG).read_text(encoding="utf-8")
    assert "AmpOptimWrapper" not in source and "quantization_config" not in source
    assert "loss_scale" not in source and "os.environ" not in source
    assert _imports(source) == [i.replace("AmpOptimWrapper", "OptimWrapper") for i in _imports(seed)]
    assert NO_BF16_ON_CPU in source.splitlines()
    settings = configs.read_settings(source)
    assert settings["pretrained_model_name_or_path"] == repr(str(built.model))
    assert settings["alpaca_en_path"] == repr(str(built.data))
    assert settings["prompt_template"] == "PROMPT_TEMPLATE.internlm2_chat"
    assert settings["accumulative_counts"] == "1" and settings["SYSTEM"] == "''"
    assert settings["evaluation_inputs"] == repr(["你是谁", "请你介绍一下你自己"])
    assert int(settings["evaluation_freq"]) % demo.LOG_INTERVAL == 0


def test_cpu_config_loads_in_mmengine(built) -> None:
    from mmengine.config import Config

    cfg = Config.fromfile(str(built.config))
    assert cfg.model.llm.torch_dtype is not None and "quantization_config" not in cfg.model.llm
    assert cfg.model.lora.r == int(demo.CPU_LORA_R)
    assert "OptimWrapper" in str(cfg.optim_wrapper.type) and "Amp" not in str(cfg.optim_wrapper.type)
    assert cfg.train_dataloader.dataset.dataset.path == "json"
    assert cfg.train_dataloader.dataset.dataset.data_files == str(built.data)
    assert cfg.train_dataloader.dataset.dataset_map_fn is None
    hook = [h for h in cfg.custom_hooks if "EvaluateChatHook" in str(h.type)][0]
    assert hook.max_new_tokens == int(demo.MAX_NEW_TOKENS) and hook.system == ""
    assert cfg.default_hooks.logger.interval == demo.LOG_INTERVAL


def test_cuda_config_keeps_the_seed_qlora(built) -> None:
    source = demo.demo_config(built.model, built.data, cuda=True)
    assert "AmpOptimWrapper" in source and 'bnb_4bit_quant_type="nf4"' in source
    assert "torch_dtype=torch.float16" in source and NO_BF16_ON_CPU not in source
    assert "r=64" in source
    ast.parse(source)


def test_tokenizer_splits_cjk_per_character_and_round_trips(built) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(built.model), trust_remote_code=True)
    ids = tok.encode("你是谁", add_special_tokens=False)
    assert [tok.decode([i]) for i in ids] == ["你", "是", "谁"]
    answer = demo.answer(NAME)
    assert tok.decode(tok.encode(answer, add_special_tokens=False)) == answer
    unseen = "没见过的字 and English!"
    assert tok.decode(tok.encode(unseen, add_special_tokens=False)) == unseen
    printable = [tok.decode([i]) for i in range(len(tok))]
    assert not [t for t in printable if any(ord(c) < 32 and c not in "\t\n" or ord(c) == 127 for c in t)]
    assert tok.decode(tok.encode("a\x00b", add_special_tokens=False)) == "a<unk>b"
    prompt = "<|im_start|>user\n你是谁<|im_end|>\n<|im_start|>assistant\n"
    encoded = tok.encode(prompt)
    assert encoded[0] == tok.bos_token_id and tok.convert_tokens_to_ids("<|im_end|>") in encoded
    assert tok.decode(encoded) == tok.bos_token + prompt
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "<pad>")
    model = AutoModelForCausalLM.from_pretrained(str(built.model))
    assert model.config.vocab_size == len(tok) and model.config.num_hidden_layers == 2
    assert tok.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id


def test_build_is_idempotent_and_never_overwrites(built) -> None:
    stamps = {p: p.stat().st_mtime_ns for p in (built.config, built.data, built.model / "model.safetensors")}
    edited = built.config.read_text(encoding="utf-8").replace("lr = 2e-3", "lr = 5e-4") + "# mine\n"
    built.config.write_text(edited, encoding="utf-8")
    stamps[built.config] = built.config.stat().st_mtime_ns
    again = demo.build_demo(built.folder, name=NAME, cuda=False)
    assert again == built
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert built.config.read_text(encoding="utf-8") == edited
    assert NAME in built.data.read_text(encoding="utf-8")


def test_missing_config_is_regenerated_identically(built, tmp_path) -> None:
    expected = demo.demo_config(built.model, built.data, cuda=False)
    moved = tmp_path / "config.py"
    built.config.rename(moved)
    try:
        demo.build_demo(built.folder, name=NAME, cuda=False)
        assert built.config.read_text(encoding="utf-8") == expected
    finally:
        moved.replace(built.config)


def test_a_foreign_folder_is_not_clobbered(tmp_path) -> None:
    (tmp_path / "tiny-llama").mkdir()
    (tmp_path / "tiny-llama" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        tinymodel.build_tiny_model(tmp_path / "tiny-llama", ["你好"])
    assert (tmp_path / "tiny-llama" / "notes.txt").read_text() == "mine"


def test_other_name_on_an_existing_demo_is_refused(built) -> None:
    before = built.data.read_text(encoding="utf-8")
    with pytest.raises(demo.DemoError, match="another name"):
        demo.build_demo(built.folder, name="别的名字", cuda=False)
    assert built.data.read_text(encoding="utf-8") == before


@pytest.mark.parametrize("part", ["config.py", "tiny-llama/notes.txt", "data/self_cognition.jsonl"])
def test_a_folder_holding_the_users_own_files_is_refused_untouched(tmp_path, part) -> None:
    mine = tmp_path / part
    mine.parent.mkdir(parents=True, exist_ok=True)
    mine.write_text("the user's own")
    with pytest.raises(demo.DemoError, match="which xtui's demo did not make: pick another --dir"):
        demo.build_demo(tmp_path, name=NAME, cuda=False)
    assert mine.read_text() == "the user's own" and not (tmp_path / demo.MARKER).exists()


def test_other_files_of_the_user_stay_beside_the_demo(built) -> None:
    assert (built.folder / demo.MARKER).is_file()
    notes = built.folder / "notes.md"
    notes.write_text("mine")
    again = demo.build_demo(built.folder, name=NAME, cuda=False)
    assert again.config == built.config and notes.read_text() == "mine"
