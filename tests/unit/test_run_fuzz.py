"""Hostile files in one work dir (any bytes in the manifest, console, exit-code file, checkpoints, last_checkpoint,
log): reading it raises nothing, stays bounded in time, and the other runs under the same root still show."""

from __future__ import annotations

import json
import shutil
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.runs import manifest as mf
from engine.runs.watch import Run
from engine.runs.workdir import WorkDir
from tests.unit.test_runs import _log
from tui.cli import main

FILES = (
    mf.MANIFEST,
    mf.CONSOLE,
    ".xtui-exit-0",
    "iter_10.pth",
    "last_checkpoint",
    "20261128_140000/20261128_140000.log",
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_contents = st.one_of(
    st.binary(max_size=400),
    _json.map(lambda v: json.dumps(v).encode()),
    st.sampled_from(
        [b"\x00" * 300, b"[" * 5000, b"137\nMemTotal: x\n", b"PK\x03\x04" + b"\xff" * 60, "损坏".encode("gbk")]
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(FILES), _contents, min_size=1))
def test_hostile_files_in_one_run_leave_the_others_shown(tmp_path, capsys, files) -> None:
    root = tmp_path / "root"
    shutil.rmtree(root, ignore_errors=True)
    _log(root / "good", [10, 20], 20, time.time())
    bad = root / "bad"
    for name, data in files.items():
        (bad / name).parent.mkdir(parents=True, exist_ok=True)
        (bad / name).write_bytes(data)
    start = time.monotonic()
    run = Run(WorkDir.open(bad))
    run.poll()
    run.status()
    run.checkpoints()
    assert main(["status", str(root), "--json"]) == 0
    summaries = {s["work_dir"].rsplit("/", 1)[-1]: s for s in json.loads(capsys.readouterr().out)}
    assert summaries["good"]["status"] == "finished"
    assert time.monotonic() - start < 10
