"""One run, live: progress and ETA, curves, samples, the log tail and the checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Header, ProgressBar, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from engine.runs import manifest as mf
from engine.runs.events import DataloaderAdvance, Started, TrainStep, TrainSteps
from engine.runs.folders import log_files
from engine.runs.logs import TextFollower
from themes.colours import theme_colour
from tui.format import eta_text, status_text
from tui.messages import LogText
from tui.terminal_text import printable
from tui.ticks import PAINT_EVERY_POLLS, poll_on_ticks
from tui.widgets.column_series import RunCurves
from tui.widgets.curves import Curves
from tui.widgets.key_bar import KeyBar
from tui.widgets.log_tail import LogTail
from tui.widgets.samples_pane import SamplesPane

if TYPE_CHECKING:
    from rich.text import Text

LOG_LINES = 2000
LOG_START_BYTES = 64 * 1024  # the tail shown on opening a long log
JOB_KEYS = "v convert · m merge · x export (background jobs) · j jobs · c chat · r resume"


def _epoch_text(state) -> str:
    """`epoch E/N  ` for an epoch-based run (N from the iteration an epoch was saved at and max_iters), else ''."""
    epoch = state.last.epoch
    if epoch is None:
        return ""
    ends = {it // e for e, it in state.saved_epochs.items() if e and it % e == 0}  # iterations per epoch
    per = ends.pop() if len(ends) == 1 else None
    of = f"/{state.max_iters // per}" if per and state.max_iters and state.max_iters % per == 0 else ""
    return f"epoch {epoch}{of}  "


class RunProgress(ProgressBar):
    """The progress bar without its once-a-second ETA timer (the ETA is xtuner's, in the text beside it). Made with
    a total, never indeterminate: that animation repaints 15 times a second for as long as a model loads."""

    _drawn: tuple[int, int, int] | None = None  # (total, cells filled, percent) as last drawn

    def on_mount(self, event) -> None:
        """Skip ProgressBar's own mount handler: its timer repaints every second for nothing."""
        event.prevent_default()

    def show(self, done: int, total: int) -> None:
        """Move to `done` of `total` when that changes what is drawn (a cell of the bar, the percentage): any update
        repaints the whole row, and at 80 columns a 100k-iteration run moves a cell every ~1500 iterations."""
        drawn = (total, done * max(1, self.size.width) // total, round(100 * done / total))
        if drawn != self._drawn:
            self._drawn = drawn
            self.update(total=total, progress=done)


class RunScreen(Screen):
    """The live view of one work dir."""

    BINDINGS = [
        Binding("escape", "app.back", "Back"),
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("c", "chat", "Chat"),
        Binding("1", "tab('curves')", "Curves", show=False),
        Binding("2", "tab('samples')", "Samples", show=False),
        Binding("3", "tab('log')", "Log", show=False),
        Binding("4", "tab('checkpoints')", "Checkpoints", show=False),
        Binding("v", "job('convert')", "Convert", show=False),
        Binding("m", "job('merge')", "Merge", show=False),
        Binding("x", "job('export')", "Export", show=False),
        Binding("j", "jobs", "Jobs", show=False),
    ]

    def __init__(self, work_dir: Path) -> None:
        super().__init__()
        self.work_dir = work_dir
        self._advancing: int | None = None
        self._checkpoint_rows: list[tuple[str, ...]] | None = None  # None: the table is not filled yet
        self._shown: dict[str, tuple] = {}  # selector -> what its Static shows
        self._log_backlog = ""  # log text not yet written to the log view
        self._fed = (0, 0, 0)  # how many of the record's steps, validations and samples the tabs hold
        self._painted_state = ""
        self._stale = False  # the record changed since the last paint

    def compose(self) -> ComposeResult:
        """Status line, progress, tabs."""
        yield Header()
        yield Static(id="run-status")
        with Horizontal(id="progress-row"):
            yield RunProgress(
                total=1, id="progress", show_eta=False, show_percentage=True
            )  # 0% until the first iteration
            yield Static(id="progress-text")
        with TabbedContent(initial="samples"):
            with TabPane("Curves", id="curves"):
                yield RunCurves()
            with TabPane("Samples", id="samples"):
                yield SamplesPane()
            with TabPane("Log", id="log"):
                yield LogTail(max_lines=LOG_LINES, id="log-view")
            with TabPane("Checkpoints", id="checkpoints"):
                yield DataTable(id="checkpoint-table", cursor_type="row")
                yield Static(JOB_KEYS, id="checkpoint-keys")
        yield KeyBar()

    def on_mount(self) -> None:
        """Fill from what the app has read so far, then tail the log."""
        self.sub_title = printable(str(self.work_dir), newlines=False)
        rec = self.app.record(self.work_dir)
        self._feed(rec)
        self._refresh(rec)
        self.set_interval(PAINT_EVERY_POLLS * self.app.poll_s, self._paint)  # new data is drawn on this beat
        self.tail_log()

    def on_screen_resume(self) -> None:
        """Back on top: draw what arrived meanwhile."""
        self._paint()

    def run_updated(self, rec, events) -> None:
        """New events of some run: ours show on the next paint (at once when the run's state changed)."""
        if rec.work_dir != self.work_dir:
            return
        for event in events:
            if isinstance(event, DataloaderAdvance):
                self._advancing = event.steps
            elif isinstance(event, (TrainStep, TrainSteps, Started)):
                self._advancing = None
        self._stale = True
        if rec.status.state != self._painted_state:
            self._paint()

    def _paint(self) -> None:
        """Draw what arrived since the last paint, in one frame: steps, samples, status, progress, log text
        (nothing while another screen covers this one)."""
        if not self.is_active:  # covered (is_current would be true under a modal dialog too)
            return
        self._flush_log()
        if not self._stale:
            return
        self._stale = False
        rec = self.app.record(self.work_dir)
        self._feed(rec)
        self._refresh(rec)

    def _feed(self, rec) -> None:
        """Hand the curves and the samples what the record gained since the last paint: the new rows of its step
        columns as one batch (copied as arrays, no object per step), its new validations and samples."""
        state = rec.state
        steps, validations, samples = self._fed
        self._fed = (len(state.steps), len(state.validations), len(state.samples))
        curves = self.query_one(Curves)
        if len(state.steps) > steps:
            curves.add_steps(TrainSteps(state.steps, steps, len(state.steps)))
        curves.add_validations(state.validations[validations:])
        if len(state.samples) > samples:
            self.query_one(SamplesPane).add_samples(state.samples[samples:])

    def _refresh(self, rec) -> None:
        """Status line, progress bar, checkpoints table."""
        status = rec.status
        self._painted_state = status.state
        line = status_text(status.state, self.app.theme_variables)
        line.append(printable(f"  {rec.label}", newlines=False))
        if status.pid:
            line.append(f"  pid {status.pid}")
        if status.cause:  # the engine's words, which may quote a log line
            line.append(f"\n{printable(status.cause)}", style=theme_colour("error", self.app.theme_variables))
        self._set_text("#run-status", line, layout=True)  # a cause adds lines
        last, total = rec.state.last, rec.state.max_iters
        if total:
            self.query_one(RunProgress).show(rec.state.done_iter, total)
        if self._advancing is not None:
            text = f"resuming: advancing the dataloader {self._advancing} steps"
        elif last:
            eta = eta_text(last.eta) if status.state == "running" else ""
            text = f"{_epoch_text(rec.state)}iter {rec.state.done_iter}/{total or '?'}"
            text += f"  eta {eta}" if eta else ""
        else:
            text = "waiting for the first iteration"
        self._set_text("#progress-text", text, layout=False)  # one line, its height never changes
        self._fill_checkpoints(rec.checkpoints)

    def _set_text(self, selector: str, text: Text | str, layout: bool) -> None:
        """Update a Static only when its text changed: an update costs a repaint, with `layout` a whole reflow."""
        key = (str(text), str(getattr(text, "style", "")), getattr(text, "spans", None))
        if self._shown.get(selector) != key:
            self._shown[selector] = key
            self.query_one(selector, Static).update(text, layout=layout)

    def _fill_checkpoints(self, checkpoints) -> None:
        """The checkpoints table, newest first (an Epoch column once an epoch_N.pth is there); rebuilt only when a row
        changed, the cursor kept on its checkpoint."""
        epochs = any(ckpt.epoch is not None for ckpt in checkpoints)
        rows = []
        for ckpt in reversed(checkpoints):
            state = "ok" if ckpt.ok else printable(ckpt.problem or "", newlines=False)
            if ckpt.latest:
                state += " (last_checkpoint)"
            kind = "DeepSpeed" if ckpt.deepspeed else "file"
            where = "?" if ckpt.iter is None else str(ckpt.iter)
            epoch = ("" if ckpt.epoch is None else str(ckpt.epoch),) if epochs else ()
            rows.append((str(ckpt.path), where, *epoch, kind, f"{ckpt.size / 2**20:.1f} MiB", state))
        table = self.query_one("#checkpoint-table", DataTable)
        columns = [("iter", "Iter"), *([("epoch", "Epoch")] if epochs else []), ("kind", "Kind"), ("size", "Size")]
        if len(table.columns) != len(columns) + 1:
            table.clear(columns=True)
            for key, label in [*columns, ("state", "State")]:
                table.add_column(label, key=key)
            self._checkpoint_rows = None
        if rows == self._checkpoint_rows:
            return
        self._checkpoint_rows = rows
        selected = self._selected_key(table)
        table.clear()
        for key, *cells in rows:
            table.add_row(*cells, key=key)
        keys = [row[0] for row in rows]
        if selected in keys:
            table.move_cursor(row=keys.index(selected))

    @staticmethod
    def _selected_key(table: DataTable) -> str | None:
        """The key of the row under the cursor, if any."""
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    @work(thread=True, exclusive=True, group="log-tail")
    def tail_log(self) -> None:
        """Post the log's new text on the paint beat: xtui's console file, else the newest mmengine log."""
        follower: TextFollower | None = None

        def step() -> None:
            nonlocal follower
            console = self.work_dir / mf.CONSOLE
            path = console if console.exists() else (log_files(self.work_dir) or [None])[-1]
            if path is not None and (follower is None or follower.path != path):
                size = path.stat().st_size if path.exists() else 0
                follower = TextFollower(path, offset=max(0, size - LOG_START_BYTES))
            text = "".join(follower.poll()) if follower is not None else ""
            if text:
                self.post_message(LogText(text))

        poll_on_ticks(
            get_current_worker(), PAINT_EVERY_POLLS * self.app.poll_s, step, self.app.poll_failed("reading the log")
        )

    def on_log_text(self, message: LogText) -> None:
        """Keep new log text for the next paint."""
        backlog = self._log_backlog + message.text
        if len(backlog) > LOG_START_BYTES:  # the view keeps a tail anyway: keep one, from a line start
            backlog = backlog[-LOG_START_BYTES:]
            backlog = backlog[backlog.find("\n") + 1 :]
        self._log_backlog = backlog

    def _flush_log(self) -> None:
        """Write the kept text to the log view, if it is showing (writing to a hidden one is wasted work)."""
        if self._log_backlog and self.query_one(TabbedContent).active == "log":
            self.query_one(LogTail).write(self._log_backlog)
            self._log_backlog = ""

    def action_tab(self, tab: str) -> None:
        """Switch tab by number key."""
        self.query_one(TabbedContent).active = tab

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        """Focus the tab's content, so its keys (and their footer entries) work at once; the log catches up."""
        if event.pane.id == "log":
            self._flush_log()
        event.pane.query_one("Curves, SamplesPane, LogTail, DataTable").focus()

    def _selected_checkpoint(self) -> Path | None:
        """The checkpoint under the cursor when the checkpoints tab is showing."""
        if self.query_one(TabbedContent).active != "checkpoints":
            return None
        key = self._selected_key(self.query_one("#checkpoint-table", DataTable))
        return Path(key) if key else None

    def action_stop(self) -> None:
        """Ask, then stop the run's process group."""
        from tui.dialogs.confirm import StopScreen

        self.app.push_screen(StopScreen(self.work_dir))

    def action_resume(self) -> None:
        """Pick the checkpoint to resume from, see its pre-flight, then resume."""
        from tui.dialogs.confirm import ResumeScreen

        self.app.push_screen(ResumeScreen(self.work_dir))

    def action_chat(self) -> None:
        """Chat with the selected (or latest good) checkpoint, in the run's prompt template."""
        from engine.chat.spec import build_spec
        from engine.errors import ChatError

        try:
            spec = build_spec(run=self.work_dir, checkpoint=self._selected_checkpoint())
        except ChatError as exc:
            self.notify(printable(str(exc)), severity="error", markup=False)
            return
        self.app.open_chat(spec)

    def action_job(self, kind: str) -> None:
        """Convert, merge or export the selected (or latest good) checkpoint as a background job."""
        from engine.runs.jobs import JobKind
        from tui.screens.jobs import start_job

        start_job(self, self.work_dir, JobKind(kind), self._selected_checkpoint())

    def action_jobs(self) -> None:
        """The run's jobs: their state, progress, logs and results."""
        from tui.screens.jobs import JobsScreen

        self.app.push_screen(JobsScreen(self.work_dir))

    def commands(self):
        """Palette entries of this screen."""
        for kind in ("convert", "merge", "export"):
            yield SystemCommand(f"{kind.capitalize()} checkpoint", f"{kind} the selected checkpoint in the background",
                                lambda k=kind: self.action_job(k))  # fmt: skip
        yield SystemCommand("Jobs", "Convert, merge and export jobs of this run", self.action_jobs)
        yield SystemCommand("Stop run", "Stop this run (asks first)", self.action_stop)
        yield SystemCommand("Resume run", "Pick a checkpoint and resume from it", self.action_resume)
        yield SystemCommand("Chat with checkpoint", "Chat with the selected or latest checkpoint", self.action_chat)
        for tab in ("curves", "samples", "log", "checkpoints"):
            yield SystemCommand(f"Show {tab}", f"Switch to the {tab} tab", lambda t=tab: self.action_tab(t))
