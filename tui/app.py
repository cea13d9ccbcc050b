"""The xtui Textual app: watcher workers post engine data, handlers keep it and feed the screens."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import WorkerFailed, get_current_worker

if TYPE_CHECKING:  # the engine loads in the watcher threads, after the first frame
    from engine.gpu import GpuBackend, GpuMonitor
    from engine.runs.checkpoints import Checkpoint
    from engine.runs.events import Event
    from engine.runs.watch import RunState, Status
from engine.errors import UsageError
from themes import DEFAULT_THEME, THEMES
from tui.compat import route_uncaught_exceptions, write_to_terminal
from tui.messages import GpuUpdate, RunUpdate
from tui.notify import notification
from tui.protocols import GpuWatcher, HasCommands, RunWatcher
from tui.settings import Settings
from tui.terminal_text import printable
from tui.ticks import PAINT_EVERY_POLLS, poll_on_ticks

DISCOVER_EVERY_S = 10.0  # a full walk of the roots; a new run beside a known one or in a root shows on the next beat
CHECKPOINTS_EVERY_S = 10.0
ALERT_STATES = {"finished", "failed", "stalled"}
LIVE_STATES = {"running", "stalled"}


def _mtime(folder: Path) -> int | None:
    """A folder's modification time in ns (it changes when an entry is added, removed or renamed), None if gone."""
    try:
        return folder.stat().st_mtime_ns
    except OSError:
        return None


def _watched_folders(roots: Iterable[Path], runs: Collection[Path]) -> dict[Path, int | None]:
    """Where a new run shows first, with their mtimes: the roots, the folders holding runs, and the folders in
    those that are no run yet (a launch makes its work dir, then writes the manifest into it)."""
    parents = {*roots, *(run.parent for run in runs)}
    folders = set(parents)
    for parent in parents:
        try:
            folders.update(p for p in parent.iterdir() if p not in runs and not p.name.startswith(".") and p.is_dir())
        except OSError:
            continue
    return {folder: _mtime(folder) for folder in folders}


def _engine_runs():
    """engine.runs.watch, imported on first use."""
    from engine.runs import watch as runs

    return runs


@dataclass
class RunRecord:
    """What the UI knows of one run: the folded events, status and checkpoints."""

    work_dir: Path
    state: RunState = field(default_factory=lambda: _engine_runs().RunState())
    status: Status = field(default_factory=lambda: _engine_runs().Status(_engine_runs().RunStatus.UNKNOWN))
    checkpoints: list[Checkpoint] = field(default_factory=list)

    def apply(self, events: Iterable[Event]) -> None:
        """Fold events into the state (a TrainSteps batch as arrays: see RunState.apply)."""
        for event in events:
            self.state.apply(event)

    @property
    def label(self) -> str:
        """Short name: parent/work-dir."""
        return f"{self.work_dir.parent.name}/{self.work_dir.name}"


