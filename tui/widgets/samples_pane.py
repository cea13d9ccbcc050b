"""EvaluateChatHook answers grouped by iteration, newest first, each diffed against its prompt's previous answer."""

from __future__ import annotations

import bisect
import functools
import re
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from textual.cache import LRUCache
from textual.content import Content
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.style import Style as VisualStyle
from textual.visual import Visual

from engine.runs.events import Sample
from tui.widgets.line_view import resize_virtual

TOKEN = re.compile(
    r"\s*(?:\w+|[^\w\s])|\s+", re.ASCII
)  # an ASCII word or any other character, with the space before it
REWRITTEN_BELOW = 0.3  # similarity under which a diff is noise: show the new answer as rewritten
RENDER_SLICE_S = 0.05  # render groups for at most this long before letting the screen paint
STRIP_CACHE = 1000  # drawn lines kept
SHORTER_MIN_CHARS = 6  # "much shorter" needs the previous answer to be at least this long
HEADER_BAR = -1  # the indent that marks a block as the group's full-width header
INSERTED = "bold $text-success"
MUTED = "$foreground-muted"  # $text-muted does not resolve inside Content (it comes out white)
REMOVED = f"strike {MUTED}"
ESCAPED = "italic $text-warning"
MARK_STYLE = {
    "empty": "$text-error",
    "identical": "$text-error",
    "shorter": "$text-warning",
    "cut": "$text-warning",
    "note": MUTED,
}


@dataclass(frozen=True, slots=True)
class _Entry:
    """One answer in a group, with the prompt's answer at its previous evaluation (None for the first)."""

    sample: Sample
    previous: str | None


def _escaped(char: str) -> str | None:
    """A visible stand-in for a character that would garble the terminal, else None."""
    if char == "\n":
        return None
    if char == "\ufffd":
        return "<?>"
    if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
        code = ord(char)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return None


def safe_text(text: str, style: str = "") -> Content:
    """`text` as Content with control, format and replacement characters shown as escapes."""
    text = text.replace("\t", "    ")
    parts: list[tuple[str, str]] = []
    start = 0
    for index, char in enumerate(text):
        stand_in = _escaped(char)
        if stand_in is not None:
            parts.append((text[start:index], style))
            parts.append((stand_in, f"{style} {ESCAPED}".strip()))
            start = index + 1
    parts.append((text[start:], style))
    return Content.assemble(*parts)


def answer_diff(previous: str, answer: str) -> tuple[Content, float]:
    """The answer with text inserted since `previous` highlighted and removed text struck, and their similarity."""
    old, new = TOKEN.findall(previous), TOKEN.findall(answer)
    matcher = SequenceMatcher(None, old, new, autojunk=False)
    ratio = matcher.ratio()
    if ratio < REWRITTEN_BELOW:
        return safe_text(answer), ratio
    parts: list[Content] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op in ("delete", "replace"):
            parts.append(safe_text("".join(old[i1:i2]), REMOVED))
        if op == "equal":
            parts.append(safe_text("".join(new[j1:j2])))
        elif op in ("insert", "replace"):
            parts.append(safe_text("".join(new[j1:j2]), INSERTED))
    return Content.assemble(*parts), ratio


def _markers(entry: _Entry, twins: int) -> list[tuple[str, str]]:
    """Short (kind, text) notes on how the answer changed; `twins` counts other prompts with the same answer."""
    answer, previous = entry.sample.answer.strip(), entry.previous
    if not entry.sample.complete:  # how long it is or what it equals says nothing of a cut answer
        return [("cut", "cut off: the log ends inside it")]
    marks: list[tuple[str, str]] = []
    if not answer:
        marks.append(("empty", "empty"))
    elif previous is not None:
        before = len(previous.strip())
        if before >= SHORTER_MIN_CHARS and len(answer) * 2 <= before:
            marks.append(("shorter", f"shorter: {before} → {len(answer)} chars"))
    if twins:
        marks.append(("identical", f"identical to {twins} other prompt{'s' if twins > 1 else ''}"))
    return marks


def _prompt_line(entry: _Entry, marks: list[tuple[str, str]], again: bool) -> Content:
    """The prompt in bold, then the markers."""
    prompt = entry.sample.prompt.strip().replace("\n", " ⏎ ")
    parts: list[Content | tuple[str, str]] = [("❯ ", "$text-accent"), safe_text(prompt, "bold")]
    if again:
        parts.append(("  (again)", MARK_STYLE["note"]))
    for kind, text in marks:
        parts.append(("  ", ""))
        parts.append((f" {text} ", f"reverse {MARK_STYLE[kind]}" if kind != "note" else MARK_STYLE[kind]))
    return Content.assemble(*parts)


