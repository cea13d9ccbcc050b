"""Checkpoint listing and checks (structure, CRC-32 of the members, regular files only) on real torch.save files."""

import os
import struct
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from engine.runs import checkpoints
from engine.runs.checkpoints import check, last_checkpoint, list_checkpoints
from tests.support.waiting import returns_within


def _save(path: Path, n: int = 4096) -> None:
    torch.save({"meta": {"iter": 1}, "state_dict": {"w": torch.randn(n)}}, path)


def _member_start(path: Path, suffix: str) -> int:
    """Where the bytes of the zip member whose name ends in `suffix` begin in the file."""
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(suffix))
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        header = fh.read(30)
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


def _overwrite(path: Path, at: int, data: bytes) -> None:
    """Overwrite bytes in place: the size and the zip's directory stay as they were."""
    with open(path, "r+b") as fh:
        fh.seek(at)
        fh.write(data)


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


def test_a_previous_check_is_reused_only_at_the_same_size_and_time(work_dir: Path) -> None:
    first = list_checkpoints(work_dir)
    path = work_dir / "iter_20.pth"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a new size: checked again
    again = {c.iter: c for c in list_checkpoints(work_dir, first)}
    assert again[20].problem and again[10].ok
    path.write_bytes(data)
    marked = [c if c.iter != 10 else replace(c, problem="remembered") for c in first]
    by_iter = {c.iter: c for c in list_checkpoints(work_dir, marked)}
    assert by_iter[10].problem == "remembered" and by_iter[20].ok  # same size and time: not read again
    stat = (work_dir / "iter_10.pth").stat()
    os.utime(work_dir / "iter_10.pth", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # rewritten in place
    assert {c.iter: c for c in list_checkpoints(work_dir, marked)}[10].ok


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


def test_epoch_checkpoints_are_listed_checked_and_marked(tmp_path: Path) -> None:
    for name in ("epoch_1.pth", "epoch_2.pth", "iter_50.pth"):
        _save(tmp_path / name)
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "epoch_2.pth"))
    found = list_checkpoints(tmp_path, epoch_iters={1: 86, 2: 172})
    assert [(c.path.name, c.epoch, c.iter, c.latest, c.ok) for c in found] == [
        ("iter_50.pth", None, 50, False, True),
        ("epoch_1.pth", 1, 86, False, True),
        ("epoch_2.pth", 2, 172, True, True),
    ]
    unknown = list_checkpoints(tmp_path)
    assert [(c.path.name, c.iter) for c in unknown] == [
        ("iter_50.pth", 50),
        ("epoch_1.pth", None),
        ("epoch_2.pth", None),
    ]
    assert checkpoints.latest_good(unknown).path.name == "epoch_2.pth"
    assert unknown[1].to_json()["epoch"] == 1


@pytest.mark.parametrize("member", ["data.pkl", "data/0"])
def test_overwritten_bytes_in_a_valid_zip_are_caught_by_crc(work_dir: Path, member: str) -> None:
    path = work_dir / "iter_20.pth"
    size = path.stat().st_size
    _overwrite(path, _member_start(path, member) + 8, b"\xff\x00\xff\x00")
    assert path.stat().st_size == size and zipfile.is_zipfile(path)
    problem = check(path)
    assert problem and member in problem and "CRC" in problem


def test_past_the_budget_only_data_pkl_and_small_members_are_verified(work_dir: Path, monkeypatch) -> None:
    path = work_dir / "iter_20.pth"
    _save(path, n=1 << 19)  # a 2 MiB tensor member
    _overwrite(path, _member_start(path, "data/0") + 64, b"\x00" * 8)
    assert "CRC" in check(path)
    monkeypatch.setattr(checkpoints, "_CRC_BUDGET", 1 << 20)
    (found,) = [c for c in list_checkpoints(work_dir) if c.iter == 20]
    assert found.ok and "1 tensor member(s), 2 MiB" in found.unverified
    _overwrite(path, _member_start(path, "data.pkl") + 8, b"\xff\x00\xff\x00")
    assert "data.pkl" in check(path)


def test_fifos_and_devices_are_never_read(work_dir: Path) -> None:
    os.mkfifo(work_dir / "iter_40.pth")
    (work_dir / "iter_50.pth").symlink_to("/dev/zero")
    by_iter = {c.iter: c for c in returns_within(lambda: list_checkpoints(work_dir))}
    assert "is a FIFO, not a regular file" in by_iter[40].problem
    assert "is a character device, not a regular file" in by_iter[50].problem
    assert by_iter[30].ok


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_last_checkpoint_that_is_no_regular_file_is_not_read(work_dir: Path, kind: str) -> None:
    marker = work_dir / "last_checkpoint"
    marker.unlink()
    os.mkfifo(marker) if kind == "fifo" else marker.symlink_to("/dev/zero")
    named, problem = returns_within(lambda: last_checkpoint(work_dir))
    assert named is None and "not a regular file" in problem
    assert not any(c.latest for c in returns_within(lambda: list_checkpoints(work_dir)))
