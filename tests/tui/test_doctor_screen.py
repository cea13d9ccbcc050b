"""The doctor screen: the real checks of this machine from the dashboard's key, and snapshots of a fixed report at
80x24 and 120x40 (a broken bitsandbytes among them, as on a machine with triton 3.x)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console
from textual.widgets import Static

from engine.gpu import GpuMonitor, HostReading
from engine.xtuner import doctor
from engine.xtuner.doctor import Check, CheckStatus
from tests.support.fakes import FakeGpus, NoGpus
from tests.support.waiting import until
from tui.app import XtuiApp
from tui.screens.doctor import CHECKING, DoctorScreen

pytestmark = pytest.mark.anyio
SIZES = [(80, 24), (120, 40)]
FIXED = [
    Check("python", CheckStatus.OK, "3.12.3 (/opt/venv/bin/python)"),
    Check("gpu", CheckStatus.OK, "1 x NVIDIA H200 (140 GiB), driver 580.159.04, CUDA 13.0"),
    Check("torch", CheckStatus.OK, "2.11.0 (CUDA 12.8 build; sees 1 GPU(s))"),
    Check("xtuner", CheckStatus.OK, "0.2.0"),
    Check("mmengine", CheckStatus.OK, "0.10.7"),
    Check("transformers", CheckStatus.OK, "4.48.3"),
    Check("peft", CheckStatus.OK, "0.14.0"),
    Check("bitsandbytes", CheckStatus.FAIL, "0.45.0: ModuleNotFoundError: No module named 'triton.ops'",
          doctor.remedy("No module named 'triton.ops'") or ""),
    Check("deepspeed", CheckStatus.WARN, "not installed", "needed for --deepspeed: pip install deepspeed"),
    Check("flash-attn", CheckStatus.WARN, "not installed",
          "optional, faster attention on recent GPUs: pip install flash-attn --no-build-isolation"),
    Check("disk", CheckStatus.OK, "812.4 GiB free in /data/runs"),
]  # fmt: skip


def _report(app) -> str:
    """The report as plain text, one line per row at 200 columns."""
    content = app.screen.query_one("#doctor-report", Static).content
    if isinstance(content, str):
        return content
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(content)
    return console.export_text()


async def test_d_on_the_dashboard_checks_this_machine_in_a_thread_and_r_checks_again(tmp_path) -> None:
    app = XtuiApp(roots=[tmp_path], gpu_backend=NoGpus(), poll_s=0.2)  # an empty folder: no run's alert in the picture
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, DoctorScreen))
        screen = app.screen
        assert CHECKING in _report(app)  # the screen is up before the slow imports end
        await until(pilot, lambda: screen.checks is not None, timeout=240)
        report = _report(app)
        assert re.search(rf"warn +gpu +{re.escape(doctor.NO_GPU)}", report)  # no driver here
        names = [check.name for check in screen.checks]
        assert names[:2] == ["python", "gpu"] and "bitsandbytes" in names and names[-1] == "disk"
        for check in screen.checks:  # each with its state, and what to do about a problem
            assert re.search(rf"{check.status} +{re.escape(check.name)} +{re.escape(check.found)}", report)
            assert not check.fix or f"→ {check.fix}" in report
        await pilot.press("r")
        assert screen.checks is None and CHECKING in _report(app)
        await until(pilot, lambda: screen.checks is not None, timeout=240)
        await pilot.press("escape")
        assert not isinstance(app.screen, DoctorScreen)
        assert "Doctor" in [c.title for c in app.get_system_commands(app.screen)]  # and in the palette


@pytest.mark.parametrize("size", SIZES)
def test_doctor_screen(snap_compare, size, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(doctor, "doctor", lambda work_dir: FIXED)  # another machine's checks: a fixed picture
    host = HostReading(12.0, 6 << 30, 24 << 30, 80 << 30, "/data/runs")
    monitor = GpuMonitor(backend=FakeGpus(), disk_path=tmp_path, read_host=lambda path: host)
    app = XtuiApp(roots=[tmp_path], monitor=monitor, poll_s=0.1)  # an empty folder: no run's alert in the picture

    async def checked(pilot) -> None:
        app.push_screen(DoctorScreen(Path("/data/runs")))
        await until(pilot, lambda: isinstance(app.screen, DoctorScreen) and app.screen.checks is not None)

    assert snap_compare(app, terminal_size=size, run_before=checked)
