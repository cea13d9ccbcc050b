"""Chat with a model: streaming answers, Esc to cancel, A/B columns from one copy of the weights, images."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Header, Input, Static

from engine.chat.decoding import Sampling
from engine.chat.models import BASE, LoadedModel, LoadOptions, SourceKind
from engine.chat.session import ChatSession
from engine.chat.spec import ChatSpec
from engine.xtuner.templates import template as find_template
from tui.messages import ChatDelta, ChatDone, ChatIdle, ChatStatus, ModelReady, NeedsDevice
from tui.widgets.chat_column import ChatColumn, update_text
from tui.widgets.image_preview import ImagePreview
from tui.widgets.key_bar import KeyBar
from tui.widgets.path_input import PathInput

SPEED_EVERY_S = 0.5  # the live tok/s in the status line
STATUS_CHARS = 76  # an error status longer than this (a line at 80 columns) shows its start; the column holds it whole
FRAME_S = 1 / 15  # streamed text reaches the screen at most this often (the first piece at once)
CPU_FRAME_S = 1 / 4  # on a CPU each update's repaint takes the generating thread's GIL and a core: fewer


class ChatScreen(Screen):
    """Ask in the prompt line; answers stream into one column, or two side by side (A/B)."""

    BINDINGS = [
        Binding("escape", "cancel_or_back", "Cancel/back"),
        Binding("ctrl+b", "compare", "A/B"),
        Binding("ctrl+r", "reset", "Reset"),
        Binding("f2,ctrl+n", "settings", "Settings"),  # ctrl+e is the prompt's end-of-line
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+o", "open", "Open"),
        Binding("ctrl+g", "image", "Image", show=False),
        Binding("f3", "web", "Web demo", show=False),
    ]

    def __init__(self, spec: ChatSpec, leave_app: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.leave_app = leave_app  # Esc quits xtui (opened by `xtui chat`) instead of going back a screen
        self.loaded: LoadedModel | None = None
        self.sessions: list[ChatSession] = []
        self.template = spec.template
        self.system = spec.system
        self.sampling = Sampling()
        self.image: str | None = None  # attached to the next question (LLaVA)
        self._speed_shown = 0.0
        self.busy = False
        self._cancel = threading.Event()
        self.web = None  # the engine.chat.web.WebChat served from here, if any

    def compose(self) -> ComposeResult:
        """Status, the answer columns, the image row (LLaVA), the prompt."""
        yield Header()
        yield Static("loading…", id="chat-status", markup=False)
        web = Static(id="web-status", markup=False)
        web.display, web.styles.padding = False, (0, 1)
        yield web
        with Horizontal(id="chat-columns"):
            yield ChatColumn(self.spec.source.label, hint="Loading the model; type your question meanwhile.")
        with Horizontal(id="image-row", classes="" if self.spec.source.kind is SourceKind.LLAVA else "hidden"):
            yield PathInput(placeholder="image path (Tab completes, Enter attaches)", id="image-path", compact=True)
            yield ImagePreview(placeholder="no image", id="image-preview")
        yield Input(placeholder="Ask something (Enter sends, Esc cancels an answer)", id="prompt", compact=True)
        yield KeyBar()

    def on_mount(self) -> None:
        """Start loading; the prompt takes typing at once."""
        self.sub_title = self.spec.source.label
        self.query_one("#prompt", Input).focus()
        self.load_model(self.spec.options)

    # Loading

    @work(thread=True, exclusive=True, group="chat-load")
    def load_model(self, options: LoadOptions) -> None:
        """Check GPU memory, load (converting a checkpoint first), add the A/B second; post the outcome."""
        from engine.chat import device, models

        say = lambda text: self.post_message(ChatStatus(text))  # noqa: E731
        try:
            owners = self.app.gpu.run_of_pid if getattr(self.app, "gpu", None) else {}
            plan = device.plan_load(self.spec.source, options, owners, getattr(self.app, "gpu_backend", None))
            if plan is not None and not plan.fits:
                self.post_message(NeedsDevice(plan))
                return
            if plan is not None:
                say(plan.message)
                options = plan.options(options)
            loaded = models.load(self.spec.source, options, say)
            if self.spec.compare is not None:
                loaded.add_compare(self.spec.compare, say)
        except Exception as exc:  # anything the load raises is shown, never a crash
            text = str(exc) if str(exc).startswith("cannot load") else f"cannot load: {exc}"  # the engine's own say so
            self.post_message(ChatStatus(text, error=True))
            return
        self.post_message(ModelReady(loaded))

    def on_needs_device(self, message: NeedsDevice) -> None:
        """Ask which of the alternatives to load on."""
        from tui.dialogs.device_choice import DeviceChoiceScreen

        def chosen(choice: str | None) -> None:
            if choice is None:
                self._status("not loaded: no device chosen", error=True)
            else:
                self.load_model(message.plan.options(self.spec.options, choice))

        self.app.push_screen(DeviceChoiceScreen(message.plan), chosen)

    def on_chat_status(self, message: ChatStatus) -> None:
        """Show a loading step or an error; an error longer than a line goes whole to the first column, shortened here."""
        text = message.text
        if message.error and (len(text) > STATUS_CHARS or "\n" in text):
            self.query(ChatColumn).first().fail(text)
            text = text.splitlines()[0][: STATUS_CHARS - 1].rstrip() + "…"
        self._status(text, message.error)

    def _status(self, text: str, error: bool = False) -> None:
        status = self.query_one("#chat-status", Static)
        update_text(status, text)
        if status.has_class("error") != error:  # a class change restyles the screen: only when it changes
            status.set_class(error, "error")

    def on_model_ready(self, message: ModelReady) -> None:
        """Open the session(s); answer what was typed while loading."""
        self.loaded = message.loaded
        tpl = find_template(self.template) if self.template else None
        self.sessions = [ChatSession(self.loaded, tpl, self.system, self.sampling)]
        if len(self.loaded.adapters) > 1:
            self._set_columns([self.loaded.adapters[0], self.loaded.adapters[1]])
        self.query_one(ChatColumn).query(".hint").remove()
        self._ready_status()
        if getattr(self.loaded.decoder, "building", False):  # say when the compiled decoder is ready
            self._decoder_watch = self.set_interval(0.5, self._watch_decoder)

    def _watch_decoder(self) -> None:
        """Show the end of the decoder's background build (then stop watching)."""
        if not self.loaded.decoder.building:
            self._decoder_watch.stop()
            if not self.busy:
                self._ready_status()

    def _decoder(self) -> str:
        """Which decoder answers (or will), for the status line."""
        decoder = self.loaded.decoder if self.loaded else None
        return f" · {decoder.status}" if decoder is not None else ""

    def _ready_status(self) -> None:
        loaded = self.loaded
        if loaded is None:
            return
        extra = "  ctrl+b: A/B" if loaded.adapters else ""
        self._status(f"ready · {loaded.device} · template {self.template or 'none'}{self._decoder()}{extra}")

    # Asking

    @on(Input.Submitted, "#prompt")
    def send(self, event: Input.Submitted) -> None:
        """Ask every column the question."""
        text = event.value.strip()
        if not text:
            return
        if self.loaded is None:
            self.notify("the model is still loading", severity="warning")
            return
        if self.busy:
            self.notify("still answering: Esc cancels", severity="warning")
            return
        event.input.value = ""
        image = self.image if self.loaded.llava is not None else None
        for session in self.sessions:
            session.image = image
        self.image = None
        if image is None and self.loaded.llava is not None:  # the preview shows what this question carries
            self.query_one("#image-preview", ImagePreview).show(None)
        for column in self.query(ChatColumn):
            column.ask(text, image)
        self.busy = True
        self._cancel = threading.Event()
        self._status("answering… (Esc cancels)")
        self.answer(text, self._cancel)

    @work(thread=True, exclusive=True, group="chat-generate")
    def answer(self, prompt: str, cancel: threading.Event) -> None:
        """Generate each column's answer in turn, posting text at most every FRAME_S (CPU_FRAME_S on a CPU)."""
        frame_s = CPU_FRAME_S if str(self.loaded.device).startswith("cpu") else FRAME_S
        for index, session in enumerate(list(self.sessions)):
            pending: list[str] = []
            last = float("-inf")  # the first piece goes out at once
            try:
                for piece in session.reply(prompt, cancel):
                    pending.append(piece)
                    if time.monotonic() - last >= frame_s:
                        self._post_delta(index, pending, session)
                        last = time.monotonic()
                self._post_delta(index, pending, session)
                self.post_message(ChatDone(index, session.exchanges[-1] if session.exchanges else None))
            except Exception as exc:  # the pane shows it; the model stays loaded
                self._post_delta(index, pending, session)
                self.post_message(ChatDone(index, None, f"{type(exc).__name__}: {exc}"))
            if cancel.is_set():
                break
        self.post_message(ChatIdle())

    def _post_delta(self, index: int, pending: list[str], session: ChatSession) -> None:
        generation = session.last
        tokens = generation.tokens if generation else 0
        elapsed = time.perf_counter() - generation.started if generation and generation.started else 0.0
        if pending:
            self.post_message(ChatDelta(index, "".join(pending), tokens, elapsed))
            pending.clear()

    def on_chat_delta(self, message: ChatDelta) -> None:
        """Append streamed text; show the speed."""
        self.query_one("#chat-columns").children[message.column].extend(message.text)
        now = time.monotonic()
        if message.elapsed_s > 0 and now - self._speed_shown >= SPEED_EVERY_S:
            self._speed_shown = now
            speed = message.tokens / message.elapsed_s
            self._status(f"answering… {message.tokens} tokens, {speed:.0f} tok/s{self._decoder()} (Esc cancels)")

    def on_chat_done(self, message: ChatDone) -> None:
        """Close one column's answer."""
        column = list(self.query(ChatColumn))[message.column]
        if message.error:
            column.fail(message.error)
        elif message.exchange is not None:
            ex = message.exchange
            column.finish(ex.reason, ex.tokens, ex.tokens_per_s)

    def on_chat_idle(self, _: ChatIdle) -> None:
        """Free the prompt."""
        self.busy = False
        self._ready_status()

    def action_cancel_or_back(self) -> None:
        """Esc: cancel the answer being generated, else leave the chat."""
        if self.busy:
            self._cancel.set()
            self._status("cancelling…")
        elif self.leave_app:
            self.app.exit()
        else:
            self.app.pop_screen()

    # Columns, settings, images, transcripts

    def _set_columns(self, variants: list[str | None]) -> None:
        """One column per variant, each with its own session on the same loaded model, all going on from the first's history."""
        tpl = find_template(self.template) if self.template else None
        history = list(self.sessions[0].exchanges) if self.sessions else []
        self.sessions = [ChatSession(self.loaded, tpl, self.system, self.sampling, v) for v in variants]
        for session in self.sessions:
            session.exchanges = list(history)
        box = self.query_one("#chat-columns")
        box.remove_children()
        names = {None: self.spec.source.label, BASE: "base (adapter off)", "adapter": self.spec.source.label}
        columns = [ChatColumn(names.get(v, v)) for v in variants]
        box.mount_all(columns)
        for column in columns:
            column.call_after_refresh(column.show_exchanges, history)

    def action_compare(self) -> None:
        """Toggle A/B: base vs adapter (or two checkpoints) side by side, one copy of the weights."""
        if self.loaded is None or self.busy:
            return
        if not self.loaded.adapters:
            self.notify(
                "A/B needs an adapter or a checkpoint: a plain model has nothing to switch off", severity="warning"
            )
            return
        if len(self.sessions) > 1:
            self._set_columns([None])
        elif len(self.loaded.adapters) > 1:
            self._set_columns(self.loaded.adapters[:2])
        else:
            self._set_columns([BASE, self.loaded.adapters[0]])

    def action_reset(self) -> None:
        """Forget the conversation (the model stays loaded)."""
        if self.busy:
            return
        for session in self.sessions:
            session.reset()
        for column in self.query(ChatColumn):
            column.remove_children()
            column.note("history cleared")

    def action_settings(self) -> None:
        """Template, system prompt and sampling."""
        from tui.dialogs.chat_settings import ChatSettings, ChatSettingsScreen

        def apply(settings: ChatSettings | None) -> None:
            if settings is None:
                return
            self.template, self.system, self.sampling = settings.template, settings.system, settings.sampling
            tpl = find_template(self.template) if self.template else None
            for session in self.sessions:
                session.template, session.system, session.sampling = tpl, self.system, self.sampling
            self._ready_status()

        self.app.push_screen(ChatSettingsScreen(ChatSettings(self.template, self.system, self.sampling)), apply)

    def action_image(self) -> None:
        """Go to the image path field (LLaVA)."""
        if self.spec.source.kind is SourceKind.LLAVA:
            self.query_one("#image-path", PathInput).focus()

    @on(Input.Submitted, "#image-path")
    def attach(self, event: Input.Submitted) -> None:
        """Check the image and attach it to the next question; the preview shows it."""
        from engine.chat.images import ImageError, check_image, expand_user_path

        try:
            info = check_image(expand_user_path(event.value))
        except ImageError as exc:
            self._status(str(exc), error=True)
            return
        self.image = str(info.path)
        self.query_one(ImagePreview).show(info)
        self._status(f"image attached to the next question: {info.path.name} ({info.width}x{info.height})")
        self.query_one("#prompt", Input).focus()

    def action_save(self) -> None:
        """Save the transcript (every column)."""
        from engine.chat import transcripts

        columns = tuple(
            transcripts.Column(col.border_title or "", tuple(s.exchanges))
            for col, s in zip(self.query(ChatColumn), self.sessions, strict=False)
        )
        if not any(c.exchanges for c in columns):
            self.notify("nothing to save yet", severity="warning")
            return
        record = transcripts.Transcript(
            self.spec.source.label, self.template, self.system, self.sampling, columns, time.time()
        )
        try:
            path = transcripts.save(record)
        except OSError as exc:
            self.notify(f"cannot save: {exc}", severity="error")
            return
        self.notify(f"saved {path}")

    def action_open(self) -> None:
        """Reopen a saved transcript: its history continues here."""
        from engine.chat import transcripts
        from tui.dialogs.transcripts import TranscriptsScreen

        def opened(path: Path | None) -> None:
            if path is None:
                return
            try:
                record = transcripts.load(path)
            except transcripts.TranscriptError as exc:
                self.notify(str(exc), severity="error")
                return
            for column, session, saved in zip(self.query(ChatColumn), self.sessions, record.columns, strict=False):
                session.exchanges = list(saved.exchanges)
                column.show_exchanges(saved.exchanges)
                column.note(f"reopened {path.name}")

        if not self.busy:
            self.app.push_screen(TranscriptsScreen(), opened)

    # The web demo

    def action_web(self) -> None:
        """Serve the model loaded here as a web chat on 127.0.0.1 (a free port), or stop the one served."""
        if self.web is not None:
            self._stop_web()
            self.notify("web chat stopped")
        elif self.loaded is None:
            self.notify("the model is still loading", severity="warning")
        else:
            self._web_line("starting the web chat…")
            self.serve_web()

    @work(thread=True, exclusive=True, group="chat-web")
    def serve_web(self) -> None:
        """Start the page (Gradio's import is slow) on the loaded model, in this chat's template and system prompt."""
        from dataclasses import replace

        from engine.chat.web import serve, tunnel_command
        from engine.errors import ChatError

        spec = replace(self.spec, template=self.template, system=self.system)
        try:
            page = serve(spec, sampling=self.sampling, loaded=self.loaded)
        except ChatError as exc:
            self.app.call_from_thread(self._web_failed, str(exc))
            return
        self.app.call_from_thread(self._web_started, page, tunnel_command(page.port))

    def _web_started(self, page, tunnel: str) -> None:
        """Show the address and the SSH tunnel (or stop a page that came after the screen left)."""
        if not self.is_attached:
            page.close()
            return
        self.web = page
        self._web_line(f"web chat on {page.url} (f3 stops it); from your own machine:\n{tunnel}")

    def _web_failed(self, error: str) -> None:
        """Say why no page is served (Gradio missing: how to install it)."""
        self._web_line(f"no web chat: {error}")
        self.notify(error, severity="error", markup=False, timeout=15)

    def _web_line(self, text: str | None) -> None:
        """Show `text` in the web line, or hide it (None)."""
        line = self.query_one("#web-status", Static)
        line.display = text is not None
        line.update(text or "")

    def _stop_web(self) -> None:
        """Stop serving the page."""
        page, self.web = self.web, None
        if page is not None:
            page.close()
        self._web_line(None)

    def on_unmount(self) -> None:
        """Leaving the chat (or quitting) stops the page, and the decoder's background compile."""
        if self.web is not None:
            self.web.close()
            self.web = None
        if self.loaded is not None and self.loaded.decoder is not None:
            self.loaded.decoder.close(0)

    def commands(self):
        """Palette entries of this screen."""
        yield SystemCommand("Chat: web demo", "Serve this model as a web chat on 127.0.0.1 (f3)", self.action_web)
        yield SystemCommand("Chat: A/B", "Base vs adapter (or two checkpoints) side by side", self.action_compare)
        yield SystemCommand("Chat: reset", "Forget the conversation", self.action_reset)
        yield SystemCommand("Chat: settings", "Template, system prompt, sampling", self.action_settings)
        yield SystemCommand("Chat: save transcript", "Save the conversation as JSON", self.action_save)
        yield SystemCommand("Chat: open transcript", "Reopen a saved conversation", self.action_open)