def _answer_body(entry: _Entry) -> tuple[Content, list[tuple[str, str]]]:
    """The answer (diffed when there is a previous one) and any note on the kind of change."""
    answer, previous = entry.sample.answer.rstrip(), entry.previous
    if not entry.sample.complete:  # a diff would mark the missing end as removed text
        cut = Content.styled("…", f"italic {MUTED}")
        return (safe_text(answer) + cut if answer.strip() else Content.styled("(nothing yet)", f"italic {MUTED}")), []
    if not answer.strip():
        return Content.styled("(empty)", f"italic {MUTED}"), []
    if previous is None or not previous.strip():
        return safe_text(answer), []
    previous = previous.rstrip()
    if previous == answer:
        return safe_text(answer), [("note", "unchanged")]
    body, ratio = answer_diff(previous, answer)
    return body, ([("note", "rewritten")] if ratio < REWRITTEN_BELOW else [])


@functools.lru_cache(maxsize=4)
def _placeholder(width: int) -> tuple[Content, ...]:
    """What shows until the first sample arrives, wrapped to `width` (once per width: each line on screen asks)."""
    text = Content.styled(
        "No samples yet: EvaluateChatHook answers the evaluation prompts every evaluation_freq iterations.", MUTED
    )
    return (Content(""), *(Content(" ") + line for line in text.wrap(max(1, width - 2))))


class _Group:
    """The answers of one iteration: header, prompts and answers, wrapped once per width."""

    __slots__ = ("iteration", "version", "_blocks", "_wrapped")

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration
        self.version = 0  # counts rebuilds: part of the key of the group's drawn lines
        self._blocks: list[tuple[Content, int]] = []  # (text, indent)
        self._wrapped: tuple[int, list[Content]] | None = None  # (width, lines)

    def show(self, entries: list[_Entry]) -> None:
        """Rebuild the text from the iteration's entries."""
        times = [e.sample.at for e in entries if e.sample.at]
        header = Content.assemble(
            (f"iter {self.iteration}", "bold $text-primary"), (f"  {times[-1]}" if times else "", MUTED)
        )
        latest = {e.sample.prompt: e.sample.answer.strip() for e in entries if e.sample.complete}
        seen: set[str] = set()
        self._blocks = [(header, HEADER_BAR)]
        for entry in entries:
            answer = entry.sample.answer.strip()
            twins = sum(1 for p, a in latest.items() if a and a == answer and p != entry.sample.prompt)
            body, notes = _answer_body(entry)
            again = entry.sample.prompt in seen
            seen.add(entry.sample.prompt)
            self._blocks.append((_prompt_line(entry, _markers(entry, twins) + notes, again), 0))
            self._blocks.append((body, 2))
        self._wrapped = None
        self.version += 1

    def lines(self, width: int) -> list[Content]:
        """The text wrapped to `width`, answers indented under their prompt, the header as a full-width bar."""
        if self._wrapped is None or self._wrapped[0] != width:
            lines: list[Content] = []
            for text, indent in self._blocks:
                if indent == HEADER_BAR:
                    lines.extend(
                        line.pad_right(width - line.cell_length).stylize_before("on $panel")
                        for line in text.wrap(width)
                    )
                    continue
                pad = Content(" " * indent)
                lines.extend(pad + line for line in text.wrap(max(1, width - indent)))
            self._wrapped = (width, lines)
        return self._wrapped[1]


