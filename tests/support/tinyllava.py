"""A tiny LLaVA built offline for tests: random CLIP tower, coloured images, a CPU pretrain run, converted."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.files import build_folder, write_atomic
from engine.xtuner import configs, convert
from engine.xtuner.compat import NO_BF16_ON_CPU, trusted_load_env

SEED_CONFIG = "llava_internlm2_chat_1_8b_clip_vit_large_p14_336_e1_gpu8_pretrain"
IMAGE_SIZE = 56
VISION = {
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "image_size": IMAGE_SIZE, "patch_size": 14, "projection_dim": 64,
}  # fmt: skip
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 180, 60),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 40),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
}
PAIRS = (("red", "blue"), ("green", "yellow"), ("black", "white"))
QUESTIONS = ("What colour is this picture?", "Describe the image.", "What do you see?", "Which colours are here?")
MAX_NEW_TOKENS = "8"
MAX_LENGTH = 96
SETTINGS = {
    "prompt_template": "PROMPT_TEMPLATE.internlm2_chat",
    "max_length": str(MAX_LENGTH),
    "batch_size": "1",
    "accumulative_counts": "1",
    "dataloader_num_workers": "0",
    "max_epochs": "1",
    "warmup_ratio": "0.1",  # 0.03 of 36 iterations ends warm-up at its first step, leaving lr at 1e-8
    "lr": "1e-3",
    "save_steps": "500",
    "save_total_limit": "1",
    "evaluation_freq": "500",
    "SYSTEM": repr(""),
    "evaluation_inputs": repr([QUESTIONS[0]]),
}
VISION_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
TRAIN = "xtuner.tools.train"
TIMEOUT_S = 600
TRACEBACK = "Traceback (most recent call last)"


class LlavaBuildError(RuntimeError):
    """The tiny LLaVA could not be built; the message ends with the tool's last words."""


@dataclass(frozen=True, slots=True)
class LlavaPaths:
    """Where the tiny LLaVA's parts live, all inside `folder`."""

    folder: Path
    visual_encoder: Path
    images: Path
    data: Path
    config: Path
    work_dir: Path
    llava: Path


def _paths(folder: Path) -> LlavaPaths:
    """The layout of a tiny LLaVA folder."""
    return LlavaPaths(
        folder=folder,
        visual_encoder=folder / "tiny-clip",
        images=folder / "images",
        data=folder / "data" / "llava.json",
        config=folder / "llava_pretrain.py",
        work_dir=folder / "work",
        llava=folder / "llava",
    )


def image_answers() -> dict[str, str]:
    """File name -> the answer describing it, for every generated image."""
    answers = {f"{name}.png": f"A {name} picture." for name in COLOURS}
    answers |= {f"{left}_{right}.png": f"Left {left}, right {right}." for left, right in PAIRS}
    return answers


def _draw(name: str):
    """The PIL image for a file name of `image_answers`: one colour, or two halves side by side."""
    from PIL import Image

    left, _, right = name.removesuffix(".png").partition("_")
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), COLOURS[left])
    if right:
        image.paste(COLOURS[right], (IMAGE_SIZE // 2, 0, IMAGE_SIZE, IMAGE_SIZE))
    return image


def llava_rows() -> list[dict]:
    """The dataset in LLaVA format: every image asked every question."""
    return [
        {
            "id": f"{Path(image).stem}-{i}",
            "image": image,
            "conversations": [{"from": "human", "value": f"<image>\n{q}"}, {"from": "gpt", "value": answer}],
        }
        for image, answer in image_answers().items()
        for i, q in enumerate(QUESTIONS)
    ]


def _save_vision(staging: Path) -> None:
    """Save a random CLIP vision tower of VISION and its image processor."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    CLIPVisionModel(CLIPVisionConfig(**VISION)).save_pretrained(staging, safe_serialization=True)
    size = {"shortest_edge": IMAGE_SIZE}
    crop = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    CLIPImageProcessor(size=size, crop_size=crop).save_pretrained(staging)


def _save_images(staging: Path) -> None:
    """Draw every image of `image_answers` as PNG."""
    for name in image_answers():
        _draw(name).save(staging / name)


def _text(paths: LlavaPaths) -> Path:
    """Where the tokenized dataset is saved for `offline_processed_text_folder`."""
    return paths.data.parent / "llava_tokenized"


def _tokenize(paths: LlavaPaths, llm: Path, staging: Path) -> None:
    """Tokenize the data as LLaVADataset would, in one process (LLaVADataset itself maps with 32)."""
    import datasets
    from transformers import AutoTokenizer
    from xtuner.dataset.huggingface import process_hf_dataset
    from xtuner.dataset.map_fns import llava_map_fn, template_map_fn_factory
    from xtuner.utils import PROMPT_TEMPLATE

    rows = json.loads(paths.data.read_text(encoding="utf-8"))
    quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        text = process_hf_dataset(
            dataset=datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}),
            tokenizer=AutoTokenizer.from_pretrained(str(llm), padding_side="right"),
            max_length=MAX_LENGTH, dataset_map_fn=llava_map_fn,
            template_map_fn=template_map_fn_factory(template=PROMPT_TEMPLATE.internlm2_chat),
            split="train", remove_unused_columns=False, pack_to_max_length=False, with_image_token=True,
            map_num_proc=1,
        )  # fmt: skip
        text.save_to_disk(str(staging))
    finally:
        if not quiet:
            datasets.enable_progress_bars()


def llava_config(paths: LlavaPaths, llm: Path) -> str:
    """The seed LLaVA pretrain config edited for a short float32 CPU run on the tiny parts."""
    source = configs.find_builtin(SEED_CONFIG).read_text(encoding="utf-8")
    settings = dict(
        SETTINGS,
        llm_name_or_path=repr(str(llm)),
        visual_encoder_name_or_path=repr(str(paths.visual_encoder)),
        data_root=repr(str(paths.folder)),
        data_path=repr(str(paths.data)),
        image_folder=repr(str(paths.images)),
        evaluation_images=repr(str(paths.images / next(iter(image_answers())))),
    )
    source = configs.edit_settings(source, settings)
    source = configs.insert_after_imports(source, NO_BF16_ON_CPU)
    source = configs.rename_import(source, "mmengine.optim", "AmpOptimWrapper", "OptimWrapper")
    source = configs.edit_call(source, "optim_wrapper", {"type": "OptimWrapper"}, drop=("loss_scale", "dtype"))
    source = configs.edit_call(source, "model.llm", {"torch_dtype": "torch.float32"}, drop=("quantization_config",))
    text = {"offline_processed_text_folder": repr(str(_text(paths)))}
    source = configs.edit_call(source, "llava_dataset", text, drop=("data_path",))
    source = configs.edit_call(source, "train_dataloader", {"pin_memory": "False"})
    source = configs.edit_call(source, "custom_hooks.EvaluateChatHook", {"max_new_tokens": MAX_NEW_TOKENS})
    source = configs.edit_call(source, "default_hooks.logger", {"interval": "5"})
    return configs.edit_call(source, "randomness", {"seed": "0"})


def _tail(text: str, lines: int = 12) -> str:
    """The last non-empty lines of a tool's console."""
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:]) or "(no output)"


