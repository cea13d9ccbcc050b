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
