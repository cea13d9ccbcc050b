"""Train-step lines of mmengine's LoggerHook: `Iter(train) [5/40]  lr: ...` or `Epoch(train) [3][380/381]  lr: ...`."""

from __future__ import annotations

import contextlib
import re

from engine.runs.events import TrainStep

_ANSI = r"(?:\x1b\[[0-9;]*m)*"
# `11/28 13:52:00 - mmengine - INFO - ` on the console, `2026/11/28 ...` in the work dir; tty levels are coloured.
HEAD = rf"((?:\d{{4}}/)?\d\d/\d\d \d\d:\d\d:\d\d) - \S+ - {_ANSI}([A-Z]+){_ANSI} - "
# The usual xtuner train line in mmengine's key order, read in one match; anything else takes the generic path.
_FAST_STEP = (
    r"(?:Iter\(train\) |Epoch\(train\) *\[(\d{1,18})\])\[ *(\d{1,18})/(\d{1,18})\]  lr: (\S+)  "
    r"(?:eta: (?:(\d{1,9}) days?, )?(\d\d?):(\d\d):(\d\d)  time: (\S+)  data_time: (\S+)  )?"
    r"(?:memory: (\d+)  )?(?:grad_norm: (\S+)  )?loss: (\S+)(?:  tflops: (\S+)  tokens_per_sec: (\S+))?"
    r"(?:  grad_norm: (\S+))?$"
)
LINE = re.compile(rf"{HEAD}(?:{_FAST_STEP})?")
HEAD_ONLY = re.compile(HEAD)
STEP = re.compile(r"(?:Iter\(train\) |Epoch\(train\) *\[ *(\d{1,18})\])\[ *(\d{1,18})/(\d{1,18})\]")
# `key: value` pairs; a key starts the line or follows a space, so a line of N letters costs O(N), not O(N^2).
_KV = re.compile(r"(?<![^ ])([A-Za-z_][\w./-]*): (\d+ days?, [\d:]+|\S+)")
FLOAT_KEYS = frozenset(("lr", "loss", "grad_norm", "time", "data_time", "memory", "tokens_per_sec", "tflops"))


def eta_seconds(text: str) -> float | None:
    """Seconds of a `str(timedelta)` such as `0:00:29` or `1 day, 2:03:04`, None if it is not one."""
    days = 0
    if "," in text:
        head, _, text = text.partition(",")
        try:
            days = int(head.split()[0])
        except (ValueError, IndexError):
            return None
    parts = text.split(":")
    if len(parts) != 3:
        return None
    try:
        return days * 86400 + int(parts[0]) * 3600 + int(parts[1]) * 60 + float(parts[2])
    except ValueError:
        return None


def key_values(line: str, start: int) -> dict[str, str]:
    """The `key: value` pairs of a line from `start` on, as written."""
    return dict(_KV.findall(line, start))


class EpochClock:
    """Turns an epoch-based loop's `[epoch][i/n]` into global iterations, from the start or from a resume point."""

    def __init__(self) -> None:
        self.per_epoch: int | None = None  # n of `[e][i/n]`: the train dataloader's length
        self.max_epochs: int | None = None  # from the config dump
        self._epoch0 = 0  # epochs done at the resume point
        self._iter0 = 0  # iterations done at the resume point

    def resumed(self, epoch: int, iteration: int) -> None:
        """mmengine resumed with `epoch` epochs and `iteration` iterations done."""
        self._epoch0, self._iter0 = epoch, iteration

    def at(self, epoch: int, i: int, n: int) -> int:
        """The global iteration of the i-th of n iterations of `epoch` (1-based, as logged)."""
        self.per_epoch = n
        return self._iter0 + (epoch - self._epoch0 - 1) * n + i

    def end_of(self, epoch: int, per_epoch: int | None = None) -> int | None:
        """The global iteration at which `epoch` ends, None while the iterations per epoch are unknown."""
        n = self.per_epoch or per_epoch
        return None if not n else self._iter0 + (epoch - self._epoch0) * n

    def max_iters(self) -> int | None:
        """The global iteration the run ends at, when both max_epochs and the epoch length are known."""
        return None if self.max_epochs is None else self.end_of(self.max_epochs)


def fast_step(groups: tuple, clock: EpochClock) -> TrainStep:
    """A TrainStep from the groups of a line that matched the usual layout (the hot path)."""
    at, _, epoch, it, total, lr, days, hours, minutes, secs, time, data_time, memory, grad0, loss, tflops, tps, grad = (
        groups
    )
    eta = None if hours is None else float(
        ((int(days) * 24 if days else 0) + int(hours)) * 3600 + int(minutes) * 60 + int(secs)
    )  # fmt: skip
    grad = grad or grad0
    if epoch is None:
        return TrainStep(
            int(it), int(total), float(lr), float(loss), grad and float(grad), time and float(time),
            data_time and float(data_time), memory and float(memory), eta, tps and float(tps),
            tflops and float(tflops), {}, at,
        )  # fmt: skip
    return TrainStep(
        clock.at(int(epoch), int(it), int(total)), clock.max_iters(), float(lr), float(loss), grad and float(grad),
        time and float(time), data_time and float(data_time), memory and float(memory), eta, tps and float(tps),
        tflops and float(tflops), {}, at, int(epoch),
    )  # fmt: skip


def generic_step(line: str, s: re.Match[str], at: str, clock: EpochClock) -> TrainStep:
    """A TrainStep from any `Iter(train) [ 5/40]  k: v ...` (or `Epoch(train) [1][5/40]`) line, keys in any order."""
    epoch, it, total = s.groups()
    fields: dict[str, float] = {}
    extra: dict[str, float] = {}
    for key, value in _KV.findall(line, s.end()):
        if key == "eta":
            eta = eta_seconds(value)
            if eta is not None:
                fields["eta"] = eta
            continue
        with contextlib.suppress(ValueError):
            (fields if key in FLOAT_KEYS else extra)[key] = float(value)
    if epoch is None:
        return TrainStep(int(it), int(total), extra=extra, at=at, **fields)
    place = clock.at(int(epoch), int(it), int(total))
    return TrainStep(place, clock.max_iters(), extra=extra, at=at, epoch=int(epoch), **fields)
