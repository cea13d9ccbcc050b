"""LogParser: mmengine log text (a work-dir log or xtui's console file), fed in any chunks, into events."""

from __future__ import annotations

import codecs
import contextlib
import re
from typing import TYPE_CHECKING

from engine.runs.events import (
    CheckpointSaved,
    DataloaderAdvance,
    Event,
    Resumed,
    Sample,
    TrainStep,
    TrainSteps,
    Validation,
)
from engine.runs.logparse.columns import StepColumns
from engine.runs.logparse.failures import NCCL_TIMEOUT, TRACEBACK, TracebackReader, process_error, run_error
from engine.runs.logparse.lines import MAX_LINE, LineSplitter
from engine.runs.logparse.samples import SampleText
from engine.runs.logparse.setup import ConfigDump, HookTable, TrainPlan
from engine.runs.logparse.steps import HEAD_ONLY, LINE, STEP, EpochClock, fast_step, generic_step, key_values

if TYPE_CHECKING:
    import numpy as np

    from engine.runs.logparse.bulk import TrainLineScanner

_MESSAGE = re.compile(
    r"(?P<sample>Sample output:)"
    r"|Saving checkpoint at (?P<saved>\d{1,18}) (?P<saved_unit>iterations|epochs)"
    r"|resumed epoch: (?P<resumed_epoch>\d{1,18}), iter: (?P<resumed>\d{1,18})"
    r"|(?:Load checkpoint from|Auto resumed from the latest checkpoint) (?P<load>.+)"
    r"|Advance dataloader (?P<advance>\d{1,18}) steps"
    r"|(?P<hook>before_train|after_train_iter|after_train) in EvaluateChatHook"
    r"|(?P<config>Config:)$"
    r"|(?P<hooks>Hooks will be executed in the following order:)$"
    r"|(?:Epoch\(val\) *\[(?P<val_epoch>\d{1,18})\]|Iter\(val\) )\[ *(?P<val_i>\d{1,18})/(?P<val_n>\d{1,18})\]"
)
# Per-rank prefixes: torch.distributed's `[rank1]:` on tracebacks, torchrun --tee's `[default1]:`, or both; the last counts.
_RANK = re.compile(r"(?:\[(?:default|rank)(\d{1,6})\]: ?)+")
# Lines of other loggers: glog (torchrun, c10: `E1128 14:05:00.12 ...`, `[E ProcessGroupNCCL.cpp:458] `), DeepSpeed.
_OTHER_RECORD = re.compile(
    r"\[?[IWEF](?:\d{3,4} \d\d:\d\d:\d\d\.\d+ | \S+\.cpp:\d+\] )|\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\] \[[A-Z]+\] "
    r"|(?:ERROR|WARNING|INFO):torch\."
)
_PLAIN_STARTS = frozenset("T[E")  # a line without a timestamp is looked at when it may start a traceback or an error
_RECORD_STARTS = frozenset("T[IWEF")  # a line may be a traceback, a rank's or another logger's, when it starts so
_NOT_METRICS = frozenset(("eta", "memory"))
_FEW_LINES = 64


def _runs(starts: np.ndarray, ends: np.ndarray) -> tuple[list[int], list[int], list[int], list[int]]:
    """(first, last) rows and (start, stop) bytes of each run of consecutive train lines, one list apiece."""
    import numpy as np  # only here when bulk reading is on

    breaks = np.flatnonzero(starts[1:] != ends[:-1] + 1) + 1
    firsts = np.concatenate(([0], breaks))
    lasts = np.concatenate((breaks, [len(starts)]))
    return firsts.tolist(), lasts.tolist(), starts[firsts].tolist(), (ends[lasts - 1] + 1).tolist()


