"""The GPU and host panel: per GPU memory, utilisation, temperature, power, a short history and its processes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from textual.app import ComposeResult
from textual.containers import Grid, VerticalGroup, VerticalScroll
from textual.content import Content
from textual.widgets import Static

if TYPE_CHECKING:  # annotations only: the engine loads after the first frame
    from engine.gpu import GpuProcess, GpuReading, HostReading, Snapshot

GIB = 1 << 30
NA = "N/A"
BLOCKS = "▁▂▃▄▅▆▇█"
EIGHTHS = " ▏▎▍▌▋▊▉"
MAX_PROCESSES = 8  # per GPU; the rest are only counted, so a crowded GPU does not take the whole panel
# Each GPU's 4x2 grid, row by row: cell name -> CSS classes besides the name.
CELLS = {
    "name": "cell",
    "util": "cell",
    "util_bar": "cell bar",
    "util_history": "cell",
    "sensors": "cell",
    "mem": "cell",
    "mem_bar": "cell bar",
    "mem_history": "cell",
}
SENSORS_WIDTH = 20  # "   61°C  412 / 700 W"
MEMORY_WIDTH = 19  # "mem  96.0/140.4 GiB"


class _Bar(NamedTuple):  # a tuple: compared by value, and cheaper to define than a dataclass (startup)
    """A rich renderable: a bar filled to `fraction` of whatever width it is given (equal bars paint the same)."""

    fraction: float | None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        full, part = divmod(round(_clamp(self.fraction or 0.0) * width * 8), 8)
        yield Segment(("█" * full + EIGHTHS[part])[:width].ljust(width))


class _History(NamedTuple):
    """A rich renderable: the newest readings as block characters (`levels` 0-7, None blank), right-aligned."""

    levels: tuple[int | None, ...]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        recent = self.levels[-width:] if width else ()
        yield Segment("".join(" " if v is None else BLOCKS[v] for v in recent).rjust(width))


Cell = Content | str | _Bar | _History  # what one cell of the panel shows


class GpuPanel(VerticalScroll):
    """Host readings, then every GPU in a grid; `show` updates the cells in place once a second."""

    BORDER_TITLE = "GPUs"

    DEFAULT_CSS = """
    GpuPanel {
        height: auto;
        border: round $primary 40%;
        border-title-color: $primary;
        padding: 0 1;
        scrollbar-size-vertical: 1;
        &:focus { border: round $primary; }
        #host { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
        #message { height: auto; color: $warning; }
        .gpus { height: auto; }
        .gpu { height: 2; grid-size: 4; grid-gutter: 0 1; }
        .cell { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
        .bar { background: $foreground 10%; color: $primary; }
        .mem_bar { color: $success; }
        .mem_bar.-warning { color: $warning; }
        .mem_bar.-error { color: $error; }
        .util_history { color: $primary; }
        .mem_history { color: $accent; }
        .procs { height: auto; padding-left: 2; }
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._host = Static(Content.from_markup("[bold]host[/]  [$foreground-muted]…[/]"), id="host")
        self._message = Static("Reading GPUs…", id="message")
        self._gpus = VerticalGroup(classes="gpus")
        self._cells: dict[int, dict[str, Static]] = {}
        self.shown = False  # a snapshot has been drawn

    def compose(self) -> ComposeResult:
        """Host line, no-GPU message, GPUs."""
        yield self._host
        yield self._message
        yield self._gpus

    def show(self, snapshot: Snapshot, history: dict[int, Sequence[GpuReading]], run_of_pid: dict[int, str]) -> None:
        """Render one snapshot, repainting only cells whose text changed; GPU rows are rebuilt when the GPUs change."""
        self.shown = True
        _update(self._host, _host_line(snapshot.host))
        self._message.display = not snapshot.gpus
        if not snapshot.gpus:
            _update(self._message, _no_gpu(snapshot), layout=True)
        if tuple(gpu.index for gpu in snapshot.gpus) != tuple(self._cells):
            self._rebuild(snapshot.gpus)
        for gpu in snapshot.gpus:
            cells = self._cells[gpu.index]
            for name, value in _gpu_cells(gpu, history.get(gpu.index, ()), run_of_pid).items():
                _update(cells[name], value, layout=name == "procs")  # only the process line may change height
            level = _level(_memory(gpu), 0.75, 0.9)
            cells["mem_bar"].set_class(level == "warning", "-warning").set_class(level == "error", "-error")

    def _rebuild(self, gpus: tuple[GpuReading, ...]) -> None:
        """Replace the GPU rows with fresh cells: per GPU a grid of readings over its process line."""
        name_width = max([SENSORS_WIDTH, *(len(f"{gpu.index} {gpu.name or NA}") for gpu in gpus)])
        self._cells = {}
        rows = []
        for gpu in gpus:
            cells = {name: Static(classes=f"{name} {kind}") for name, kind in CELLS.items()}
            cells["procs"] = Static(classes="procs")
            self._cells[gpu.index] = cells
            grid = Grid(*(cells[name] for name in CELLS), classes="gpu")
            grid.styles.grid_columns = f"{name_width} {MEMORY_WIDTH} 1fr 1fr"
            rows += [grid, cells["procs"]]
        self._gpus.remove()
        self._gpus = VerticalGroup(*rows, classes="gpus")
        self.mount(self._gpus)


def shown(snapshot: Snapshot, history: dict[int, Sequence[GpuReading]], run_of_pid: dict[int, str]) -> tuple:
    """What the panel paints for these readings, comparable: equal results mean nothing to repaint."""
    gpus = tuple(
        (gpu.index, *map(_comparable, _gpu_cells(gpu, history.get(gpu.index, ()), run_of_pid).values()))
        for gpu in snapshot.gpus
    )
    return _comparable(_host_line(snapshot.host)), None if snapshot.gpus else _comparable(_no_gpu(snapshot)), gpus


def _comparable(value: Cell) -> object:
    """A cell's value in a form whose equality means "paints the same" (Content's own == ignores styles)."""
    return (value.plain, tuple(value.spans)) if isinstance(value, Content) else value


def _update(cell: Static, value: Cell, layout: bool = False) -> None:
    """Give `cell` its new value only when that changes what it paints (no repaint, no bytes otherwise)."""
    if _comparable(cell.content) != _comparable(value):
        cell.update(value, layout=layout)


def _gpu_cells(gpu: GpuReading, history: Sequence[GpuReading], run_of_pid: dict[int, str]) -> dict[str, Cell]:
    """One GPU's reading as the values of its cells."""
    return {
        "name": Content.from_markup(
            "[bold $primary]$index[/] [bold]$name[/]", index=str(gpu.index), name=gpu.name or NA
        ),
        "sensors": _sensors(gpu),
        "util": f"util {_percent(gpu.utilization)}",
        "mem": f"mem {_used_total(gpu.memory_used, gpu.memory_total)}",
        "util_bar": _Bar(_quantize(_utilization(gpu))),
        "mem_bar": _Bar(_quantize(_memory(gpu))),
        "util_history": _History(tuple(_block(_utilization(r)) for r in history)),
        "mem_history": _History(tuple(_block(_memory(r)) for r in history)),
        "procs": _processes(gpu.processes, run_of_pid),
    }


def _no_gpu(snapshot: Snapshot) -> Content:
    """Why no GPU is shown."""
    return Content.from_markup("No NVIDIA GPU: $reason", reason=snapshot.gpu_error or "the NVIDIA driver lists none")


def _quantize(fraction: float | None) -> float | None:
    """A fraction to a thousandth: finer than any bar can show, so equal bars compare equal."""
    return None if fraction is None else round(_clamp(fraction), 3)


def _block(fraction: float | None) -> int | None:
    """A fraction as one of the 8 block heights, None when unknown."""
    return None if fraction is None else round(_clamp(fraction) * 7)


def _utilization(gpu: GpuReading) -> float | None:
    """Utilisation as a fraction, or None."""
    return None if gpu.utilization is None else gpu.utilization / 100


def _memory(gpu: GpuReading) -> float | None:
    """Memory used as a fraction of the total, or None."""
    return _fraction(gpu.memory_used, gpu.memory_total)


def _clamp(value: float) -> float:
    """`value` kept within 0..1."""
    return min(max(value, 0.0), 1.0)


def _fraction(used: int | float | None, total: int | float | None) -> float | None:
    """used / total, or None when either is unknown."""
    return used / total if used is not None and total else None


def _level(fraction: float | None, warning: float, error: float) -> str:
    """'error', 'warning' or '' for a fraction against two thresholds."""
    if fraction is None or fraction < warning:
        return ""
    return "error" if fraction >= error else "warning"


def _gib(value: int | None) -> str:
    """Bytes as GiB with one decimal, or N/A."""
    return NA if value is None else f"{value / GIB:.1f}"


def _used_total(used: int | None, total: int | None) -> str:
    """'10.0/140.4 GiB' with N/A for unknown parts, the used part padded so columns stay put."""
    if used is None and total is None:
        return f"{NA:>5}"
    return f"{_gib(used):>5}/{_gib(total)} GiB"


def _percent(value: int | float | None) -> str:
    """' 87%' or ' N/A'."""
    return f"{NA:>4}" if value is None else f"{value:>3.0f}%"


def _sensors(gpu: GpuReading) -> Content:
    """Temperature (coloured when hot) and power over its limit."""
    temperature = NA if gpu.temperature is None else f"{gpu.temperature}"
    heat = _level(None if gpu.temperature is None else gpu.temperature / 100, 0.75, 0.85)  # 75 °C, 85 °C
    power = NA if gpu.power is None else f"{gpu.power:.0f}"
    limit = NA if gpu.power_limit is None else f"{gpu.power_limit:.0f}"
    style = f"${heat}" if heat else ""
    return Content.assemble("  ", (f"{temperature:>3}°C", style), f"  {power:>3} / {limit} W")


def _processes(processes: tuple[GpuProcess, ...], run_of_pid: dict[int, str]) -> Content:
    """Each process as pid, the run it belongs to (or 'other') and its memory."""
    if not processes:
        return Content.from_markup("[$foreground-muted]no processes seen[/]")
    parts: list[Content] = []
    for proc in processes[:MAX_PROCESSES]:
        label = run_of_pid.get(proc.pid)
        owner = Content.styled(label, "bold $accent") if label else Content.styled("other", "$foreground-muted")
        parts.append(Content.assemble(f"pid {proc.pid} ", owner, f" {_gib(proc.used_memory)} GiB"))
    if len(processes) > MAX_PROCESSES:
        parts.append(Content.styled(f"+{len(processes) - MAX_PROCESSES} more", "$foreground-muted"))
    return Content(" · ").join(parts)


def _host_line(host: HostReading) -> Content:
    """CPU, RAM (coloured when nearly full) and the free space of the watched drive."""
    ram = _level(_fraction(host.memory_used, host.memory_total), 0.75, 0.9)
    low_disk = host.disk_free is not None and host.disk_free < 10 * GIB
    return Content.assemble(
        ("host", "bold"),
        f"  CPU {_percent(host.cpu_percent)}  RAM ",
        (_used_total(host.memory_used, host.memory_total), f"${ram}" if ram else ""),
        "  disk ",
        (f"{_gib(host.disk_free)} GiB free", "$warning" if low_disk else ""),
        f" on {host.disk_path}",
    )
