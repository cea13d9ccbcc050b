"""Why a run failed, read off its text: Python tracebacks (per rank), torchrun's and NCCL's own error lines."""

from __future__ import annotations

import re
from collections import deque

from engine.runs.events import RunError

TRACEBACK = "Traceback (most recent call last):"
_MAX_TRACEBACK_LINES = 50
_MAX_MESSAGE_LINES = 20
# The last line of a traceback: `torch.OutOfMemoryError: ...`, or a bare `KeyboardInterrupt`.
_EXCEPTION = re.compile(r"[A-Za-z_][\w.]*(?::|(?:Error|Exception|Interrupt|Exit)$)")
_ANSI_CODES = re.compile(r"\x1b\[[0-9;]*m")
# A rank named in the text: NCCL's `[Rank 3]` / `[PG 0 (default_pg) Rank 3]`, torchrun's `rank : 3 (local_rank: 3)`.
_RANK_IN_TEXT = re.compile(r"\[(?:PG [^\]]{0,80} )?Rank (\d{1,6})\]|^\s*rank\s*: (\d{1,6})", re.M)
# torchrun's `E1128 14:05:00.123000 1234 .../api.py:869] failed (exitcode: 1) local_rank: 3 (pid: 5678) of binary`.
_RANK_FAILED = re.compile(r"failed \(exitcode: (-?\d{1,6})\) local_rank: (\d{1,6})")
# c10's glog header: `[E321 02:07:08.408271257 ProcessGroupNCCL.cpp:607] ` (older torch: `[E ProcessGroupNCCL.cpp:458] `).
_GLOG_ERROR = re.compile(r"\[E(?:\d{3,4} \d\d:\d\d:\d\d\.\d+|) ?\S+\.cpp:\d+\] ")
NCCL_TIMEOUT = "Watchdog caught collective operation timeout"


def _rank_in(text: str) -> int | None:
    """The rank the text names, if any (in torchrun's failure table, the root cause's)."""
    m = _RANK_IN_TEXT.search(text, max(text.find("Root Cause"), 0))
    return None if m is None else int(m.group(1) or m.group(2))


def run_error(lines: deque[str] | list[str], message: str, at: str | None = None, rank: int | None = None) -> RunError:
    """A RunError whose cause is read off the text: CUDA OOM, torch's weights-only trap, an NCCL timeout, or plain."""
    detail = "\n".join(lines)
    text = f"{detail}\n{message}"
    if "CUDA out of memory" in text or "OutOfMemoryError" in text:
        cause = "cuda_oom"
    elif "Weights only load failed" in text:
        cause = "weights_only"
    elif "collective operation timeout" in text:
        cause = "nccl_timeout"
    else:
        cause = "traceback" if lines else "error"
    message = _ANSI_CODES.sub("", message).strip()
    return RunError(cause, message, _ANSI_CODES.sub("", detail), at, rank if rank is not None else _rank_in(text))


def process_error(line: str, rank: int | None) -> RunError | None:
    """The error that a line of torchrun, or of NCCL's watchdog (also glued to a progress bar), reports, else None."""
    failed = _RANK_FAILED.search(line)
    if failed is not None:
        code, local = failed.groups()
        return RunError("rank_failed", f"rank {local} failed with exit code {code}", line, None, int(local))
    glog = _GLOG_ERROR.search(line) if NCCL_TIMEOUT in line else None
    if glog is not None:
        message = line[glog.end() :].strip()
        rank = rank if rank is not None else _rank_in(message)
        return RunError("nccl_timeout", message, line[glog.start() :], None, rank)
    return None


class _Traceback:
    """One traceback being read: its lines, then, after an exception line with no message, the message's lines."""

    def __init__(self, first: str) -> None:
        self.lines: deque[str] = deque((first,), maxlen=_MAX_TRACEBACK_LINES)
        self.message: list[str] | None = None  # `ImportError:` said nothing yet: its explanation follows


class TracebackReader:
    """The tracebacks of each rank (prefix `[rankN]:`; None for a single process) turned into RunErrors."""

    def __init__(self) -> None:
        self.open: dict[int | None, _Traceback] = {}  # by rank
        self.waiting = False  # an exception line awaits its message's lines (checked on every log record)

    def reading(self, rank: int | None) -> bool:
        """True while a traceback of `rank` is open."""
        return rank in self.open

    def start(self, line: str, rank: int | None, out: list) -> None:
        """A `Traceback (most recent call last):` line (one still open for the rank ends first)."""
        self.end(rank, out)
        self.open[rank] = _Traceback(line)

    def add(self, line: str, rank: int | None, out: list) -> None:
        """A further line of the rank's open traceback: a frame, the exception line, or its message."""
        tb = self.open[rank]
        if tb.message is not None:
            if line.strip() and len(tb.message) < _MAX_MESSAGE_LINES:
                tb.message.append(line)
            else:
                self.end(rank, out)
            return
        tb.lines.append(line)
        if line[:1] not in " \t" and _EXCEPTION.match(line):
            if line.rstrip().endswith(":"):  # `ImportError:` with its explanation on the next lines
                tb.message = [line]
                self.waiting = True
            else:
                self._take(rank)
                out.append(run_error(tb.lines, line, rank=rank))

    def end(self, rank: int | None, out: list) -> None:
        """The rank's output moved on (a log record, a new traceback): an exception awaiting its message is done."""
        tb = self.open.get(rank)
        if tb is not None and tb.message is not None:
            self._take(rank)
            head, *rest = tb.message
            message = " ".join([head.rstrip(), *(r.strip() for r in rest if not _rule(r))])
            out.append(run_error(tb.lines, message, rank=rank if rank is not None else _rank_in("\n".join(rest))))

    def drop(self, rank: int | None) -> None:
        """Forget the rank's open traceback (a sample began: it never got its last line)."""
        if rank in self.open:
            self._take(rank)

    def flush(self, out: list) -> None:
        """Every open traceback as an error, at the end of the text."""
        for rank in list(self.open):
            if self.open[rank].message is not None:
                self.end(rank, out)
            else:
                tb = self._take(rank)
                last = next((x for x in reversed(tb.lines) if x.strip()), TRACEBACK)
                out.append(run_error(tb.lines, last, rank=rank))

    def _take(self, rank: int | None) -> _Traceback:
        """The rank's traceback, no longer open."""
        tb = self.open.pop(rank)
        self.waiting = any(t.message is not None for t in self.open.values())
        return tb


def _rule(line: str) -> bool:
    """True for a line of only `=` or `-` (torchrun's ChildFailedError table)."""
    stripped = line.strip()
    return bool(stripped) and not stripped.strip("=-")
