"""Work dirs made of the real fixture logs, as a plain `xtuner train` leaves them (no manifest)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support import FIXTURES

SAVED = " - mmengine - INFO - Saving checkpoint at {} epochs\n"


def fixture_workdir(root: Path, name: str, *logs: str) -> Path:
    """A work dir under `root` with one start folder per fixture log named (a resume is a second start)."""
    work_dir = root / name
    for index, log in enumerate(logs):
        stamp = work_dir / f"20261201_10{index:02d}00"
        stamp.mkdir(parents=True)
        shutil.copy(FIXTURES / log, stamp / f"{stamp.name}.log")
    return work_dir


def add_validations(log: Path, accuracy: dict[int, float]) -> None:
    """Give an epoch run's log the lines mmengine's ValLoop writes after each epoch's save: `Epoch(val) [e][n/n]`
    with the metric (the fixture runs have no val loop; the line is as LoggerHook.after_val_epoch prints it)."""
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    out = []
    for line in lines:
        out.append(line)
        for epoch, value in accuracy.items():
            if line.endswith(SAVED.format(epoch)):
                stamp = line[:19]
                out.append(
                    f"{stamp} - mmengine - INFO - Epoch(val) [{epoch}][4/4]    accuracy: {value:.4f}  "
                    "data_time: 0.0100  time: 0.0200\n"
                )
    log.write_text("".join(out), encoding="utf-8")
