"""The converters as jobs: output lines as they come, known failures explained, no overwriting, free disk first."""

from __future__ import annotations

import json
import subprocess
from collections import namedtuple

import pytest

from engine.xtuner import convert
from engine.xtuner.convert import ConvertError, HfKind, hf_kind

FAKE_TOOL = """
import sys, time
print("Load State Dict: 50%", end="\\r", flush=True)
print("Load State Dict: 100%", flush=True)
if "fail" in sys.argv[1]:
    raise ValueError('Trying to set a tensor of shape torch.Size([8, 128]) in "weight" (which has shape torch.Size([16, 128])), this looks incorrect.')
open(sys.argv[-1] + "/adapter_config.json", "w").write("{}")
print("All done!")
"""


@pytest.fixture
def fake_tool(tmp_path, monkeypatch):
    """pth_to_hf replaced by a module that prints like it, then writes an adapter or fails as a wrong config does."""
    (tmp_path / "fake_pth_to_hf.py").write_text(FAKE_TOOL)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(convert, "PTH_TO_HF", "fake_pth_to_hf")
    (tmp_path / "good.py").write_text("")
    (tmp_path / "fail.py").write_text("")
    (tmp_path / "iter_10.pth").write_bytes(b"x" * 1000)
    return tmp_path


def test_output_lines_come_as_they_are_printed_and_the_folder_appears_whole(fake_tool) -> None:
    lines: list[str] = []
    out = convert.pth_to_hf(fake_tool / "good.py", fake_tool / "iter_10.pth", fake_tool / "hf", lines.append)
    assert lines == ["Load State Dict: 50%", "Load State Dict: 100%", "All done!"]  # a progress bar's \r is a line
    assert hf_kind(out) is HfKind.ADAPTER and [p.name for p in fake_tool.iterdir() if p.name.startswith(".")] == []


def test_a_checkpoint_of_another_config_is_explained_and_leaves_nothing(fake_tool) -> None:
    with pytest.raises(ConvertError, match=r"pth_to_hf failed \(exit 1\): the checkpoint does not fit this config .*"
                                           r"convert it with the config of the run that saved it\. .*this looks incorrect"):  # fmt: skip
        convert.pth_to_hf(fake_tool / "fail.py", fake_tool / "iter_10.pth", fake_tool / "hf")
    assert not (fake_tool / "hf").exists() and [p.name for p in fake_tool.iterdir() if p.name.startswith(".")] == []


def test_an_existing_folder_is_never_overwritten(fake_tool) -> None:
    (fake_tool / "hf").mkdir()
    (fake_tool / "hf" / "mine.txt").write_text("keep")
    with pytest.raises(ConvertError, match="hf already exists: pick a new folder"):
        convert.pth_to_hf(fake_tool / "good.py", fake_tool / "iter_10.pth", fake_tool / "hf")
    assert (fake_tool / "hf" / "mine.txt").read_text() == "keep"


def test_one_file_of_a_deepspeed_checkpoint_is_refused_for_its_folder(fake_tool) -> None:
    shard = fake_tool / "iter_10_ds.pth" / "mp_rank_00_model_states.pt"
    shard.parent.mkdir()
    shard.write_bytes(b"x")
    with pytest.raises(
        ConvertError, match=r"is one file of the DeepSpeed checkpoint .*iter_10_ds.pth: convert the folder"
    ):
        convert.pth_to_hf(fake_tool / "good.py", shard, fake_tool / "hf")


def test_free_disk_is_checked_against_the_checkpoint_first(fake_tool, monkeypatch) -> None:
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(convert.shutil, "disk_usage", lambda path: Usage(10**12, 10**12 - 500, 500))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("the converter started"))
    with pytest.raises(
        ConvertError, match=r"not enough free disk for hf: 0.0 GiB free in .*converting iter_10.pth needs"
    ):
        convert.pth_to_hf(fake_tool / "good.py", fake_tool / "iter_10.pth", fake_tool / "hf")


def test_merge_explains_what_to_do_with_a_llava_folder(tmp_path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")
    (tmp_path / "llava" / "projector").mkdir(parents=True)
    (tmp_path / "llava" / "llm_adapter").mkdir()
    assert hf_kind(tmp_path / "llava") is HfKind.LLAVA and hf_kind(tmp_path / "base") is HfKind.MODEL
    with pytest.raises(ConvertError, match=r"is a LLaVA folder: merge its llm_adapter/ onto the LLM .*--llava"):
        convert.merge(tmp_path / "base", tmp_path / "llava", tmp_path / "out")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 8}))
    assert hf_kind(tmp_path / "adapter") is HfKind.ADAPTER and hf_kind(tmp_path) is None
