"""A work dir of an epoch-based run (mmengine's EpochBasedTrainLoop), assembled from a real CPU run's log."""

from __future__ import annotations

import json
import shutil
import zipfile

from engine.runs.resume import preflight
from engine.runs.watch import Run, RunStatus
from tests.support import FIXTURES
from tui.cli import main


def _epoch_run(tmp_path, epochs=(1, 2), last="epoch_2.pth"):
    """The fixture's log in a work dir with sound `epoch_N.pth` files and `last_checkpoint` naming `last`."""
    stamp = tmp_path / "20261201_102330"
    stamp.mkdir(parents=True)
    shutil.copy(FIXTURES / "xtuner-0.2.0-cpu-epochs.log", stamp / "20261201_102330.log")
    for n in epochs:
        with zipfile.ZipFile(tmp_path / f"epoch_{n}.pth", "w") as zf:
            zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    (tmp_path / "config.py").write_text("max_epochs = 2\n")
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / last))
    return tmp_path


def test_a_finished_epoch_run_is_finished_with_its_epoch_checkpoints(tmp_path, capsys) -> None:
    run = Run(_epoch_run(tmp_path))
    run.poll()
    assert run.status().state == RunStatus.FINISHED and run.state.max_iters == 44
    ckpts = run.checkpoints()
    assert [(c.path.name, c.iter, c.epoch) for c in ckpts] == [("epoch_1.pth", 22, 1), ("epoch_2.pth", 44, 2)]
    assert ckpts[-1].latest and all(c.ok for c in ckpts)
    assert main(["status", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)[0]
    assert (summary["status"], summary["iter"], summary["max_iters"], summary["resume_from"]) == (
        "finished",
        44,
        44,
        "epoch_2.pth",
    )


def test_a_resume_from_an_epoch_checkpoint_is_checked_on_the_iteration_scale(tmp_path) -> None:
    verdict = preflight(_epoch_run(tmp_path), tmp_path / "epoch_1.pth")
    assert verdict.checkpoint.path.name == "epoch_1.pth" and verdict.checkpoint.iter == 22
    assert not any("would end at once" in p for p in verdict.problems)
    assert any("epoch_2.pth is at iteration 44 of 44" in p for p in preflight(tmp_path).problems)


def test_status_says_when_last_checkpoint_is_stale_and_what_a_resume_would_take(tmp_path, capsys) -> None:
    _epoch_run(tmp_path, epochs=(1,), last="epoch_2.pth")
    assert main(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "last_checkpoint names" in out and "a resume would start from epoch_1.pth" in out
