"""The embedded demo: a tiny model, a self-cognition dataset and a config that trains it, built offline."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from engine.data.records import write_records
from engine.data.selfcognition import QUESTIONS as QUESTIONS  # the demo asks the recipe's questions
from engine.data.selfcognition import answer, self_cognition_rows
from engine.demo import tinymodel
from engine.errors import DemoError
from engine.files import write_atomic
from engine.xtuner import configs
from engine.xtuner.compat import NO_BF16_ON_CPU

SEED_CONFIG = "internlm2_1_8b_qlora_alpaca_e3"
REPEATS = 20  # 12 questions x 20 = 240 rows, about 90 packed sequences of 128 tokens
EVALUATION_INPUTS = ["你是谁", "请你介绍一下你自己"]
LOG_INTERVAL = 10
# PART 1 of the seed config, as Python source text; the paths are filled in by `demo_config`.
SETTINGS = {
    "prompt_template": "PROMPT_TEMPLATE.internlm2_chat",
    "max_length": "128",
    "pack_to_max_length": "True",
    "batch_size": "1",
    "accumulative_counts": "1",
    "max_epochs": "3",
    "lr": "2e-3",
    "save_steps": "50",
    "save_total_limit": "2",
    "evaluation_freq": "20",
    "SYSTEM": repr(""),
    "evaluation_inputs": repr(EVALUATION_INPUTS),
}
CPU_LORA_R = "8"
MAX_NEW_TOKENS = "40"
RANDOM_SEED = "0"


@dataclass(frozen=True, slots=True)
class DemoPaths:
    """Where the demo's parts live: the folder, the model+tokenizer, the data, the config, the work dir."""

    folder: Path
    model: Path
    data: Path
    config: Path
    work_dir: Path


def _texts(data: Path) -> list[str]:
    """Every input and output of a `conversation` JSON-lines file, for training the tokenizer."""
    texts = []
    for line in data.read_text(encoding="utf-8").splitlines():
        if line.strip():
            for turn in json.loads(line)["conversation"]:
                texts += [turn.get("input", ""), turn.get("output", "")]
    return texts


def demo_config(model: Path, data: Path, cuda: bool) -> str:
    """The seed config's source edited for the demo: PART 1 settings, local JSON data, CPU or QLoRA."""
    source = configs.find_builtin(SEED_CONFIG).read_text(encoding="utf-8")
    settings = dict(SETTINGS, pretrained_model_name_or_path=repr(str(model)), alpaca_en_path=repr(str(data)))
    source = configs.edit_settings(source, settings)
    source = configs.edit_call(source, "alpaca_en.dataset", {"path": repr("json"), "data_files": "alpaca_en_path"})
    source = configs.edit_call(source, "alpaca_en", {"dataset_map_fn": "None", "map_num_proc": "1"})
    source = configs.edit_call(source, "custom_hooks.EvaluateChatHook", {"max_new_tokens": MAX_NEW_TOKENS})
    source = configs.edit_call(source, "default_hooks.logger", {"interval": str(LOG_INTERVAL)})
    source = configs.edit_call(source, "randomness", {"seed": RANDOM_SEED})
    if not cuda:
        source = configs.insert_after_imports(source, NO_BF16_ON_CPU)
        source = configs.rename_import(source, "mmengine.optim", "AmpOptimWrapper", "OptimWrapper")
        source = configs.edit_call(source, "optim_wrapper", {"type": "OptimWrapper"}, drop=("loss_scale", "dtype"))
        source = configs.edit_call(source, "model.llm", {"torch_dtype": "torch.float32"}, drop=("quantization_config",))
        source = configs.edit_call(source, "model.lora", {"r": CPU_LORA_R})
    return source


def _cuda_available() -> bool:
    """Whether torch sees a CUDA device."""
    import torch

    return torch.cuda.is_available()


MARKER = ".xtui-demo"  # the demo's parts in this folder are xtui's to reuse (written before they are built)


def _foreign_parts(paths: DemoPaths) -> list[str]:
    """The demo's file names that are already in the folder but were not made by xtui's demo."""
    if (paths.folder / MARKER).is_file():
        return []
    legacy = (  # a demo built before the marker existed: its config names its own data
        tinymodel.is_complete(paths.model) and paths.data.is_file() and paths.config.is_file()
        and str(paths.data) in paths.config.read_text(encoding="utf-8", errors="replace")
    )  # fmt: skip
    if legacy:
        return []
    return [
        f"{p.relative_to(paths.folder)}{'/' if p.is_dir() else ''}"
        for p in (paths.model, paths.data, paths.config)
        if p.exists()
    ]


def build_demo(folder: Path, name: str = "小明", cuda: bool | None = None) -> DemoPaths:
    """Create (or reuse) the demo's model, data and config in `folder`; never overwrites what is there.

    Parts of an earlier demo in the folder are reused; a folder where the demo's file names hold someone else's
    files is refused (DemoError), so that a user's own config.py is never launched as the demo.
    """
    folder = Path(folder).resolve()
    paths = DemoPaths(
        folder=folder,
        model=folder / "tiny-llama",
        data=folder / "data" / "self_cognition.jsonl",
        config=folder / "config.py",
        work_dir=folder / "work",
    )
    if folder.exists() and not folder.is_dir():
        raise DemoError(f"{folder} is a file, not a folder: pick another --dir")
    foreign = _foreign_parts(paths)
    if foreign:
        raise DemoError(
            f"{folder} already holds {', '.join(foreign)}, which xtui's demo did not make: "
            "pick another --dir (xtui never touches them)"
        )
    if paths.data.is_file() and answer(name) not in paths.data.read_text(encoding="utf-8"):
        raise DemoError(f"the demo in {folder} was built for another name: pick another --dir for {name!r}")
    write_atomic(folder / MARKER, json.dumps({"name": name}, ensure_ascii=False))  # claimed before building
    if not paths.data.is_file():
        write_records(paths.data, self_cognition_rows(name, REPEATS), replace=True)
    if not tinymodel.is_complete(paths.model):
        if paths.model.exists():  # left by an earlier demo of this folder (the marker says the folder is xtui's)
            shutil.rmtree(paths.model)
        tinymodel.build_tiny_model(paths.model, _texts(paths.data))
    if not paths.config.exists():
        wants_cuda = _cuda_available() if cuda is None else cuda
        write_atomic(paths.config, demo_config(paths.model, paths.data, wants_cuda))
    return paths
