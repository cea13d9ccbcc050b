"""Checkpoint listing and structural checks on real torch.save files."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from engine.runs.checkpoints import check, last_checkpoint, list_checkpoints


def _save(path: Path, n: int = 4096) -> None:
    torch.save({"meta": {"iter": 1}, "state_dict": {"w": torch.randn(n)}}, path)


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    for i in (10, 20, 30):
        _save(tmp_path / f"iter_{i}.pth")
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_30.pth"))
    (tmp_path / "iter_x.pth").write_text("not a checkpoint name")
    return tmp_path


def test_lists_in_order_and_marks_latest(work_dir: Path) -> None:
    found = list_checkpoints(work_dir)
    assert [c.iter for c in found] == [10, 20, 30]
    assert [c.latest for c in found] == [False, False, True]
    assert all(c.ok and not c.deepspeed and c.size > 16000 for c in found)


def test_truncated_checkpoint_is_flagged(work_dir: Path) -> None:
    path = work_dir / "iter_20.pth"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    by_iter = {c.iter: c for c in list_checkpoints(work_dir)}
    assert by_iter[20].problem and "complete" in by_iter[20].problem
    assert by_iter[10].ok and by_iter[30].ok


def test_a_previous_check_is_reused_only_at_the_same_size(work_dir: Path) -> None:
    first = list_checkpoints(work_dir)
    path = work_dir / "iter_20.pth"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a new size: checked again
    again = {c.iter: c for c in list_checkpoints(work_dir, first)}
    assert again[20].problem and again[10].ok
    path.write_bytes(data)
    marked = [c if c.iter != 10 else replace(c, problem="remembered") for c in first]
    by_iter = {c.iter: c for c in list_checkpoints(work_dir, marked)}
    assert by_iter[10].problem == "remembered" and by_iter[20].ok  # same size: not read again


def test_a_checkpoint_vanishing_while_listed_is_left_out(work_dir: Path) -> None:
    """mmengine deletes the oldest checkpoint past max_keep_ckpts while a watcher lists the folder."""
    (work_dir / "iter_10.pth").unlink()
    (work_dir / "iter_10.pth").symlink_to(work_dir / "gone.pth")  # listed, but stat() fails as after a delete
    assert [c.iter for c in list_checkpoints(work_dir)] == [20, 30]


def test_non_zip_and_empty_files_are_flagged(tmp_path: Path) -> None:
    (tmp_path / "iter_1.pth").write_bytes(b"")
    (tmp_path / "iter_2.pth").write_bytes(b"garbage" * 100)
    assert all(c.problem for c in list_checkpoints(tmp_path))


def test_stale_last_checkpoint(work_dir: Path) -> None:
    (work_dir / "iter_30.pth").unlink()
    named, problem = last_checkpoint(work_dir)
    assert named == work_dir / "iter_30.pth"
    assert problem and "does not exist" in problem
    assert not any(c.latest for c in list_checkpoints(work_dir))


def test_moved_work_dir_finds_checkpoint_beside_marker(work_dir: Path) -> None:
    (work_dir / "last_checkpoint").write_text("/somewhere/else/iter_20.pth")
    named, problem = last_checkpoint(work_dir)
    assert named == work_dir / "iter_20.pth" and problem is None


def test_deepspeed_folder(tmp_path: Path) -> None:
    folder = tmp_path / "iter_40.pth"
    (folder / "checkpoint").mkdir(parents=True)
    _save(folder / "checkpoint" / "mp_rank_00_model_states.pt")
    _save(folder / "checkpoint" / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt")
    [ckpt] = list_checkpoints(tmp_path)
    assert ckpt.deepspeed and ckpt.ok and ckpt.iter == 40
    optim = folder / "checkpoint" / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt"
    optim.write_bytes(optim.read_bytes()[:100])
    assert "optim_states" in check(folder)


def test_deepspeed_folder_without_states(tmp_path: Path) -> None:
    (tmp_path / "iter_5.pth").mkdir()
    assert "model_states" in check(tmp_path / "iter_5.pth")
    assert check(tmp_path / "nope.pth") == "missing"