class LogParser:
    """Stateful parser of mmengine log text (console or work-dir file), fed in arbitrary chunks.

    `feed` takes text and gives one TrainStep per train line; `feed_bytes` takes the raw bytes (use one or the
    other) and gives the train steps as TrainSteps batches, the usual lines read in bulk into columns.
    """

    def __init__(self) -> None:
        self._lines = LineSplitter(carriage_returns=True)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # for feed_bytes
        self._carry = b""  # feed_bytes: the unfinished last line, while short
        self._long = False  # feed_bytes: the unfinished line went to `feed` (it is long): the rest of it goes too
        self._scanner: TrainLineScanner | None = None
        self.few_lines = _FEW_LINES  # feed_bytes reads fewer complete lines than this line by line
        self._logged: int | None = None  # the iteration of the newest train step since the last (re)start
        self._logged_max: int | None = None  # and its max_iters
        self._mark = 0  # the newest iteration known from a save or a resume
        self._saved = -1  # the iteration of the newest save
        self._resume_iter = 0
        self._checkpoint: str | None = None
        self._block: SampleText | ConfigDump | HookTable | None = None  # the multi-line record open
        self._block_rank: int | None = None
        self._sample_iter: int | None = None  # where a hook marker placed the samples that follow
        self._evaluated = -1  # the iteration of the newest after_train_iter evaluation placed
        self._holding = False  # samples wait for the iteration they were made at (EvaluateChatHook before LoggerHook)
        self._held: list[tuple[str, str, str, bool]] = []
        self._failures = TracebackReader()
        self._nccl_ranks: set[int | None] = set()  # ranks whose NCCL timeout was reported (the watchdog repeats it)
        self._clock = EpochClock()
        self._plan = TrainPlan()

    def feed(self, text: str) -> list[Event]:
        """Events of every line completed by `text`; a trailing partial line waits for the next feed."""
        lines = self._lines.feed(text)
        return self._parse(lines) if lines else []

    def feed_bytes(self, data: bytes) -> list[Event]:
        """Events of every line completed by `data` (UTF-8 bytes), train steps in TrainSteps batches."""
        out: list[Event] = []
        if self._long:
            end = data.find(b"\n") + 1
            self._slow(data[:end] if end else data, out)
            if not end:
                return out
            data, self._long = data[end:], False
        end = data.rfind(b"\n") + 1
        if end:  # the carried line and the complete lines of `data`, copied once at most
            block = data if not self._carry and end == len(data) else self._carry + memoryview(data)[:end]
            self._carry = b""
            self._bulk(block, out)
        rest = data[end:] if end else self._carry + data
        if len(rest) > MAX_LINE:  # the event parser bounds it
            self._slow(rest, out)
            self._long = True
        else:
            self._carry = rest
        return out

    def _bulk(self, block: bytes, out: list[Event]) -> None:
        """Events of complete lines: the usual train lines in bulk, the text between them through `feed`."""
        few = self.few_lines
        if few and block.count(b"\n", 0, few * 256) < few and block.count(b"\n") < few:
            self._slow(block, out)  # a live poll's line or two: numpy's fixed cost would exceed the regex's
            return
        if self._scanner is None:
            from engine.runs.logparse.bulk import TrainLineScanner  # numpy, on first use

            self._scanner = TrainLineScanner()
        starts, ends, steps = self._scanner.scan(block)
        if not len(steps):
            self._slow(block, out)
            return
        firsts, lasts, begins, stops = _runs(starts, ends)
        at = 0
        for first, last, begin, stop in zip(firsts, lasts, begins, stops):
            if begin > at:
                self._slow(block[at:begin], out)
            self._bulk_steps(steps, first, last, out)
            at = stop
        if at < len(block):
            self._slow(block[at:], out)

    def _bulk_steps(self, steps: StepColumns, first: int, last: int, out: list[Event]) -> None:
        """Consecutive train lines read in bulk: what the first one closes, then the batch."""
        if self._block is not None:
            self._close(out)
        if self._failures.waiting:
            self._failures.end(None, out)
        if self._holding:
            self._release(steps.iters[first], out)
        self._logged, self._logged_max = steps.iteration(last - 1)
        self._sample_iter = None
        out.append(TrainSteps(steps, first, last))

    def _slow(self, data: bytes, out: list[Event]) -> None:
        """Events of bytes read line by line; its train steps go into a batch of their own."""
        batch: StepColumns | None = None
        for event in self.feed(self._decoder.decode(data)):
            if isinstance(event, TrainStep):
                if batch is None:
                    batch = StepColumns()
                    out.append(TrainSteps(batch))
                batch.append(event)
            else:
                batch = None
                out.append(event)

    def flush(self) -> list[Event]:
        """Events still open at the end of the text: the pending line, a sample (incomplete), a traceback."""
        if self._carry:
            out: list[Event] = []
            carry, self._carry = self._carry, b""
            self._slow(carry, out)
            return out + self.flush()
        out = self._parse(self._lines.flush())
        if self._block is not None:
            self._close(out, ended=False)
        if self._holding:
            self._release(self._now(), out)
        self._failures.flush(out)
        return out

    def _parse(self, lines: list[str]) -> list[Event]:
        """Events of complete lines."""
        out: list[Event] = []
        match = LINE.match
        failures = self._failures
        for line in lines:
            m = match(line)
            if m is None:
                if " - " in line and (head := HEAD_ONLY.search(line)) is not None:  # garbage or a rank before it
                    m = match(line, head.start())
                else:
                    block = self._block
                    starts = _PLAIN_STARTS if block is None else _RECORD_STARTS
                    if failures.open or line[:1] in starts or NCCL_TIMEOUT in line:
                        self._plain(line, out)
                    elif block is not None and self._block_rank is None:
                        block.add(line)  # the usual line of a sample's (or the config's) text
                    continue
            if self._block is not None:
                self._close(out)
            if failures.waiting:
                failures.end(None, out)
            step = None
            if m.lastindex != 2:  # the usual train line matched
                try:
                    step = fast_step(m.groups(), self._clock)
                except ValueError:  # a value that is no number: the generic path skips just that one
                    m = HEAD_ONLY.match(line, m.start())
            if step is None:
                s = STEP.match(line, m.end())
                if s is None:
                    self._message(line, m, out)
                    continue
                step = generic_step(line, s, m.group(1), self._clock)
            if self._holding:  # samples waiting for this step
                self._release(step.iter, out)
            self._logged, self._logged_max = step.iter, step.max_iters
            self._sample_iter = None
            out.append(step)
        return out

    def _now(self) -> int:
        """The newest iteration known: the last train step, save or resume."""
        return max(self._logged or 0, self._mark)

    def _max_iters(self) -> int | None:
        """The run's last iteration, when known."""
        return self._logged_max or self._clock.max_iters()

    def _next_evaluation(self) -> int:
        """The iteration of an after_train_iter evaluation that follows the LoggerHook (XTuner >= 0.1.14).

        It runs every every_n_iters, at each checkpoint saved by iteration and at the last iteration; the
        newest logged one is the earliest it can be, unless an evaluation or a save came after it.
        """
        plan = self._plan
        if plan.every_n_iters is None:
            return self._now()
        logged = self._logged if self._logged is not None else self._mark + 1
        floor = max(logged, self._evaluated + 1, self._saved + 1)
        candidates = [-(-floor // n) * n for n in (plan.every_n_iters, plan.save_every) if n]
        last = self._max_iters()
        if last is not None and last >= floor:
            candidates.append(last)
        return min(candidates)

    def _release(self, iteration: int, out: list[Event]) -> None:
        """The held samples, now that the iteration they were made at is known."""
        out.extend(Sample(iteration, prompt, answer, at, complete) for prompt, answer, at, complete in self._held)
        self._held.clear()
        self._holding = False

    def _close(self, out: list[Event], ended: bool = True) -> None:
        """End the open block: emit (or hold) a sample, or take in a config dump or hook table."""
        block, self._block = self._block, None
        if isinstance(block, SampleText):
            prompt, answer, complete = block.parts(ended)
            if self._holding:
                self._held.append((prompt, answer, block.at, complete))
            else:
                iteration = self._now() if self._sample_iter is None else self._sample_iter
                out.append(Sample(iteration, prompt, answer, block.at, complete))
        elif block is not None:
            block.apply(self._plan)
            self._clock.max_epochs = self._plan.max_epochs

    def _open(self, block: SampleText | ConfigDump | HookTable, rank: int | None) -> None:
        """A record whose text goes on over the next lines."""
        self._block, self._block_rank = block, rank

    def _message(self, line: str, m: re.Match[str], out: list[Event]) -> None:
        """Handle a timestamped line that is not a train step (a rank prefix may stand before its timestamp)."""
        prefix = _RANK.search(line, 0, m.start()) if m.start() else None
        rank = int(prefix.group(1)) if prefix else None
        at = m.group(1)
        found = _MESSAGE.match(line, m.end())
        if found is None:
            if m.group(2) == "ERROR":  # `- ERROR - path - function - lineno - message`
                parts = line[m.end() :].split(" - ", 3)
                message = parts[3] if len(parts) == 4 and parts[2].isdigit() else line[m.end() :]
                out.append(run_error([], message, at, rank))
            return
        kind = found.lastgroup
        if kind == "sample":
            self._failures.drop(rank)  # a traceback that never got its last line
            self._open(SampleText(line[found.end() :].strip(), at, rank), rank)
        elif kind == "saved_unit":
            self._checkpoint_saved(int(found["saved"]), found["saved_unit"] == "epochs", at, out)
        elif kind == "resumed":
            epoch, iteration = int(found["resumed_epoch"]), int(found["resumed"])
            self._clock.resumed(epoch, iteration)
            self._logged = self._logged_max = None
            self._mark, self._resume_iter, self._saved, self._evaluated = iteration, iteration, -1, -1
            out.append(Resumed(iteration, self._checkpoint, at, epoch))
        elif kind == "load":
            self._checkpoint = found["load"].strip().removesuffix(".")
        elif kind == "advance":
            out.append(DataloaderAdvance(int(found["advance"]), at))
        elif kind == "hook":
            self._evaluation(found["hook"], out)
        elif kind == "config":
            self._open(ConfigDump(), rank)
        elif kind == "hooks":
            self._open(HookTable(), rank)
        elif kind == "val_n":
            self._validation(line, found, at, out)

    def _checkpoint_saved(self, number: int, epochs: bool, at: str, out: list[Event]) -> None:
        """`Saving checkpoint at N iterations` (or `N epochs`): samples held until now were made at it."""
        epoch = None
        iteration = number
        if epochs:  # the iterations per epoch come from `[e][i/n]` lines, else from max_iters / max_epochs
            epoch = number
            last, max_epochs = self._logged_max, self._plan.max_epochs
            per_epoch = last // max_epochs if max_epochs and last else None
            iteration = self._clock.end_of(number, per_epoch) or self._now()
        if self._holding:
            self._release(iteration, out)
        self._mark = max(self._mark, iteration)  # the final iteration is often saved but not logged
        self._saved = iteration
        self._sample_iter = None
        out.append(CheckpointSaved(iteration, at, epoch))

    def _evaluation(self, hook: str, out: list[Event]) -> None:
        """EvaluateChatHook's `<stage> in EvaluateChatHook.`: place the samples that follow."""
        if hook == "before_train":  # samples of the iteration training starts (or resumes) from
            self._sample_iter, self._resume_iter = self._resume_iter, 0
        elif hook == "after_train":  # the final evaluation, at the last iteration
            if self._holding:
                self._release(self._now(), out)
            self._sample_iter = self._max_iters() or self._now()
        elif self._plan.eval_before_logger:  # XTuner <= 0.1.13: the iteration is logged after its samples
            self._holding = True
        else:
            self._sample_iter = self._evaluated = self._next_evaluation()

    def _validation(self, line: str, found: re.Match[str], at: str, out: list[Event]) -> None:
        """A val loop's line: its summary (`[n/n]` with metrics, no eta) is a Validation."""
        if found["val_i"] != found["val_n"]:
            return
        values = key_values(line, found.end())
        if "eta" in values:
            return
        metrics = {}
        for key, value in values.items():
            if key not in _NOT_METRICS:
                with contextlib.suppress(ValueError):
                    metrics[key] = float(value)
        if not metrics.keys() - {"time", "data_time"}:
            return
        epoch = int(found["val_epoch"]) if found["val_epoch"] else None
        iteration = (self._clock.end_of(epoch) if epoch is not None else None) or self._now()
        out.append(Validation(iteration, metrics, epoch, at))

    def _plain(self, line: str, out: list[Event]) -> None:
        """Handle a line without a timestamp that may be a record: a traceback's, a rank's, another logger's."""
        rank = None
        if line[:1] == "[" and (prefix := _RANK.match(line)) is not None:
            rank = int(prefix.group(1))
            line = line[prefix.end() :]
        failures = self._failures
        if line.startswith(TRACEBACK):
            if isinstance(self._block, SampleText) and self._block_rank == rank:
                self._close(out)
            failures.start(line, rank, out)
        elif _OTHER_RECORD.match(line) is not None or NCCL_TIMEOUT in line:
            if self._block is not None and self._block_rank == rank:
                self._close(out)
            failures.end(rank, out)
            error = process_error(line, rank)
            if error is not None and not (error.cause == "nccl_timeout" and error.rank in self._nccl_ranks):
                if error.cause == "nccl_timeout":
                    self._nccl_ranks.add(error.rank)
                out.append(error)
        elif failures.reading(rank):
            failures.add(line, rank, out)
        elif self._block is not None and self._block_rank == rank:
            self._block.add(line)