class SamplesPane(ScrollView, can_focus=True):
    """A scrollable, focusable list of the samples: newest iteration first, changes since the last evaluation marked.

    Line API: only the lines on screen are drawn, and a new evaluation changes the virtual height, not the
    layout, so a long run with hundreds of evaluations costs no more per update than a short one.
    """

    DEFAULT_CSS = """
    SamplesPane {
        height: 1fr;
        padding: 0 1;
        scrollbar-gutter: stable;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._entries: dict[int, list[_Entry]] = {}
        self._groups: dict[int, _Group] = {}
        self._iterations: list[int] = []  # ascending
        self._last_answer: dict[str, str] = {}
        self._pending: set[int] = set()  # iterations whose group needs rendering
        self._count = 0
        self._starts: list[int] = []  # first line of each group, newest first
        self._layout_width = 0
        self._strips: LRUCache[tuple[int, int, int], Strip] = LRUCache(STRIP_CACHE)  # (iteration, version, line)
        self._strip_style: VisualStyle | None = None  # the style the kept lines were drawn in

    @property
    def sample_count(self) -> int:
        """How many samples the pane holds."""
        return self._count

    def texts(self) -> dict[int, str]:
        """Each iteration's text as wrapped on screen, newest first."""
        width = self._text_width()
        return {
            it: "\n".join(line.plain for line in self._groups[it].lines(width)) for it in reversed(self._iterations)
        }

    def add_samples(self, samples: Sequence[Sample]) -> None:
        """Add samples in log order; only the iteration groups they touch are re-rendered, newest first."""
        for sample in samples:
            previous = self._last_answer.get(sample.prompt)
            if sample.complete:  # a cut answer is no baseline for the next evaluation's diff
                self._last_answer[sample.prompt] = sample.answer
            self._entries.setdefault(sample.iter, []).append(_Entry(sample, previous))
        self._count += len(samples)
        waiting = bool(self._pending)
        self._pending.update(sample.iter for sample in samples)
        if self._pending and not waiting and self.is_mounted and self.is_on_screen:
            self._render_pending()

    def on_mount(self) -> None:
        """Show the placeholder; redraw in new colours when the theme changes."""
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._relayout(redraw=True))
        self._relayout()

    def on_show(self) -> None:
        """Render what arrived before the pane was on screen (another tab showing, or not mounted yet)."""
        if self._pending:
            self._render_pending()

    def on_resize(self) -> None:
        """Wrap again for the new width."""
        if self._text_width() != self._layout_width:
            self._relayout(redraw=True)

    def _render_pending(self) -> None:
        """Render waiting groups newest first; past the time slice (or, the first time, past a screenful: a long
        history shows at once), let the screen paint and go on after."""
        deadline = time.perf_counter() + RENDER_SLICE_S
        screenful = 2 * self.size.height if not self._groups else None
        width = self._text_width()
        while self._pending:
            iteration = max(self._pending)
            self._pending.discard(iteration)
            group = self._group(iteration)
            group.show(self._entries[iteration])
            if screenful is not None:
                screenful -= len(group.lines(width)) + 1
            if self._pending and (time.perf_counter() > deadline or (screenful is not None and screenful <= 0)):
                break
        self._relayout()
        if self._pending:
            self.call_after_refresh(self._render_pending)

    def _group(self, iteration: int) -> _Group:
        """The iteration's group, created in order when new."""
        group = self._groups.get(iteration)
        if group is None:
            group = self._groups[iteration] = _Group(iteration)
            bisect.insort(self._iterations, iteration)
        return group

    def _text_width(self) -> int:
        """The width the text wraps to (the scrollbar's gutter is kept, so it never changes with the height)."""
        return max(1, self.scrollable_content_region.width)

    def _relayout(self, redraw: bool = False) -> None:
        """Recount the lines after groups changed, keep the text the reader is looking at in place, repaint
        (`redraw`: the width or the colours changed, so no drawn line can be reused)."""
        width = self._text_width()
        self._layout_width = width
        old_total = self.virtual_size.height
        self._starts, total = [], 0
        for iteration in reversed(self._iterations):
            self._starts.append(total)
            total += len(self._groups[iteration].lines(width)) + 1  # a blank line after each group
        if not self._iterations:
            total = len(_placeholder(width))
        if redraw or not self._iterations:
            self._strips.clear()
        scroll_y = self.scroll_y
        resize_virtual(self, Size(width, total))
        if scroll_y and total > old_total:  # reading older answers: new ones arrive above, keep the view still
            self.scroll_to(y=scroll_y + total - old_total, animate=False, immediate=True)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        """Line `y` of the view: a group's line, the blank after a group, or the placeholder."""
        index = self.scroll_offset.y + y
        width, style = self._layout_width, self.visual_style
        if style is not self._strip_style:  # focus, hover or theme changed the widget's colours
            self._strips.clear()
            self._strip_style = style
        key = (-1, 0, index)
        if self._iterations:
            position = bisect.bisect_right(self._starts, index) - 1
            group = self._groups[self._iterations[-1 - position]]
            key = (group.iteration, group.version, index - self._starts[position])
        strip = self._strips.get(key)
        if strip is None:
            lines = _placeholder(width) if key[0] == -1 else self._groups[key[0]].lines(width)
            line = lines[key[2]] if 0 <= key[2] < len(lines) else Content("")
            strip = Visual.to_strips(self, line, width, 1, style, pad=True)[0]
            self._strips[key] = strip
        return strip

    def clear(self) -> None:
        """Remove every sample."""
        self._entries.clear()
        self._groups.clear()
        self._iterations.clear()
        self._last_answer.clear()
        self._pending.clear()
        self._count = 0
        self._relayout()
