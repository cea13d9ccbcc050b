"""Checkpoints of a run: `iter_N.pth` / `epoch_N.pth` files or DeepSpeed folders, checked without loading tensors.

A check reads only regular files (never blocking on a FIFO, never a device) and streams the zip members of a
`torch.save` file to compare their CRC-32: a structurally valid zip whose pickle or tensor bytes were overwritten
is caught. Past a budget of bytes per checkpoint only data.pkl and the small members are streamed.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.files import NotRegularFile, open_regular, read_head

_NAME = re.compile(r"^(iter|epoch)_(\d{1,18})\.pth$")
_CRC_BUDGET = 1 << 28  # bytes of tensor data streamed per checkpoint; beyond it only data.pkl and small members
_SMALL_MEMBER = 1 << 20
_READ = 1 << 20
_MARKER_LIMIT = 1 << 16  # bytes of `last_checkpoint` read


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One `iter_N.pth` or `epoch_N.pth`; `problem` is None when it looks complete."""

    path: Path
    # the global iteration it was saved at; None for an epoch_N.pth while the iterations per epoch are unknown
    iter: int | None
    deepspeed: bool
    size: int
    latest: bool = False  # named by `last_checkpoint`
    problem: str | None = None
    epoch: int | None = None  # N of epoch_N.pth
    unverified: str | None = None  # what the check did not read (tensor bytes past the budget), None when all of it
    mtime_ns: int = 0  # with `size`, what tells a rewritten checkpoint from the one already checked

    @property
    def ok(self) -> bool:
        """True when the checkpoint passed the check."""
        return self.problem is None

    def to_json(self) -> dict:
        """Plain dict for the CLI."""
        return {
            "path": str(self.path),
            "iter": self.iter,
            "epoch": self.epoch,
            "deepspeed": self.deepspeed,
            "size": self.size,
            "latest": self.latest,
            "problem": self.problem,
            "unverified": self.unverified,
        }


@dataclass(slots=True)
class _Budget:
    """Bytes of tensor data a check may still stream, and what it left unread."""

    left: int
    skipped_members: int = 0
    skipped_bytes: int = 0

    def note(self) -> str | None:
        """What was not verified, in words, or None."""
        if not self.skipped_members:
            return None
        return (
            f"CRC-32 not checked for {self.skipped_members} tensor member(s), {self.skipped_bytes / 2**20:.0f} MiB "
            f"(data.pkl, small members and {_CRC_BUDGET >> 20} MiB of tensors are streamed)"
        )


