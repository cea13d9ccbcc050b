"""One evaluation prompt's answers from several runs, side by side: each run's answer nearest a chosen iteration."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Static

from engine.runs.events import Sample
from tui.widgets.compared import ComparedRun, no_data, run_colour
from tui.widgets.samples_pane import MUTED, safe_text

MIN_COLUMN = 30  # narrower than this, the answers stack one under the other


def nearest(samples: Sequence[Sample], prompt: str, iteration: int) -> Sample | None:
    """The run's answer to `prompt` nearest to `iteration` (the earlier of two as near; at one iteration the last)."""
    return min(
        (s for s in reversed(samples) if s.prompt == prompt),
        key=lambda s: (abs(s.iter - iteration), s.iter),
        default=None,
    )


def shared_prompts(runs: Sequence[ComparedRun]) -> list[tuple[str, int]]:
    """Every prompt of the runs with how many runs have it, those most runs share first (then as they came)."""
    counts: dict[str, int] = {}
    for run in runs:
        for prompt in dict.fromkeys(s.prompt for s in run.samples):
            counts[prompt] = counts.get(prompt, 0) + 1
    return sorted(counts.items(), key=lambda item: -item[1])  # stable: ties keep their first appearance


class CompareSamples(Vertical, can_focus=True):
    """A column (or, narrow, a block) per run under a line naming the prompt and iteration; `p` picks the prompt,
    ←/→ the iteration among those the runs evaluated it at."""

    BINDINGS = [
        Binding("p", "prompt(1)", "Prompt"),
        Binding("P", "prompt(-1)", "Previous prompt", show=False),
        Binding("left", "iteration(-1)", "Earlier"),
        Binding("right", "iteration(1)", "Later"),
        Binding("home", "iteration(-1_000_000)", "First evaluation", show=False),
        Binding("end", "iteration(1_000_000)", "Last evaluation", show=False),
        Binding("up", "scroll('up')", "Scroll up", show=False),
        Binding("down", "scroll('down')", "Scroll down", show=False),
        Binding("pageup", "scroll('page_up')", "Page up", show=False),
        Binding("pagedown", "scroll('page_down')", "Page down", show=False),
    ]
    DEFAULT_CSS = """
    CompareSamples {
        height: 1fr;
        & > #compare-samples-head { height: auto; max-height: 3; padding: 0 1; }
        &:focus > #compare-samples-head { background: $primary-muted; }
        & > VerticalScroll { height: 1fr; }
        #compare-answer-row { height: auto; layout: horizontal; }
        #compare-answer-row.stacked { layout: vertical; }
        .compare-answer { width: 1fr; height: auto; padding: 0 1; margin-bottom: 1; }
        #compare-answer-row > .compare-answer { border-left: vkey $panel-lighten-2; }
        #compare-answer-row.stacked > .compare-answer, #compare-answer-row > .compare-answer:first-child {
            border-left: none;
        }
        .compare-answer-title { text-style: bold; }
    }
    """

    def __init__(self, names: Sequence[str], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.names = list(names)
        self._runs: list[ComparedRun] = []
        self.prompt: str | None = None
        self.iteration: int | None = None  # None: the latest evaluation, also as new ones come
        self._drawn: tuple | None = None

    def compose(self) -> ComposeResult:
        """The head line over the runs' answers."""
        yield Static(id="compare-samples-head", markup=False)
        scroll = VerticalScroll()
        scroll.can_focus = False  # its keys are this widget's
        with scroll, Container(id="compare-answer-row"):
            for index in range(len(self.names)):
                with Vertical(classes="compare-answer", id=f"compare-answer-{index}"):
                    yield Static(classes="compare-answer-title", markup=False)
                    yield Static(classes="compare-answer-text", markup=False)

    def on_mount(self) -> None:
        """Draw the empty state."""
        self._draw()

    def on_resize(self) -> None:
        """Columns when each run gets MIN_COLUMN cells, else one answer under the other."""
        stacked = self.size.width < MIN_COLUMN * max(1, len(self.names))
        self.query_one("#compare-answer-row").set_class(stacked, "stacked")

    def show(self, runs: Sequence[ComparedRun]) -> None:
        """The runs as read now (the same runs, in the same order, each time); redrawn when what shows changed."""
        self._runs = list(runs)
        self._draw()

    @property
    def prompts(self) -> list[str]:
        """The prompts to choose from, those most runs share first."""
        return [prompt for prompt, _ in shared_prompts(self._runs)]

    @property
    def iterations(self) -> list[int]:
        """The iterations any run answered the chosen prompt at."""
        return sorted({s.iter for run in self._runs for s in run.samples if s.prompt == self.prompt})

    def action_prompt(self, step: int) -> None:
        """The next (or previous) prompt."""
        prompts = self.prompts
        if prompts:
            index = prompts.index(self.prompt) + step if self.prompt in prompts else 0
            self.prompt = prompts[index % len(prompts)]
            self._draw()

    def action_iteration(self, step: int) -> None:
        """An earlier or later evaluation; past the last one the view follows the newest again."""
        its = self.iterations
        if not its:
            return
        now = its.index(self.iteration) if self.iteration in its else len(its) - 1
        index = max(0, min(len(its) - 1, now + step))
        self.iteration = None if index == len(its) - 1 else its[index]
        self._draw()

    def action_scroll(self, how: str) -> None:
        """Scroll the answers."""
        getattr(self.query_one(VerticalScroll), f"scroll_{how}")()

    def _draw(self) -> None:
        """The head and each run's answer, when any changed."""
        counts = dict(shared_prompts(self._runs))
        if self.prompt not in counts:
            self.prompt = next(iter(counts), None)
        its = self.iterations
        if self.iteration not in its:
            self.iteration = None
        at = self.iteration if self.iteration is not None else (its[-1] if its else None)
        picked = [nearest(run.samples, self.prompt, at) if at is not None else None for run in self._runs]
        drawn = (self.prompt, at, tuple(map(id, picked)), tuple((r.state, len(r.samples)) for r in self._runs))
        if drawn == self._drawn:
            return
        self._drawn = drawn
        self.query_one("#compare-samples-head", Static).update(self._head(counts, its, at))
        for index, name in enumerate(self.names):
            run = self._runs[index] if index < len(self._runs) else None
            column = self.query_one(f"#compare-answer-{index}")
            title, text = column.query(Static)
            sample = picked[index] if run else None
            title.update(self._title(index, name, sample, at))
            text.update(self._answer(run, sample))

    def _head(self, counts: dict[str, int], its: list[int], at: int | None) -> Content:
        """'prompt 1/2 (3 of 3 runs): …' and 'iteration 20 (3/5)'."""
        if self.prompt is None:
            return Content.styled("No evaluation samples in these runs yet.", MUTED)
        prompts = list(counts)
        prompt = self.prompt.strip().replace("\n", " ⏎ ")
        where = "latest" if self.iteration is None else str(its.index(at) + 1)
        return Content.assemble(
            ("prompt ", MUTED),
            (f"{prompts.index(self.prompt) + 1}/{len(prompts)}", "bold"),
            (f" ({counts[self.prompt]} of {len(self._runs)} runs) ", MUTED),
            safe_text(prompt, "bold $text-accent"),
            ("\niteration ", MUTED),
            (str(at), "bold"),
            (f" ({where} of {len(its)} evaluations)", MUTED),
        )

    @staticmethod
    def _title(index: int, name: str, sample: Sample | None, at: int | None) -> Content:
        """'■ name  iter 20': the run, in its colour, and the iteration its answer is from."""
        parts: list[str | tuple[str, str]] = [("■ ", f"${run_colour(index)}"), name]
        if sample is not None:
            parts.append(("  iter ", MUTED))
            parts.append(str(sample.iter))
            if sample.iter != at:
                parts.append((" (nearest)", MUTED))
        return Content.assemble(*parts)

    def _answer(self, run: ComparedRun | None, sample: Sample | None) -> Content:
        """The answer, or why there is none: the run has no samples, or none of this prompt."""
        if run is None or not run.samples:
            return Content.styled(no_data(run) if run else "no data", f"italic {MUTED}")
        if sample is None:
            return Content.styled("no sample of this prompt", f"italic {MUTED}")
        answer = sample.answer.strip()
        body = safe_text(answer) if answer else Content.styled("(empty)", f"italic {MUTED}")
        if not sample.complete:
            body += Content.styled(" … cut off: the log ends inside it", f"italic {MUTED}")
        return body
