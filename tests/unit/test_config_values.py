"""A config's values and datasets read from its syntax tree: arithmetic followed, nothing huge built, nothing run."""

from __future__ import annotations

import pytest

from engine.xtuner import configs
from engine.xtuner.config_datasets import config_training
from engine.xtuner.config_values import config_values, part1_settings

LLAVA = "llava_internlm2_chat_1_8b_qlora_clip_vit_large_p14_336_lora_e1_gpu8_finetune"
SEED = "internlm2_chat_1_8b_qlora_alpaca_e3"


def test_literals_and_arithmetic_on_earlier_names_are_worked_out() -> None:
    source = (
        "a = 2\nb = a * 3\nroot = './data/'\npath = root + 'x.json'\nn = int(2048 - (336 / 14) ** 2)\n"
        "pair = (0.9, a)\nneg = -a\nacc = 16\nacc *= b\nflag = not False\nd = {'k': [a, 1.5]}\nm = max(a, 7)\n"
    )
    assert config_values(source) == {
        "a": 2, "b": 6, "root": "./data/", "path": "./data/x.json", "n": 1472, "pair": (0.9, 2), "neg": -2,
        "acc": 96, "flag": True, "d": {"k": [2, 1.5]}, "m": 7,
    }  # fmt: skip


@pytest.mark.parametrize(
    "line",
    [
        "x = f()",
        "x = PROMPT_TEMPLATE.default",
        "x = 1 if y else 2",
        "x = 'a' * 10**12",
        "x = [0] * 10**9",
        "x = 9 ** 9 ** 9",
        "x = 1 / 0",
        "x = 1 << 100000",
        "x = '%s' % 1",
        "x = (2 ** 64) ** 64",
    ],
)
def test_what_only_running_would_tell_or_what_is_huge_stays_unknown(line) -> None:
    assert "x" not in config_values(f"y = 1\n{line}\n")


def test_a_name_set_again_in_a_block_or_by_an_import_is_unknown() -> None:
    source = (
        "a = 1\nb = 2\nc = 3\nfor a in range(3):\n    pass\nif True:\n    b = 5\nfrom os import sep as c\nd = a + 1\n"
    )
    assert config_values(source) == {}


def test_part1_settings_of_a_builtin_with_headings_and_comments() -> None:
    settings = {s.name: s for s in part1_settings(configs.find_builtin(LLAVA).read_text(encoding="utf-8"))}
    assert "tokenizer" not in settings and "model" not in settings and "log_level" not in settings  # later PARTs
    data = settings["data_path"]
    assert data.text == 'data_root + "LLaVA-Instruct-150K/llava_v1_5_mix665k.json"' and data.section == "Data"
    assert data.known and data.value == "./data/llava_data/LLaVA-Instruct-150K/llava_v1_5_mix665k.json"
    assert settings["max_length"].value == 1472 and settings["batch_size"].comment == "per_device"
    assert (
        settings["prompt_template"].text == "PROMPT_TEMPLATE.internlm2_chat" and not settings["prompt_template"].known
    )
    assert settings["save_total_limit"].section == "Save" and settings["llm_name_or_path"].line < data.line


def test_without_part_banners_every_top_level_assignment_is_a_setting() -> None:
    names = [s.name for s in part1_settings("# Model\nmodel_path = './m'  # mine\nlr = 1e-3\n")]
    assert (
        names == ["model_path", "lr"] and part1_settings("# Model\nmodel_path = './m'  # mine\n")[0].comment == "mine"
    )


def test_datasets_of_builtin_configs() -> None:
    llava = config_training(configs.find_builtin(LLAVA).read_text(encoding="utf-8"))
    (dataset,) = llava.datasets
    assert dataset.files == ("./data/llava_data/LLaVA-Instruct-150K/llava_v1_5_mix665k.json",)
    assert dataset.map_fn == "llava_map_fn" and dataset.template == "internlm2_chat"
    assert dataset.image_folder == "./data/llava_data/llava_images"
    seed = config_training(configs.find_builtin(SEED).read_text(encoding="utf-8"))
    assert seed.datasets[0].files == ("tatsu-lab/alpaca",) and seed.datasets[0].map_fn == "alpaca_map_fn"
    assert seed.chat_template == "internlm2_chat" and seed.has_chat_hook and seed.save_last


def test_two_datasets_mixed_each_with_its_file_map_fn_and_template() -> None:
    source = (
        "from xtuner.utils import PROMPT_TEMPLATE\nmine = './mine.json'\ngeneral = './general.jsonl'\n"
        "prompt_template = PROMPT_TEMPLATE.qwen_chat\n"
        "a = dict(type=f, dataset=dict(type=load_dataset, path='json', data_files=dict(train=mine), split='train'),\n"
        "         dataset_map_fn=None, template_map_fn=dict(type=g, template=prompt_template))\n"
        "b = dict(type=f, dataset=dict(type=load_dataset, path='json', data_files=general),\n"
        "         dataset_map_fn=openai_map_fn, template_map_fn=dict(type=g, template=PROMPT_TEMPLATE.default))\n"
        "train_dataset = dict(type=ConcatDataset, datasets=[a, b])\n"
        "custom_hooks = [dict(type=EvaluateChatHook, prompt_template='xtuner.utils.PROMPT_TEMPLATE.llama3_chat')]\n"
        "default_hooks = dict(checkpoint=dict(type=CheckpointHook, interval=5, save_last=False))\n"
    )
    training = config_training(source)
    assert [(d.files, d.map_fn, d.template) for d in training.datasets] == [
        (("./mine.json",), "None", "qwen_chat"), (("./general.jsonl",), "openai_map_fn", "default"),
    ]  # fmt: skip
    assert training.chat_template == "llama3_chat" and not training.save_last


def test_reading_never_runs_the_config(tmp_path) -> None:
    marker = tmp_path / "ran"
    source = f"open({str(marker)!r}, 'w').write('x')\nimport os\nos.system('touch {marker}')\nlr = 1e-3\n"
    assert config_values(source) == {"lr": 1e-3} and part1_settings(source)[0].name == "lr"
    config_training(source)
    assert not marker.exists()