class XtuiApp(App[None]):
    """Keyboard cockpit for XTuner runs: runs, GPUs, live training, launch / stop / resume."""

    CSS_PATH = "xtui.tcss"
    TITLE = "xtui"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("f1", "help", "Help", priority=True),  # where an Input takes ?, and on dialogs
        Binding("ctrl+t", "change_theme", "Theme", show=False),
    ]

    def __init__(
        self,
        roots: list[Path],
        open_run: Path | None = None,
        gpu_backend: GpuBackend | None = None,
        poll_s: float = 1.0,
        monitor: GpuMonitor | None = None,
        chat=None,
    ) -> None:
        super().__init__()
        self.chat_spec = chat  # a tui.screens.chat.ChatSpec to open at start
        self.roots = [r.resolve() for r in roots]
        self.open_run = open_run.resolve() if open_run else None
        self._empty_base = Screen() if self.open_run else None  # the bottom screen under a run opened at start
        self.poll_s = poll_s
        self.monitor = monitor
        self.gpu_backend = gpu_backend
        self.runs: dict[Path, RunRecord] = {}
        self.extra_dirs: set[Path] = {self.open_run} if self.open_run else set()
        self._launched: dict[
            Path, Status
        ] = {}  # runs launched or resumed here, with their status before, until they end
        self._wake_runs = threading.Event()  # set: the runs watcher polls now instead of at its next tick
        self._run_labels: dict[int, str] = {}  # a live run's session (its launch pid) -> its name
        self.gpu: GpuUpdate | None = None  # the newest GPU/host snapshot (posted only when what it shows changed)
        self.crash_message: str | None = None  # the line shown on exit after an exception nothing caught
        route_uncaught_exceptions(self, self.crashed)
        for theme in THEMES:  # set before the first CSS parse: a theme change later parses it all again
            self.register_theme(theme)
        self.settings = Settings.load()
        saved = self.settings.theme
        self.theme = saved if saved in self.available_themes else DEFAULT_THEME

    def get_driver_class(self):
        """Textual's choice, with the Linux driver swapped for one whose input thread sleeps while idle."""
        chosen = super().get_driver_class()
        if chosen.__name__ != "LinuxDriver":  # Windows, headless, web: as Textual has them
            return chosen
        from tui.driver import QuietLinuxDriver

        return QuietLinuxDriver

    def get_default_screen(self) -> Screen:
        """The bottom screen: the dashboard, or when xtui opens on a run an empty one under the run's view (the
        dashboard is made when the user leaves the run): one screen to compose before the first frame."""
        if self.open_run:
            return self._empty_base
        from tui.screens.dashboard import DashboardScreen

        return DashboardScreen()

    def action_back(self) -> None:
        """Leave the screen on top for the one under it; the run opened at start gives way to the dashboard."""
        if self.screen_stack[-2:-1] != [self._empty_base]:
            self.pop_screen()
            return
        from tui.screens.dashboard import DashboardScreen

        self.switch_screen(DashboardScreen())

    def on_mount(self) -> None:
        """Open the run or chat asked for; a run's history is read while the first frame is drawn."""
        if self.open_run:
            self.open_run_screen(self.open_run)
            self.watch_runs()
        if self.chat_spec is not None:
            self.open_chat(self.chat_spec, leave_app=True)  # `xtui chat`: Esc goes back to the shell

    def on_ready(self) -> None:
        """The first frame is on screen: start the watchers (their engine imports would only have delayed it)."""
        if not self.open_run:
            self.watch_runs()
        self.watch_gpus()

    def watch_theme(self, name: str) -> None:
        """Remember the theme the user picked."""
        if self.is_mounted:
            try:
                self.settings = self.settings.save(theme=name)
            except UsageError as exc:  # the theme still changes, for this session
                self.notify(str(exc), severity="warning")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Palette entries: the app's actions plus the screen's own."""
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help", "All key bindings", self.action_help)
        yield SystemCommand("Launch a run", "Pick a config, work dir, GPUs, DeepSpeed", self.action_launch)
        yield SystemCommand("Chat with a model", "Base, adapter, merged, checkpoint or LLaVA", self.action_chat)
        yield SystemCommand("Doctor", "Check Python, GPUs, torch, xtuner, its packages, disk", self.action_doctor)
        yield SystemCommand("New fine-tune", "Dataset, config, train, convert, merge, chat", self.action_new_fine_tune)
        if isinstance(screen, HasCommands):
            yield from screen.commands()

    def action_help(self) -> None:
        """Show every binding of the current screen and the app."""
        from tui.dialogs.help import HelpScreen

        if isinstance(self.screen, HelpScreen):  # f1 again closes it
            self.screen.dismiss()
        else:
            self.push_screen(HelpScreen(self.screen))

    def action_new_fine_tune(self) -> None:
        """Open the recipe's steps for the folder xtui watches (another one can be typed there)."""
        from tui.screens.recipe import RecipeScreen

        self.push_screen(RecipeScreen(self.roots[0]))

    def action_doctor(self) -> None:
        """Open the environment doctor (its checks run in a thread)."""
        from tui.screens.doctor import DoctorScreen

        self.push_screen(DoctorScreen(self.roots[0]))

    def action_launch(self) -> None:
        """Open the launch form."""
        from tui.dialogs.launch import LaunchScreen

        self.push_screen(LaunchScreen(self.roots[0]))

    def action_chat(self) -> None:
        """Pick what to chat with, then open the chat."""
        from tui.dialogs.chat_setup import ChatSetupScreen

        self.push_screen(ChatSetupScreen(self.roots[0]), lambda spec: spec and self.open_chat(spec))

    def open_chat(self, spec, leave_app: bool = False) -> None:
        """Open a chat on `spec` (an engine.chat.spec.ChatSpec); `leave_app`: Esc from it quits (`xtui chat`)."""
        from tui.screens.chat import ChatScreen

        self.push_screen(ChatScreen(spec, leave_app=leave_app))

    def open_run_screen(self, work_dir: Path) -> None:
        """Show one run's live view."""
        from tui.screens.run import RunScreen

        self.watch_dir(work_dir)
        self.push_screen(RunScreen(work_dir))

    def watch_dir(self, work_dir: Path) -> None:
        """Watch `work_dir` from now on, whether or not it is under the roots; the runs watcher reads it at once."""
        self.extra_dirs.add(work_dir)
        self._wake_runs.set()

    def launched(self, work_dir: Path) -> None:
        """A launch or resume from here started in `work_dir`: watch it at once, and alert when it ends even if it
        ends before a poll saw it running (a run that fails in its first seconds)."""
        self._launched[work_dir] = self.record(work_dir).status
        self.watch_dir(work_dir)

    def record(self, work_dir: Path) -> RunRecord:
        """The UI record of a run, made on first use."""
        return self.runs.setdefault(work_dir, RunRecord(work_dir))

    @work(thread=True, exclusive=True, group="runs", name="watch runs")
    def watch_runs(self) -> None:
        """Poll every known run; post only what changed."""
        from engine.runs.folders import discover
        from engine.runs.watch import Run

        runs: dict[Path, Run] = {}
        last: dict[Path, tuple] = {}
        folders: dict[Path, int | None] = {}  # where a new run would show first -> its mtime at the last walk
        next_discover = next_ckpt = 0.0

        def watch(work_dir: Path) -> None:
            if work_dir not in runs:  # train steps come in TrainSteps batches of columns, not one object each
                runs[work_dir] = Run(work_dir, columns=True)

        def step() -> None:
            nonlocal next_discover, next_ckpt, folders
            now = time.monotonic()
            if now >= next_discover or any(_mtime(folder) != seen for folder, seen in folders.items()):
                for work_dir in discover(self.roots):
                    watch(work_dir)
                next_discover = now + DISCOVER_EVERY_S
                folders = _watched_folders(self.roots, runs.keys())
            for work_dir in list(self.extra_dirs):
                watch(work_dir)
            relist = now >= next_ckpt
            if relist:
                next_ckpt = now + CHECKPOINTS_EVERY_S
            labels = {}
            for work_dir, run in runs.items():
                events, status = run.poll_status()
                saved = any(e.type == "checkpoint_saved" for e in events)
                previous = last.get(work_dir)
                writing = previous is not None and any(not c.ok for c in previous[1])  # complete it as soon as it is
                ckpts = run.checkpoints() if relist or saved or writing or previous is None else previous[1]
                if events or previous is None or (status, ckpts) != previous:
                    self.post_message(RunUpdate(work_dir, events, status, ckpts))
                last[work_dir] = (status, ckpts)
                if status.pid:
                    labels[status.pid] = f"{work_dir.parent.name}/{work_dir.name}"
            self._run_labels = labels

        # read on the screens' paint beat: what came between two paints would not show sooner
        period = PAINT_EVERY_POLLS * self.poll_s
        poll_on_ticks(get_current_worker(), period, step, self.poll_failed("watching runs"), self._wake_runs)

    @work(thread=True, exclusive=True, group="gpu", name="watch gpus")
    def watch_gpus(self) -> None:
        """Read GPUs and host about once a second; mark GPU processes that belong to a run; post what would repaint."""
        from engine.gpu import GpuMonitor
        from engine.runs.processes import launch_of
        from tui.widgets.gpu_panel import shown

        monitor = self.monitor or GpuMonitor(disk_path=self.roots[0])
        if self.gpu_backend:
            monitor.backend = self.gpu_backend
        last = None

        def step() -> None:
            nonlocal last
            snapshot = monitor.poll()
            run_of_pid = {}
            for gpu in snapshot.gpus:
                for proc in gpu.processes:
                    label = self._run_labels.get(launch_of(proc.pid, self._run_labels))
                    if label:
                        run_of_pid[proc.pid] = label
            history = {i: tuple(h) for i, h in monitor.history.items()}
            now_shown = shown(snapshot, history, run_of_pid)
            if now_shown != last:
                self.post_message(GpuUpdate(snapshot, history, run_of_pid))
                last = now_shown

        poll_on_ticks(get_current_worker(), self.poll_s, step, self.poll_failed("reading GPUs"))

    def poll_failed(self, what: str):
        """A reporter for a polling thread: an error toast naming what failed (the thread goes on)."""
        return lambda text: self.notify(
            printable(f"{what}: {text}"), title="xtui", severity="error", timeout=10, markup=False
        )

    def on_run_update(self, message: RunUpdate) -> None:
        """Fold the events in, alert on a finished / failed / stalled run, tell the screens."""
        rec = self.record(message.work_dir)
        before = rec.status.state
        rec.apply(message.events)
        rec.status, rec.checkpoints = message.status, message.checkpoints
        now = message.status.state
        if now != before and now in ALERT_STATES and before in LIVE_STATES:
            self.alert(rec)
        elif message.work_dir in self._launched and message.status != self._launched[message.work_dir]:
            del self._launched[message.work_dir]  # the launch's first status; from now on the rule above
            if now in ALERT_STATES and now not in LIVE_STATES:  # it ended before a poll saw it live
                self.alert(rec)
        for screen in self._screens_to_tell():
            if isinstance(screen, RunWatcher):
                screen.run_updated(rec, message.events)

    def on_gpu_update(self, message: GpuUpdate) -> None:
        """Keep the snapshot and hand it to the screens that show GPUs."""
        self.gpu = message
        for screen in self._screens_to_tell():
            if isinstance(screen, GpuWatcher):
                screen.gpu_updated(message)

    def _screens_to_tell(self) -> list[Screen]:
        """Screens that take new figures: mounted ones (one not mounted yet reads the app's state in on_mount), none
        once the app is shutting down (its widgets are being removed: a message still queued must not reach them)."""
        return [screen for screen in self.screen_stack if screen.is_mounted] if self.is_running else []

    def alert(self, rec: RunRecord) -> None:
        """Toast, terminal bell and a desktop notification for a run that ended or stalled."""
        status = rec.status
        text = printable(f"{rec.label}: {status.state}" + (f" - {status.cause}" if status.cause else ""))
        severity = {"finished": "information", "failed": "error"}.get(status.state, "warning")
        self.notify(text, title="xtui", severity=severity, timeout=10, markup=False)
        self.bell()
        write_to_terminal(self, notification("xtui", text))

    def crashed(self, error: Exception) -> None:
        """An exception nothing caught (in a handler, a worker, a timer, a render): its traceback to a crash log, and
        exit with one line naming the file. Only the first counts: the app is already on its way out after it."""
        if self.crash_message is not None:
            return
        from tui.crash import record

        self.crash_message = record(error.error if isinstance(error, WorkerFailed) else error)
        self.exit(return_code=1, message=Text(self.crash_message))  # Text: a bracket in it is not markup
