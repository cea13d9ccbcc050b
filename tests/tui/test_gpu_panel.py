"""GpuPanel: Pilot tests of what it shows and how it updates, and snapshot tests at 80x24 and 120x40."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest
from textual.app import App, ComposeResult

from engine.gpu import GpuProcess, GpuReading, HostReading, Snapshot
from themes import DEFAULT_THEME, THEMES
from tui.widgets.gpu_panel import GpuPanel

GIB = 1 << 30
H200_MEMORY = 143771 << 20  # what NVML reports for an H200: 140.4 GiB
HOST = HostReading(
    cpu_percent=23.5, memory_used=12 * GIB, memory_total=31 * GIB, disk_free=120 * GIB, disk_path="/work/runs"
)
RUN_PID = 4242
Panel = tuple[Snapshot, dict[int, Sequence[GpuReading]], dict[int, str]]


def two_gpus() -> Panel:
    """Two H200s: GPU 0 training a run beside another process, GPU 1 with every optional field failing."""
    busy = GpuReading(
        0,
        "NVIDIA H200",
        96 * GIB,
        H200_MEMORY,
        87,
        61,
        412.3,
        700.0,
        (GpuProcess(RUN_PID, 90 * GIB), GpuProcess(5151, 6 * GIB)),
    )
    broken = GpuReading(1, "NVIDIA H200", None, None, None, None, None, None, (GpuProcess(6060, None),))
    ramp = [replace(busy, utilization=min(100, 3 * i), memory_used=min(96, 3 * i) * GIB) for i in range(40)]
    history = {0: (*ramp, busy), 1: (broken,) * 10}
    return Snapshot(at=0.0, gpus=(busy, broken), host=HOST), history, {RUN_PID: "demo/work"}


def no_gpus() -> Panel:
    """A machine without an NVIDIA driver."""
    error = "no NVIDIA driver: NVML Shared Library Not Found"
    return Snapshot(at=0.0, gpus=(), host=HOST, gpu_error=error), {}, {}


class PanelApp(App):
    """The panel alone, in the app's default theme, showing one snapshot on mount."""

    def __init__(
        self, snapshot: Snapshot, history: dict[int, Sequence[GpuReading]], run_of_pid: dict[int, str]
    ) -> None:
        super().__init__()
        self.shown = (snapshot, history, run_of_pid)

    def compose(self) -> ComposeResult:
        """Just the panel."""
        yield GpuPanel(id="gpus")

    def on_mount(self) -> None:
        """xtui's theme, then the snapshot."""
        for theme in THEMES:
            self.register_theme(theme)
        self.theme = DEFAULT_THEME
        self.query_one(GpuPanel).show(*self.shown)


def screen_text(app: App) -> str:
    """The screen as plain text, line by line (through the compositor: textual is pinned)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


@pytest.mark.anyio
async def test_two_gpus_show_names_values_na_and_run_label() -> None:
    app = PanelApp(*two_gpus())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = screen_text(app)
    lines = text.splitlines()
    gpu0 = next(i for i, line in enumerate(lines) if "0 NVIDIA H200" in line)
    assert "util  87%" in lines[gpu0]
    assert "61°C" in lines[gpu0 + 1] and "412 / 700 W" in lines[gpu0 + 1]
    assert "mem  96.0/140.4 GiB" in lines[gpu0 + 1]
    assert "pid 4242 demo/work 90.0 GiB" in lines[gpu0 + 2] and "pid 5151 other 6.0 GiB" in lines[gpu0 + 2]
    gpu1 = next(i for i, line in enumerate(lines) if "1 NVIDIA H200" in line)
    assert "util  N/A" in lines[gpu1]
    assert "N/A°C" in lines[gpu1 + 1] and "N/A / N/A W" in lines[gpu1 + 1] and "mem   N/A" in lines[gpu1 + 1]
    assert "pid 6060 other N/A GiB" in lines[gpu1 + 2]
    assert "CPU  24%" in text and "RAM  12.0/31.0 GiB" in text and "120.0 GiB free on /work/runs" in text
    assert "No NVIDIA GPU" not in text
    assert all(len(line.rstrip()) <= 80 for line in lines)


@pytest.mark.anyio
async def test_no_driver_says_why_and_still_shows_host() -> None:
    app = PanelApp(*no_gpus())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = screen_text(app)
    assert "No NVIDIA GPU: no NVIDIA driver: NVML Shared Library Not Found" in text
    assert "host  CPU  24%" in text
    assert "util" not in text


@pytest.mark.anyio
async def test_updates_in_place_and_rebuilds_only_when_gpus_change() -> None:
    snapshot, history, run_of_pid = two_gpus()
    app = PanelApp(snapshot, history, run_of_pid)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        panel = app.query_one(GpuPanel)
        rows = panel.query_one(".gpus")
        cooler = replace(snapshot.gpus[0], temperature=44, processes=())
        panel.show(replace(snapshot, gpus=(cooler, snapshot.gpus[1])), history, {})
        await pilot.pause()
        assert panel.query_one(".gpus") is rows
        text = screen_text(app)
        assert "44°C" in text and "no processes seen" in text and "demo/work" not in text

        panel.show(no_gpus()[0], {}, {})
        await pilot.pause()
        text = screen_text(app)
        assert "No NVIDIA GPU" in text and "NVIDIA H200" not in text

        panel.show(snapshot, history, run_of_pid)
        await pilot.pause()
        text = screen_text(app)
        assert "No NVIDIA GPU" not in text and "1 NVIDIA H200" in text and "demo/work" in text


@pytest.mark.anyio
async def test_many_processes_are_counted_not_listed() -> None:
    snapshot, history, _ = two_gpus()
    crowded = replace(snapshot.gpus[0], processes=tuple(GpuProcess(1000 + i, GIB) for i in range(11)))
    app = PanelApp(replace(snapshot, gpus=(crowded,)), history, {})
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        text = screen_text(app)
    assert "pid 1007 other" in text and "pid 1008" not in text and "+3 more" in text


def test_snapshot_two_gpus_80x24(snap_compare) -> None:
    assert snap_compare(PanelApp(*two_gpus()), terminal_size=(80, 24))


def test_snapshot_two_gpus_120x40(snap_compare) -> None:
    assert snap_compare(PanelApp(*two_gpus()), terminal_size=(120, 40))


def test_snapshot_no_driver_80x24(snap_compare) -> None:
    assert snap_compare(PanelApp(*no_gpus()), terminal_size=(80, 24))


def test_snapshot_no_driver_120x40(snap_compare) -> None:
    assert snap_compare(PanelApp(*no_gpus()), terminal_size=(120, 40))
