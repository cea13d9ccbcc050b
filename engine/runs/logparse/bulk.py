"""The columnar fast path: the usual `Iter(train)` lines of a block of log bytes read with numpy, all at once.

A line is taken only when it has, byte for byte, the shape of a line the event parser's regex already read as a
train step: the same length and the same bytes everywhere but in the digits of its timestamp and numbers. No
test of that regex tells one digit from another, so it reads such a line the same way; the numbers are built from
their digits exactly (at most 15 significant digits and a power of ten up to 22: one correctly rounded multiply
or divide, which is what `float()` gives). Every other line is left to the event parser.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterator

import numpy as np

from engine.runs.logparse.columns import AT_WIDTH, BIT, FLOATS, StepColumns
from engine.runs.logparse.lines import MAX_LINE
from engine.runs.logparse.steps import HEAD_ONLY, LINE

MARKER = b"Iter(train) ["
_TAIL = int.from_bytes(MARKER[-8:], "little")  # the marker's last 8 bytes as a little-endian word
_SHAPES_PER_LENGTH = 8
_LEARN_PER_BLOCK = 16
_POW10 = np.array([10.0**k for k in range(23)])
_FLOAT = re.compile(r"[+-]?(\d*)(?:\.(\d*))?(?:[eE]([+-]?)(\d{1,3}))?")
# groups of LINE: 1 timestamp, 4 iteration, 5 max_iters, 7-10 eta's days, hours, minutes, seconds, 13 memory,
# and the floats; a key read twice (grad_norm) takes its later value, as fast_step does
_FLOAT_GROUPS = ((6, "lr"), (11, "time"), (12, "data_time"), (14, "grad_norm"), (15, "loss"), (16, "tflops"),
                 (17, "tokens_per_sec"), (18, "grad_norm"))  # fmt: skip


class _Shape:
    """One train line's layout: its fixed bytes, and the digit cells whose numbers make the step's values."""

    def __init__(self, line: bytes) -> None:
        text = line.decode("ascii")
        text = text[:-1] if text.endswith("\r") else text  # the event parser's lines end before a CR
        m = LINE.match(text)
        if m is None and " - " in text and (head := HEAD_ONLY.search(text)) is not None:
            m = LINE.match(text, head.start())
        if m is None or m.lastindex == 2 or m.group(3) is not None or "\r" in text:
            raise ValueError("not a usual Iter(train) line")
        self.length = len(line)
        self.head = HEAD_ONLY.match(text, m.start()).end() + len(MARKER)  # the marker ends here
        self.at = (m.start(1), m.end(1) - m.start(1))
        numbers: list[list[int]] = [[i for i in range(*m.span(1)) if text[i].isdigit()]]  # not a number: no weight
        self.ints = [len(numbers), len(numbers) + 1]  # iteration, max_iters
        numbers += [list(range(*m.span(4))), list(range(*m.span(5)))]
        if max(len(numbers[1]), len(numbers[2])) > 15:
            raise ValueError("an iteration past 15 digits")
        self.eta = None
        if m.group(8) is not None:
            self.eta = len(numbers)
            numbers += [list(range(*m.span(g))) if m.group(g) else [] for g in (7, 8, 9, 10)]
        self.floats: dict[str, tuple[int, int, int, bool, bool]] = {}  # key -> mantissa, exponent, scale, signs
        if m.group(13) is not None:
            self.floats["memory"] = (len(numbers), -1, 0, False, False)
            numbers.append(list(range(*m.span(13))))
            if len(numbers[-1]) > 15:
                raise ValueError("memory past 15 digits")
        for group, key in _FLOAT_GROUPS:
            if m.group(group) is not None:
                self.floats[key] = self._float(text, m.start(group), m.group(group), numbers)
        digits = sorted(c for cells in numbers for c in cells)
        literal = [c for c in range(self.length) if c not in set(digits)]
        value_cells = [c for cells in numbers[1:] for c in cells]  # by number, each number's cells in order
        self.value_cells = np.array(value_cells, dtype=np.intp)
        firsts, self.column = [], []  # where each number's cells begin in value_cells; its index in the sums
        at = 0
        for cells in numbers:
            self.column.append(len(firsts) if cells and cells is not numbers[0] else -1)
            if cells and cells is not numbers[0]:
                firsts.append(at)
                at += len(cells)
        self.spans = list(zip(firsts, [*firsts[1:], len(value_cells)]))
        words = -(-self.length // 8)
        self.words = words
        padded = bytearray(line.ljust(8 * words, b"\0"))
        self.base = np.frombuffer(bytes(padded), np.uint8).copy()  # a cell's byte less this is at most `limit`
        self.limit = np.full(8 * words, 255, np.uint8)  # past the line: any byte
        self.limit[literal] = 0
        self.base[digits], self.limit[digits] = 48, 9

    @staticmethod
    def _float(text: str, start: int, value: str, numbers: list[list[int]]) -> tuple[int, int, int, bool, bool]:
        """Where a float value's digits go: (mantissa number, exponent number, digits after the point, signs)."""
        m = _FLOAT.fullmatch(value)
        if m is None:
            raise ValueError(f"no plain decimal: {value!r}")
        whole = range(start + m.start(1), start + m.end(1))
        frac = range(start + m.start(2), start + m.end(2)) if m.group(2) is not None else range(0)
        if not 0 < len(whole) + len(frac) <= 15:
            raise ValueError(f"not 1-15 digits: {value!r}")
        mantissa = len(numbers)
        numbers.append([*whole, *frac])
        exponent = -1
        if m.group(4) is not None:
            exponent = len(numbers)
            numbers.append(list(range(start + m.start(4), start + m.end(4))))
        return mantissa, exponent, len(frac), value.startswith("-"), m.group(3) == "-"

    def match(self, cells: np.ndarray) -> np.ndarray:
        """Rows (n x 8 words of bytes) that have this shape: the literal bytes, and digits where digits go."""
        off = cells - self.base  # modulo 256
        return ~np.greater(off, self.limit).view(np.uint64).any(axis=1)

    def read(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """(iterations, max_iters, floats by key, exact) of matching rows (n x bytes)."""
        digits = np.ascontiguousarray(cells.T[self.value_cells])  # digit cell x row
        digits -= 48
        sums = []
        for a, b in self.spans:  # Horner's rule in int64, a number's digits at a time (a matmul runs BLAS threads)
            whole = digits[a].astype(np.int64)
            for digit in digits[a + 1 : b]:
                whole *= 10
                whole += digit
            sums.append(whole.astype(np.float64))
        zero = np.zeros(len(cells))
        n = [sums[c] if c >= 0 else zero for c in self.column]  # by number
        exact = np.ones(len(cells), bool)
        fields = {}
        if self.eta is not None:
            days, hours, minutes, secs = n[self.eta : self.eta + 4]
            fields["eta"] = (days * 24 + hours) * 3600 + minutes * 60 + secs
        for key, (mantissa, exponent, scale, negative, exp_negative) in self.floats.items():
            if exponent >= 0:
                power = (-n[exponent] if exp_negative else n[exponent]) - scale
                exact &= np.abs(power) <= 22  # else float() rounds a product this cannot form in one step
                index = np.minimum(np.abs(power), 22).astype(np.intp)
                value = np.where(power >= 0, n[mantissa] * _POW10[index], n[mantissa] / _POW10[index])
            else:
                value = n[mantissa] / _POW10[scale]
            fields[key] = -value if negative else value
        return n[self.ints[0]].astype(np.int64), n[self.ints[1]].astype(np.int64), fields, exact


class TrainLineScanner:
    """Finds the usual train lines of blocks of complete lines and reads them into columns."""

    def __init__(self) -> None:
        self._shapes: dict[int, list[_Shape]] = {}  # by line length, newest first

    def scan(self, block: bytes) -> tuple[np.ndarray, np.ndarray, StepColumns]:
        """(starts, ends, steps) of the train lines taken from `block` (complete lines), in order; `ends` at the `\\n`."""
        size = len(block)
        padded = np.zeros(size + 16, np.uint8)  # a word read never runs off the end
        padded[:size] = np.frombuffer(block, np.uint8)
        words = np.ndarray((size + 9,), "<u8", padded, strides=(1,))  # the 8 bytes from each offset
        ends = np.flatnonzero(padded[:size] == 10)
        starts = np.empty_like(ends)
        starts[:1] = 0
        starts[1:] = ends[:-1] + 1
        lengths = ends - starts
        out = _Out(len(ends))
        heads = {shape.head for shapes in self._shapes.values() for shape in shapes}
        candidates = np.zeros(len(ends), bool)
        for head in heads:
            candidates |= (lengths >= head) & (words[np.minimum(starts + head - 8, size)] == _TAIL)
        for length in np.unique(lengths[candidates]).tolist():
            if length in self._shapes:
                self._take(self._shapes[length], np.flatnonzero(candidates & (lengths == length)), block, starts, out)
        untaken = self._untaken(block, starts, ends, out) if block.count(MARKER) > out.taken else iter(())
        for line in untaken:
            if lengths[line] > MAX_LINE or out.learned == _LEARN_PER_BLOCK:
                break
            out.learned += 1
            try:
                shape = _Shape(block[starts[line] : ends[line]])
            except (ValueError, UnicodeDecodeError):
                continue
            shapes = self._shapes.setdefault(shape.length, [])
            shapes.insert(0, shape)
            del shapes[_SHAPES_PER_LENGTH:]
            rows = np.flatnonzero(~out.taken_rows & (lengths == shape.length))
            self._take([shape], rows, block, starts, out)
        rows = np.flatnonzero(out.taken_rows)
        return starts[rows], ends[rows], out.columns(rows)

    @staticmethod
    def _untaken(block: bytes, starts: np.ndarray, ends: np.ndarray, out: _Out) -> Iterator[int]:
        """The lines holding the marker that no shape took, in order."""
        for line in np.flatnonzero(~out.taken_rows).tolist():
            if not out.taken_rows[line] and block.find(MARKER, starts[line], ends[line]) >= 0:
                yield line

    @staticmethod
    def _take(shapes: list[_Shape], rows: np.ndarray, block: bytes, starts: np.ndarray, out: _Out) -> None:
        """Read the lines `rows` (in order, all of the shapes' length) that one of `shapes` fits."""
        if not len(rows):
            return
        cells = _matrix(block, rows, starts, shapes[0].length, shapes[0].words)
        left = np.arange(len(rows))  # the rows of `cells` no shape took yet
        for shape in shapes:
            rest = cells if len(left) == len(rows) else cells[left]
            hit = shape.match(rest)
            if not hit.any():
                continue
            mine = rest if hit.all() else rest[hit]
            its, totals, fields, exact = shape.read(mine)
            if not exact.all():
                hit[hit] = exact
                mine, its, totals = mine[exact], its[exact], totals[exact]
                fields = {k: v[exact] for k, v in fields.items()}
            taken = rows[left[hit]]
            out.add(taken, its, totals, fields)
            out.at[taken, : shape.at[1]] = mine[:, shape.at[0] : shape.at[0] + shape.at[1]]
            out.at_len[taken] = shape.at[1]
            left = left[~hit]
            if not len(left):
                return


def _matrix(block: bytes, rows: np.ndarray, starts: np.ndarray, length: int, words: int) -> np.ndarray:
    """The lines `rows` (in order, each `length` bytes and a newline) as an n x 8 `words` byte matrix, zero past
    each line's end: a run of consecutive lines is one slice of the block, so the copy is one join."""
    cut = np.flatnonzero(np.diff(rows) != 1) + 1
    firsts = starts[rows[np.r_[0, cut]]].tolist()
    lasts = (starts[rows[np.r_[cut - 1, len(rows) - 1]]] + length + 1).tolist()
    view = memoryview(block)
    joined = np.frombuffer(b"".join([view[a:b] for a, b in zip(firsts, lasts)]), np.uint8)
    matrix = np.zeros((len(rows), 8 * words), np.uint8)
    matrix[:, :length] = joined.reshape(len(rows), length + 1)[:, :length]
    return matrix


class _Out:
    """The block's lines taken so far and their numbers."""

    def __init__(self, lines: int) -> None:
        self.taken_rows = np.zeros(lines, bool)
        self.taken = 0
        self.learned = 0  # shapes learned from this block's lines
        self.iters = np.zeros(lines, np.int64)
        self.max_iters = np.zeros(lines, np.int64)
        self.floats = {name: np.zeros(lines) for name in FLOATS}
        self.present = np.zeros(lines, np.uint16)
        self.at = np.full((lines, AT_WIDTH), 32, np.uint8)
        self.at_len = np.zeros(lines, np.uint8)

    def add(self, rows: np.ndarray, its: np.ndarray, totals: np.ndarray, fields: dict[str, np.ndarray]) -> None:
        """Steps read at lines `rows`."""
        self.taken_rows[rows] = True
        self.taken += len(rows)
        self.iters[rows] = its
        self.max_iters[rows] = totals
        bits = BIT["max_iters"]
        for key, values in fields.items():
            self.floats[key][rows] = values
            bits |= BIT[key]
        self.present[rows] = bits

    def columns(self, rows: np.ndarray) -> StepColumns:
        """StepColumns of the lines `rows`, in line order."""
        cols = StepColumns()
        cols.iters = array("q", self.iters[rows].tobytes())
        cols.ints["max_iters"] = array("q", self.max_iters[rows].tobytes())
        cols.ints["epoch"] = array("q", bytes(8 * len(rows)))
        for name in FLOATS:
            cols.floats[name] = array("d", self.floats[name][rows].tobytes())
        cols.present = array("H", self.present[rows].tobytes())
        cols.at = bytearray(self.at[rows].tobytes())
        cols.at_len = array("B", self.at_len[rows].tobytes())
        return cols
