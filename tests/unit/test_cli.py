"""The `xtui` command line: every subcommand listed, unknown ones named, user errors and bugs told apart by type."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tui.cli import SUBCOMMANDS, main


def test_help_lists_every_subcommand_and_the_tui_use() -> None:
    out = subprocess.run([sys.executable, "-m", "tui.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for name in SUBCOMMANDS:
        assert f"\n    {name} " in out
    assert "xtui DIR" in out


def test_an_unknown_subcommand_says_so(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["sttaus"]) == 2
    err = capsys.readouterr().err
    assert "'sttaus' is not a subcommand nor a folder" in err and "status" in err and err.count("\n") == 1


def test_a_folder_opens_the_tui(monkeypatch, tmp_path) -> None:
    opened = []
    monkeypatch.setattr("tui.cli.watch.run", lambda args: opened.append(args.dirs) or 0)
    assert main([str(tmp_path)]) == 0 and opened == [[str(tmp_path)]]


def test_a_bug_gives_one_line_and_a_traceback_file(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("XTUI_STATE", str(tmp_path / "state"))

    def broken(args):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr("tui.cli.status.run", broken)
    assert main(["status", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    logs = list((tmp_path / "state").glob("crash-*.log"))
    assert err.count("\n") == 0 and "ZeroDivisionError: boom" in err and str(logs[0]) in err
    assert "Traceback" in logs[0].read_text() and "broken" in logs[0].read_text()


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help(name) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0


def test_events_of_several_runs_name_their_work_dir(tmp_path, capsys) -> None:
    import json
    import time

    from tests.unit.test_runs import _log

    for name in ("a", "b"):
        _log(tmp_path / name, [10, 20], 20, time.time())
    assert main(["events", str(tmp_path / "a")]) == 0
    assert all("work_dir" not in json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert main(["events", str(tmp_path / "a"), str(tmp_path / "b"), "--follow"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    steps = [(line["work_dir"][-1], line["iter"]) for line in lines if line["type"] == "train_step"]
    assert steps == [("a", 10), ("a", 20), ("b", 10), ("b", 20)]
