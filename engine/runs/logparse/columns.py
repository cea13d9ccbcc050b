"""StepColumns: train steps held as typed arrays (one per field), not one object per logged iteration."""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, overload

from engine.runs.events import TrainStep

if TYPE_CHECKING:
    import numpy as np

FLOATS = ("lr", "loss", "grad_norm", "time", "data_time", "memory", "eta", "tokens_per_sec", "tflops")
INTS = ("max_iters", "epoch")  # optional whole numbers; `iter` is always there
_OPTIONAL = (*INTS, *FLOATS)
BIT = {name: 1 << n for n, name in enumerate(_OPTIONAL)}
_FLOAT_BITS = tuple((name, BIT[name]) for name in FLOATS)  # in TrainStep's field order
_MAX_ITERS, _EPOCH = BIT["max_iters"], BIT["epoch"]
_INT64 = (-(1 << 63), (1 << 63) - 1)
AT_WIDTH = 19  # `2026/11/28 14:00:52`; the console's `11/28 14:00:52` is 14


class StepColumns(Sequence[TrainStep]):
    """A growing table of train steps: `iter`, the optional numbers and a presence bit per field and row.

    A row the arrays cannot hold exactly (an `extra` dict, a number past int64, a timestamp that is not short
    ASCII) keeps its TrainStep as well; indexing gives back TrainSteps equal to those put in.
    """

    def __init__(self) -> None:
        self.iters = array("q")
        self.ints = {name: array("q") for name in INTS}
        self.floats = {name: array("d") for name in FLOATS}
        self.present = array("H")  # bit n: field _OPTIONAL[n] is set
        self.at = bytearray()  # AT_WIDTH bytes a row
        self.at_len = array("B")  # 0: no timestamp
        self.odd: dict[int, TrainStep] = {}  # rows kept whole

    def __len__(self) -> int:
        return len(self.iters)

    @overload
    def __getitem__(self, index: int) -> TrainStep: ...
    @overload
    def __getitem__(self, index: slice) -> list[TrainStep]: ...
    def __getitem__(self, index: int | slice) -> TrainStep | list[TrainStep]:
        if isinstance(index, slice):
            return [self._row(i) for i in range(*index.indices(len(self)))]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("step index out of range")
        return self._row(index)

    def __iter__(self) -> Iterator[TrainStep]:
        return map(self._row, range(len(self)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(other) == len(self) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StepColumns({len(self)} steps)"

    def iteration(self, row: int) -> tuple[int, int | None]:
        """(iteration, max_iters) of a row, without building its TrainStep."""
        odd = self.odd.get(row)
        if odd is not None:
            return odd.iter, odd.max_iters
        return self.iters[row], self.ints["max_iters"][row] if self.present[row] & BIT["max_iters"] else None

    def _row(self, i: int) -> TrainStep:
        """The TrainStep of row `i`."""
        odd = self.odd.get(i)
        if odd is not None:
            return odd
        bits, floats, ints = self.present[i], self.floats, self.ints
        size = self.at_len[i]
        return TrainStep(
            self.iters[i],
            ints["max_iters"][i] if bits & _MAX_ITERS else None,
            *[floats[name][i] if bits & bit else None for name, bit in _FLOAT_BITS],
            {},
            self.at[i * AT_WIDTH : i * AT_WIDTH + size].decode("ascii") if size else None,
            ints["epoch"][i] if bits & _EPOCH else None,
        )

    def append(self, step: TrainStep) -> None:
        """Add one step at the end."""
        row = len(self)
        bits = 0
        exact = not step.extra
        self.iters.append(_clamp(step.iter))
        exact = exact and self.iters[-1] == step.iter
        for name in INTS:
            value = getattr(step, name)
            column = self.ints[name]
            if value is None:
                column.append(0)
            else:
                bits |= BIT[name]
                column.append(_clamp(value))
                exact = exact and column[-1] == value
        floats = self.floats
        for name, bit in _FLOAT_BITS:
            value = getattr(step, name)
            if value is None:
                floats[name].append(0.0)
            else:
                bits |= bit
                floats[name].append(value)
        self.present.append(bits)
        at = step.at
        raw = at.encode("utf-8") if at else b""
        if len(raw) > AT_WIDTH or len(raw) != len(at or "") or at == "":
            raw, exact = b"", False
        self.at += raw.ljust(AT_WIDTH, b" ")
        self.at_len.append(len(raw))
        if not exact:
            self.odd[row] = step

    def extend(self, other: StepColumns, start: int = 0, stop: int | None = None) -> None:
        """Add rows `start:stop` of `other` at the end."""
        base = len(self)
        stop = len(other) if stop is None else stop
        self.iters += other.iters[start:stop]
        for name in INTS:
            self.ints[name] += other.ints[name][start:stop]
        for name in FLOATS:
            self.floats[name] += other.floats[name][start:stop]
        self.present += other.present[start:stop]
        self.at += other.at[start * AT_WIDTH : stop * AT_WIDTH]
        self.at_len += other.at_len[start:stop]
        self.odd.update((base + i - start, step) for i, step in other.odd.items() if start <= i < stop)

    def at_text(self, i: int) -> str | None:
        """The timestamp of row `i`, as written."""
        odd = self.odd.get(i)
        if odd is not None:
            return odd.at
        size = self.at_len[i]
        return self.at[i * AT_WIDTH : i * AT_WIDTH + size].decode("ascii") if size else None

    def truncate(self, size: int) -> None:
        """Keep only the first `size` rows."""
        del self.iters[size:], self.present[size:], self.at_len[size:], self.at[size * AT_WIDTH :]
        for column in (*self.ints.values(), *self.floats.values()):
            del column[size:]
        self.odd = {i: s for i, s in self.odd.items() if i < size}

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Iterations and values of field `name` (numpy arrays, no copies) for the rows that have it."""
        import numpy as np  # the arrays are what a plot takes

        iters = np.frombuffer(self.iters, np.int64) if self.iters else np.zeros(0, np.int64)
        column = self.floats[name] if name in self.floats else self.ints[name]
        values = np.frombuffer(column, column.typecode) if column else np.zeros(0, column.typecode)
        has = (np.frombuffer(self.present, np.uint16) & BIT[name]) != 0 if self.present else np.zeros(0, bool)
        return (iters, values) if has.all() else (iters[has], values[has])

    def curve(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """`series` in iteration order, as the curves show it: a step at or before one logged earlier starts a new
        branch (a resume from an older checkpoint), and the earlier steps from its iteration on are dropped."""
        import numpy as np

        iters = np.frombuffer(self.iters, np.int64) if self.iters else np.zeros(0, np.int64)
        later = np.minimum.accumulate(iters[::-1])[::-1]  # the least iteration from each row on
        kept = np.ones(len(iters), bool)
        kept[:-1] = iters[:-1] < later[1:]
        xs, ys = self.series(name)
        has = (np.frombuffer(self.present, np.uint16) & BIT[name]) != 0 if self.present else np.zeros(0, bool)
        return xs[kept[has]], ys[kept[has]]


def _clamp(value: int) -> int:
    """`value` within int64 (a row whose number is past it keeps its TrainStep)."""
    return min(max(value, _INT64[0]), _INT64[1])