def _stream(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Read one member to its end: zipfile compares its CRC-32 there (BadZipFile when it differs)."""
    with zf.open(info) as member:
        while member.read(_READ):
            pass


def _torch_zip_problem(path: Path, budget: _Budget) -> str | None:
    """Why a `torch.save` file is unusable (not a regular file, truncated, not a zip, no pickle, bad CRC), or None."""
    try:
        with open_regular(path) as fh, zipfile.ZipFile(fh) as zf:
            size = fh.seek(0, 2)
            infos = zf.infolist()
            pickles = [i for i in infos if i.filename.endswith("/data.pkl") or i.filename == "data.pkl"]
            if not pickles:
                return "torch file without data.pkl"
            if max(i.header_offset + i.compress_size for i in infos) > size:
                return "truncated: tensor data runs past the end of the file"
            for info in sorted(infos, key=lambda i: (i not in pickles, i.file_size)):
                small = info in pickles or info.file_size <= _SMALL_MEMBER
                if not small and info.file_size > budget.left:
                    budget.skipped_members += 1
                    budget.skipped_bytes += info.file_size
                    continue
                if not small:
                    budget.left -= info.file_size
                try:
                    _stream(zf, info)
                except (zipfile.BadZipFile, EOFError) as exc:
                    return f"{info.filename} is damaged ({exc})"
    except NotRegularFile as exc:
        return str(exc)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return f"not a complete torch file ({exc})"
    return None


def _deepspeed_problem(folder: Path, budget: _Budget) -> str | None:
    """Why a DeepSpeed checkpoint folder is unusable, or None."""
    states = sorted(folder.rglob("*model_states.pt"))
    if not states:
        return "DeepSpeed folder without *model_states.pt"
    for state in [*states, *sorted(folder.rglob("*optim_states.pt"))]:
        problem = _torch_zip_problem(state, budget)
        if problem:
            return f"{state.relative_to(folder)}: {problem}"
    return None


def _verify(path: Path) -> tuple[str | None, str | None]:
    """(problem, what was not verified) of one checkpoint path (file or DeepSpeed folder)."""
    budget = _Budget(left=_CRC_BUDGET)
    if not path.exists():
        return "missing", None
    problem = _deepspeed_problem(path, budget) if path.is_dir() else _torch_zip_problem(path, budget)
    return problem, budget.note()


def check(path: Path) -> str | None:
    """The problem of one checkpoint path (file or DeepSpeed folder), None when it passed."""
    return _verify(path)[0]


def last_checkpoint(work_dir: Path) -> tuple[Path | None, str | None]:
    """The path `last_checkpoint` names and why it is stale (None when fine or absent)."""
    marker = work_dir / "last_checkpoint"
    try:
        text = read_head(marker, _MARKER_LIMIT).decode("utf-8", errors="replace").strip()
    except NotRegularFile as exc:
        return None, str(exc)
    except OSError:
        return None, None
    if not text:
        return None, "last_checkpoint is empty"
    named = Path(text)
    if not named.is_absolute():
        named = work_dir / named
    try:
        if named.exists():
            return named, None
        if (work_dir / named.name).exists():  # a work dir that was moved still has its checkpoints beside the marker
            return work_dir / named.name, None
    except (OSError, ValueError):  # a name too long for the file system, or with a NUL in it
        return None, f"last_checkpoint names {text[:60]!r}, which cannot be a file"
    return named, f"last_checkpoint names {text}, which does not exist"


def _size_and_mtime(entry: Path) -> tuple[int, int]:
    """Bytes of a checkpoint (a DeepSpeed folder: of its regular files) and the newest modification time in ns."""
    if not entry.is_dir():
        st = entry.stat()
        return st.st_size, st.st_mtime_ns
    stats = [f.stat() for f in entry.rglob("*") if f.is_file()]
    return sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)


def list_checkpoints(
    work_dir: Path, previous: Sequence[Checkpoint] = (), epoch_iters: Mapping[int, int] | None = None
) -> list[Checkpoint]:  # fmt: skip
    """Every `iter_N.pth` and `epoch_N.pth` in the work dir, oldest first, checked and with the latest marked.

    One found in `previous` at the same size and modification time keeps that check. One that vanishes while
    being looked at (mmengine deleting the oldest past max_keep_ckpts) is left out. `epoch_iters` maps an epoch to
    the iteration it was saved at (the log's CheckpointSaved events with `epoch`), for `epoch_N.pth`.
    """
    latest, _ = last_checkpoint(work_dir)
    known = {(c.path, c.size, c.mtime_ns): (c.problem, c.unverified) for c in previous}
    found = []
    try:
        entries = list(work_dir.iterdir())
    except OSError:
        return []
    for entry in entries:
        match = _NAME.match(entry.name)
        if not match:
            continue
        try:
            size, mtime_ns = _size_and_mtime(entry)
        except OSError:
            continue
        number = int(match.group(2))
        epoch = number if match.group(1) == "epoch" else None
        iteration = number if epoch is None else (epoch_iters or {}).get(epoch)
        problem, unverified = known.get((entry, size, mtime_ns)) or _verify(entry)
        found.append(Checkpoint(
            path=entry, iter=iteration, deepspeed=entry.is_dir(), size=size,
            latest=latest is not None and latest.name == entry.name, problem=problem, epoch=epoch,
            unverified=unverified, mtime_ns=mtime_ns,
        ))  # fmt: skip
    return sorted(found, key=lambda c: (c.iter is None, c.iter or 0, c.epoch or 0))


def latest_good(checkpoints: Sequence[Checkpoint]) -> Checkpoint | None:
    """The checkpoint to resume or chat from: the one `last_checkpoint` names when it is sound, else the newest sound one."""
    good = [c for c in checkpoints if c.ok]
    return next((c for c in good if c.latest), good[-1] if good else None)
