"""A run's jobs after training (convert, merge, export): started from the checkpoints list as detached `xtui`
commands, listed with their state and progress, the selected one's log and output folder, and a key to chat with it."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static
from textual.worker import get_current_worker

from engine.runs.jobs import Job, JobKind, JobState, JobStatus, list_jobs
from engine.runs.logs import TextFollower
from tui.terminal_text import printable
from tui.ticks import poll_on_ticks
from tui.widgets.key_bar import KeyBar
from tui.widgets.log_tail import LogTail

LOG_LINES = 2000
COLUMNS = (("job", "Job", 28), ("state", "State", 17), ("progress", "Progress", 8), ("started", "Started", 11))
NO_JOBS = "No jobs yet: in the run's Checkpoints tab, v converts, m merges and x exports the selected checkpoint."


def cli(*words: object) -> list[str]:
    """The command line of an `xtui` subcommand, run by this interpreter (so that a job outlives the TUI)."""
    return [sys.executable, "-m", "tui.cli", *map(str, words)]


@dataclass(frozen=True, slots=True)
class JobPlan:
    """A job about to start: its kind, command line, output folder, label and (a conversion's) base model."""

    kind: JobKind
    argv: list[str]
    out: Path
    label: str
    base: Path | None = None
    template: str | None = None  # the run's, for a chat with the result


def plan(work_dir: Path, kind: JobKind, checkpoint: Path | None) -> JobPlan:
    """What a job of `kind` on a run's checkpoint (None: its latest good one) runs.

    Raises the engine's XtuiError when it cannot run (no config, no converted adapter to merge, no local base).
    """
    from engine.runs.export import ExportError, pick_checkpoint
    from engine.runs.model_card import base_named
    from engine.xtuner.convert import HfKind, hf_kind
    from engine.xtuner.templates import template_of_config

    source = pick_checkpoint(work_dir, checkpoint)
    template = template_of_config(source.config.read_text(encoding="utf-8", errors="replace"))
    run, stem, name = source.work_dir, source.checkpoint.stem, source.checkpoint.name
    named = base_named(source.config)
    base = Path(named).expanduser() if named else None
    if kind is not JobKind.MERGE:
        out = run / f"{stem}_{'hf' if kind is JobKind.CONVERT else 'export'}"
        argv = cli(kind, run, "--checkpoint", source.checkpoint, "--out", out)
        return JobPlan(kind, argv, out, f"{kind} {name}", base if kind is JobKind.CONVERT else None, template)
    adapter = run / f"{stem}_hf"
    found = hf_kind(adapter)
    if found is None:
        raise ExportError(f"{name} is not converted yet: convert it first (v), then merge")
    if found is not HfKind.ADAPTER:
        raise ExportError(f"{adapter.name} holds a {found}, not an adapter: nothing to merge, chat with it (j, then c)")
    if base is None or not (base / "config.json").is_file():
        raise ExportError(f"the base model {base} of {source.config.name} is not a model folder here: download it")
    out = run / f"{stem}_merged"
    return JobPlan(kind, cli("merge", base, adapter, "--out", out), out, f"merge {adapter.name}", None, template)


def start_job(screen: Screen, work_dir: Path, kind: JobKind, checkpoint: Path | None) -> None:
    """Plan the job in a thread; ask before replacing an output folder that exists; start it; show the jobs."""

    def planned() -> None:
        from engine.errors import XtuiError

        try:
            job = plan(work_dir, kind, checkpoint)
        except XtuiError as exc:
            screen.app.call_from_thread(screen.notify, printable(str(exc)), severity="error", markup=False)
            return
        used = job.out.exists() and (not job.out.is_dir() or any(job.out.iterdir()))
        screen.app.call_from_thread(_ask_replace if used else _launch, screen, work_dir, job)

    screen.run_worker(planned, thread=True, group="job-plan", exclusive=True)


def _ask_replace(screen: Screen, work_dir: Path, job: JobPlan) -> None:
    """The confirm dialog for an output folder that exists: replace it (deleted first), or keep it and do nothing."""
    from tui.dialogs.confirm import ReplaceScreen

    def answered(replace: bool | None) -> None:
        if replace:
            screen.run_worker(lambda: _replace_then_launch(screen, work_dir, job), thread=True, group="job-plan")

    screen.app.push_screen(ReplaceScreen(job.out, job.label), answered)


def _replace_then_launch(screen: Screen, work_dir: Path, job: JobPlan) -> None:
    """Delete the old output folder (in a thread: it can be gigabytes), then start the job."""
    try:
        shutil.rmtree(job.out) if job.out.is_dir() else job.out.unlink()
    except OSError as exc:
        screen.app.call_from_thread(screen.notify, f"cannot remove {job.out}: {exc.strerror}", severity="error")
        return
    screen.app.call_from_thread(_launch, screen, work_dir, job)


def _launch(screen: Screen, work_dir: Path, job: JobPlan) -> None:
    """Start the job and open the jobs list on it."""
    from engine.runs.jobs import JobError, start

    try:
        start(work_dir, job.kind, job.argv, job.out, job.label, job.base, job.template)
    except (JobError, OSError) as exc:
        screen.notify(printable(str(exc)), severity="error", markup=False)
        return
    screen.notify(printable(f"{job.label}: started in the background, into {job.out}"), markup=False)
    screen.app.push_screen(JobsScreen(work_dir))


def result_spec(job: Job):
    """What to chat with after a finished job: the merged or exported model, or the converted adapter on its base."""
    from engine.chat.models import SourceKind
    from engine.chat.spec import build_spec
    from engine.xtuner.convert import HfKind, hf_kind
    from engine.xtuner.model_template import template_of_model

    out = job.output
    template = job.template or template_of_model(out)
    kind = hf_kind(out)
    if kind is HfKind.ADAPTER:
        return build_spec(model=Path(job.base) if job.base else None, adapter=out, template=template)
    if kind is HfKind.LLAVA:
        return build_spec(model=Path(job.base) if job.base else None, llava=out, template=template)
    return build_spec(SourceKind.MERGED if job.kind is not JobKind.CONVERT else None, model=out, template=template)


def _running_for(seconds: float) -> str:
    """A running job's time so far, to the minute (the row is drawn again only when it changes): `<1 min`, `7 min`,
    `1 h 05`."""
    minutes = max(0, int(seconds // 60))
    if minutes < 1:
        return "<1 min"
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d}"


def _row(job: Job, status: JobStatus) -> tuple[str, ...]:
    """A job's cells: what, state, progress (a running job that shows no bar: its time so far), started."""
    progress = f"{status.progress:.0%}" if status.progress is not None else ""
    if not progress and status.state is JobState.RUNNING:
        progress = _running_for(time.time() - job.started)
    failed = status.state is JobState.FAILED and status.exit_code is not None
    state = f"{status.state} (exit {status.exit_code})" if failed else str(status.state)
    started = time.strftime("%m-%d %H:%M", time.localtime(job.started))
    return (printable(job.label, newlines=False), state, progress, started)


class JobsScreen(Screen):
    """The jobs of one work dir, newest first: state, progress, the selected job's output folder and log."""

    DEFAULT_CSS = """
    JobsScreen #jobs-table { height: auto; max-height: 40%; }
    JobsScreen #job-detail { padding: 0 1; background: $boost; }
    JobsScreen #no-jobs { padding: 1 2; color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("c", "chat", "Chat with result"),
        Binding("s", "stop", "Stop job"),
    ]

    def __init__(self, work_dir: Path, poll_s: float = 1.0) -> None:
        super().__init__()
        self.work_dir = Path(work_dir)
        self.poll_s = poll_s
        self.jobs: list[tuple[Job, JobStatus]] = []
        self._rows: list[tuple[str, ...]] = []
        self._log_of: Path | None = None  # the log the view shows

    def compose(self) -> ComposeResult:
        """Jobs table, the selected job's output folder and last words, its log."""
        yield Header()
        yield Static(NO_JOBS, id="no-jobs")
        yield DataTable(id="jobs-table", cursor_type="row")
        yield Static(id="job-detail", markup=False)
        yield LogTail(max_lines=LOG_LINES)
        yield KeyBar()

    def on_mount(self) -> None:
        """Columns, then poll the jobs in a thread."""
        self.sub_title = printable(f"jobs of {self.work_dir}", newlines=False)
        table = self.query_one(DataTable)
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)  # fixed: the widths never jump as rows come
        table.focus()
        self.watch_jobs()

    @work(thread=True, exclusive=True, group="jobs-watch")
    def watch_jobs(self) -> None:
        """Read the jobs and the selected one's new log text on every tick."""
        follower: TextFollower | None = None

        def step() -> None:
            nonlocal follower
            jobs = [(job, job.status()) for job in list_jobs(self.work_dir)]
            log = self._log_of
            if log is not None and (follower is None or follower.path != log):
                follower = TextFollower(log)
            text = "".join(follower.poll()) if follower is not None and log is not None else ""
            self.app.call_from_thread(self._show, jobs, log, text)

        poll_on_ticks(get_current_worker(), self.poll_s, step, lambda text: None)

    def _show(self, jobs: list[tuple[Job, JobStatus]], log: Path | None, text: str) -> None:
        """Draw the jobs (the table only when a row changed, the cursor kept) and the log's new text."""
        self.jobs = jobs
        self.query_one("#no-jobs").display = not jobs
        rows = [_row(job, status) for job, status in jobs]
        table = self.query_one(DataTable)
        if rows != self._rows:
            selected = self._selected()
            self._rows = rows
            table.clear()
            for (job, _), cells in zip(jobs, rows, strict=True):
                table.add_row(*cells, key=str(job.folder))
            folders = [str(job.folder) for job, _ in jobs]
            if selected is not None and str(selected.folder) in folders:
                table.move_cursor(row=folders.index(str(selected.folder)))
        if text and log == self._log_of:
            self.query_one(LogTail).write(text)
        self._detail()

    def _selected(self) -> Job | None:
        """The job under the cursor."""
        table = self.query_one(DataTable)
        if not table.row_count or table.cursor_row >= len(self.jobs):
            return None
        return self.jobs[table.cursor_row][0]

    def _selected_status(self) -> tuple[Job, JobStatus] | None:
        """The job under the cursor with its status."""
        job = self._selected()
        return next(((j, s) for j, s in self.jobs if j is job), None) if job else None

    def _detail(self) -> None:
        """The selected job's output folder and last words; its log in the view."""
        found = self._selected_status()
        if found is None:
            self.query_one("#job-detail", Static).update("")
            return
        job, status = found
        state = {JobState.RUNNING: "…", JobState.FINISHED: "done:", JobState.STOPPED: "", JobState.FAILED: "failed:"}[
            status.state
        ]
        hint = "  (c: chat with it)" if status.state is JobState.FINISHED else ""
        self.query_one("#job-detail", Static).update(
            printable(f"output {job.out}{hint}\n{f'{state} ' if state else ''}{status.message}", newlines=True)
        )
        if job.log != self._log_of:
            self._log_of = job.log
            self._new_log_view()

    def _new_log_view(self) -> None:
        """An empty log view for the newly selected job (its follower reads the log from the start)."""
        old = self.query_one(LogTail)
        self.mount(LogTail(max_lines=LOG_LINES), after=old)
        old.remove()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Another job picked: its folder and log."""
        self._detail()

    def action_chat(self) -> None:
        """Chat with the selected job's output once it finished."""
        from engine.errors import XtuiError

        found = self._selected_status()
        if found is None or found[1].state is not JobState.FINISHED:
            self.notify("pick a finished job to chat with its result", severity="warning")
            return
        try:
            spec = result_spec(found[0])
        except XtuiError as exc:
            self.notify(printable(str(exc)), severity="error", markup=False)
            return
        self.app.open_chat(spec)

    def action_stop(self) -> None:
        """Stop the selected job, if it runs (in a thread: it waits for the processes to go)."""
        from engine.runs.jobs import JobError, stop

        found = self._selected_status()
        if found is None or found[1].state is not JobState.RUNNING:
            self.notify("pick a running job to stop it", severity="warning")
            return

        def stopping() -> None:
            try:
                gone = stop(found[0])
            except JobError as exc:
                self.app.call_from_thread(self.notify, printable(str(exc)), severity="error", markup=False)
                return
            said = f"{found[0].label} stopped" if gone else f"{found[0].label}: some processes could not be stopped"
            self.app.call_from_thread(self.notify, printable(said), markup=False)

        self.run_worker(stopping, thread=True, group="job-stop")

    def commands(self):
        """Palette entries of this screen."""
        yield SystemCommand("Chat with the job's result", "The merged, exported or converted model", self.action_chat)
        yield SystemCommand("Stop the job", "Stop the selected running job", self.action_stop)
