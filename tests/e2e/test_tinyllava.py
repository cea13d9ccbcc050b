"""The tiny LLaVA: built offline by the real xtuner on the CPU, reused, then loaded and asked about an image."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from engine.chat import llava
from tests.support import tinyllava
from tests.support.tinyllava import LlavaBuildError, build_tiny_llava


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tinyllava.LlavaPaths:
    from engine.demo.build import build_demo

    root = tmp_path_factory.mktemp("tinyllava")
    return build_tiny_llava(root / "llava", build_demo(root / "demo", cuda=False).model)


@pytest.fixture(scope="module")
def parts(built) -> llava.LlavaParts:
    import torch
    from transformers import AutoModelForCausalLM

    llm = AutoModelForCausalLM.from_pretrained(str(built.folder.parent / "demo" / "tiny-llama"))
    return llava.load_llava(llm, built.visual_encoder, built.llava, torch.float32, "cpu")


def _image(built, name: str):
    from PIL import Image

    return Image.open(built.images / name)


def _prompt_ids(built) -> list[int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(built.folder.parent / "demo" / "tiny-llama"))
    before = tok.encode("<|im_start|>user\n")
    after = tok.encode("\nWhat colour is this picture?<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
    return [*before, llava.IMAGE_TOKEN_INDEX, *after]


@pytest.mark.e2e
def test_build_layout_and_cpu_config(built) -> None:
    assert (built.llava / "projector" / "config.json").is_file() and tinyllava.is_complete(built)
    assert list(built.work_dir.glob("iter_*.pth"))
    log = "".join(p.read_text(encoding="utf-8") for p in built.work_dir.glob("*/*.log"))
    assert "Iter(train)" in log and "Traceback" not in log
    rows = json.loads(built.data.read_text(encoding="utf-8"))
    assert len(rows) >= 24 and all(row["conversations"][0]["value"].startswith("<image>\n") for row in rows)
    assert {row["image"] for row in rows} == {p.name for p in built.images.glob("*.png")}
    source = built.config.read_text(encoding="utf-8")
    ast.parse(source)
    assert "AmpOptimWrapper" not in source and "quantization_config" not in source and "import os" not in source
    assert "is_bf16_supported" in source and "torch.float32" in source
    vision = json.loads((built.visual_encoder / "config.json").read_text())
    assert (vision["hidden_size"], vision["image_size"], vision["patch_size"]) == (64, 56, 14)


@pytest.mark.e2e
def test_build_is_reused(built) -> None:
    projector = built.llava / "projector" / "model.safetensors"
    before = projector.stat().st_mtime_ns
    assert build_tiny_llava(built.folder, built.folder.parent / "demo" / "tiny-llama") == built
    assert projector.stat().st_mtime_ns == before


@pytest.mark.e2e
def test_image_chat_generates(built, parts) -> None:
    import torch

    features = llava.image_features(parts, _image(built, "red.png"))
    hidden = parts.llm.config.hidden_size
    assert features.shape == (1, (56 // 14) ** 2, hidden)
    ids = _prompt_ids(built)
    inputs = llava.multimodal_embeds(parts, ids, features)
    assert inputs["inputs_embeds"].shape == (1, len(ids) - 1 + features.shape[1], hidden)
    with torch.no_grad():
        out = parts.llm.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert 1 <= out.shape[1] <= 8


@pytest.mark.e2e
def test_different_images_give_different_features(built, parts) -> None:
    red = llava.image_features(parts, _image(built, "red.png"))
    assert not red.allclose(llava.image_features(parts, _image(built, "blue.png")))
    assert red.allclose(llava.image_features(parts, _image(built, "red.png")))


@pytest.mark.e2e
def test_placeholders_must_match_images(built, parts) -> None:
    features = llava.image_features(parts, _image(built, "red.png"))
    with pytest.raises(llava.LlavaError, match="2 image placeholders"):
        llava.multimodal_embeds(parts, [*_prompt_ids(built), llava.IMAGE_TOKEN_INDEX], features)


@pytest.mark.e2e
def test_failed_training_is_reported_and_cleaned_up(built, tmp_path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "llava_pretrain.py").write_text('raise RuntimeError("no such config")\n')
    with pytest.raises(LlavaBuildError, match="(?s)training failed.*no such config"):
        build_tiny_llava(folder, built.folder.parent / "demo" / "tiny-llama")
    assert not (folder / "work").exists() and not (folder / "llava").exists()
    assert (folder / "llava_pretrain.py").read_text() == 'raise RuntimeError("no such config")\n'


def test_user_folder_is_never_overwritten(tmp_path) -> None:
    (tmp_path / "llava").mkdir()
    (tmp_path / "llava" / "notes.txt").write_text("mine")
    with pytest.raises(LlavaBuildError, match="move it away"):
        build_tiny_llava(tmp_path, tmp_path / "no-llm")
    assert (tmp_path / "llava" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["llava"]


def test_missing_llm_is_explained_before_any_work(tmp_path) -> None:
    with pytest.raises(LlavaBuildError, match="not a model folder"):
        build_tiny_llava(tmp_path / "llava", tmp_path / "no-llm")
    assert not (tmp_path / "llava").exists() or not any((tmp_path / "llava").iterdir())


@pytest.mark.e2e
def test_a_folder_built_on_another_llm_is_refused(built, tmp_path) -> None:
    with pytest.raises(LlavaBuildError, match="was built on"):
        build_tiny_llava(built.folder, tmp_path)


def _fake_encoder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in llava.ENCODER_FILES:
        (folder / name).write_text("{}")
    return folder


def test_broken_llava_folders_are_explained(tmp_path) -> None:
    encoder = _fake_encoder(tmp_path / "clip")
    with pytest.raises(llava.LlavaError, match="not found"):
        llava.encoder_folder(tmp_path / "nowhere", encoder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(llava.LlavaError, match="no projector/"):
        llava.encoder_folder(tmp_path / "empty", encoder)
    with pytest.raises(llava.LlavaError, match="no projector/"):
        llava.load_llava(object(), encoder, tmp_path / "empty", None, "cpu")
    folder = tmp_path / "llava"
    (folder / "projector").mkdir(parents=True)
    (folder / "projector" / "config.json").write_text("{}")
    with pytest.raises(llava.LlavaError, match="no visual_encoder/"):
        llava.encoder_folder(folder, None)
    with pytest.raises(llava.LlavaError, match="preprocessor_config.json"):
        llava.encoder_folder(folder, tmp_path)
    assert llava.encoder_folder(folder, encoder) == encoder
    (folder / "llm_adapter").mkdir()
    with pytest.raises(llava.LlavaError, match="adapter_config.json"):
        llava.encoder_folder(folder, encoder)


def test_own_visual_encoder_wins_and_excludes_another(tmp_path) -> None:
    folder = tmp_path / "llava"
    (folder / "projector").mkdir(parents=True)
    (folder / "projector" / "config.json").write_text("{}")
    own = _fake_encoder(folder / "visual_encoder")
    assert llava.encoder_folder(folder, None) == own
    with pytest.raises(llava.LlavaError, match="its own visual_encoder/"):
        llava.encoder_folder(folder, _fake_encoder(tmp_path / "clip"))


def test_image_token_index_is_xtuners() -> None:
    from xtuner.utils import IMAGE_TOKEN_INDEX

    assert llava.IMAGE_TOKEN_INDEX == IMAGE_TOKEN_INDEX