def _run(module: str, args: list[str], cwd: Path, what: str) -> None:
    """Run `python -m module *args` to the end; LlavaBuildError on a non-zero exit or a Traceback."""
    env = {**os.environ, **trusted_load_env(), "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", module, *args], check=False, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        output = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else exc.output or ""
        raise LlavaBuildError(f"{what} ran past {TIMEOUT_S} s:\n{_tail(output)}") from exc
    if proc.returncode != 0 or TRACEBACK in proc.stdout:
        raise LlavaBuildError(f"{what} failed (exit {proc.returncode}):\n{_tail(proc.stdout)}")


def _last_pth(work_dir: Path) -> Path:
    """The highest `iter_N.pth` of a finished run."""
    found = {int(m.group(1)): p for p in work_dir.glob("iter_*.pth") if (m := re.fullmatch(r"iter_(\d+)\.pth", p.name))}
    if not found:
        raise LlavaBuildError(f"training left no iter_N.pth in {work_dir}")
    return found[max(found)]


def is_complete(paths: LlavaPaths) -> bool:
    """True when the converted LLaVA folder holds its projector."""
    return (paths.llava / "projector" / "config.json").is_file()


def _train(paths: LlavaPaths) -> None:
    """Train the config into the work dir, removing the work dir again when training fails."""
    if paths.work_dir.exists() and any(paths.work_dir.iterdir()):
        raise LlavaBuildError(f"{paths.work_dir} exists without a finished run: move it away first")
    try:
        _run(TRAIN, [str(paths.config), "--work-dir", str(paths.work_dir)], paths.folder, "training")
        _last_pth(paths.work_dir)
    except BaseException:
        shutil.rmtree(paths.work_dir, ignore_errors=True)
        raise


def _config_llm(config: Path) -> Path | None:
    """The `llm_name_or_path` an existing config names, when it names one as a plain string."""
    try:
        value = configs.read_settings(config.read_text(encoding="utf-8")).get("llm_name_or_path")
        return Path(ast.literal_eval(value)) if value else None
    except (OSError, configs.ConfigError, ValueError, SyntaxError, TypeError):
        return None


def build_tiny_llava(folder: Path, llm: Path) -> LlavaPaths:
    """Create (or reuse) a tiny LLaVA on the tiny Llama `llm` in `folder`; never overwrites what is there."""
    paths = _paths(Path(folder).resolve())
    llm = Path(llm).resolve()
    built_on = _config_llm(paths.config) if paths.config.is_file() else None
    if built_on is not None and built_on != llm:
        raise LlavaBuildError(f"{paths.folder} was built on {built_on}, not {llm}: pick another folder")
    if is_complete(paths):
        return paths
    if paths.llava.exists():
        raise LlavaBuildError(f"{paths.llava} exists and has no projector/: move it away first")
    if not (llm / "config.json").is_file():
        raise LlavaBuildError(f"not a model folder (no config.json): {llm}")
    if not all((paths.visual_encoder / name).is_file() for name in VISION_FILES):
        if paths.visual_encoder.exists():
            raise LlavaBuildError(f"{paths.visual_encoder} exists and is not a tiny CLIP: move it away first")
        build_folder(paths.visual_encoder, _save_vision)
    if not paths.images.is_dir():
        build_folder(paths.images, _save_images)
    if not paths.data.is_file():
        write_atomic(paths.data, json.dumps(llava_rows(), indent=1))
    if not _text(paths).is_dir():
        build_folder(_text(paths), lambda out: _tokenize(paths, llm, out))
    if not paths.config.is_file():
        write_atomic(paths.config, llava_config(paths, llm))
    if not list(paths.work_dir.glob("iter_*.pth")):
        _train(paths)
    try:
        convert.pth_to_hf(paths.config, _last_pth(paths.work_dir), paths.llava)
    except convert.ConvertError as exc:
        raise LlavaBuildError(str(exc)) from exc
    return paths
