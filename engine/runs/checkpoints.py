"""Checkpoints of a run: `iter_N.pth` files or DeepSpeed folders, checked without loading tensors."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_ITER_RE = re.compile(r"^iter_(\d+)\.pth$")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One `iter_N.pth`; `problem` is None when it looks complete."""

    path: Path
    iter: int
    deepspeed: bool
    size: int
    latest: bool = False  # named by `last_checkpoint`
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """True when the checkpoint passed the structural check."""
        return self.problem is None

    def to_json(self) -> dict:
        """Plain dict for the CLI."""
        return {
            "path": str(self.path),
            "iter": self.iter,
            "deepspeed": self.deepspeed,
            "size": self.size,
            "latest": self.latest,
            "problem": self.problem,
        }


def torch_zip_problem(path: Path) -> str | None:
    """Why a `torch.save` file is unusable (truncated, not a zip, no pickle), or None."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
        size = path.stat().st_size
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return f"not a complete torch file ({exc})"
    if not any(i.filename.endswith("/data.pkl") or i.filename == "data.pkl" for i in infos):
        return "torch file without data.pkl"
    end = max((i.header_offset + i.compress_size for i in infos), default=0)
    if end > size:
        return "truncated: tensor data runs past the end of the file"
    return None


def _deepspeed_problem(folder: Path) -> str | None:
    """Why a DeepSpeed checkpoint folder is unusable, or None."""
    states = sorted(folder.rglob("*model_states.pt"))
    if not states:
        return "DeepSpeed folder without *model_states.pt"
    for state in [*states, *sorted(folder.rglob("*optim_states.pt"))]:
        problem = torch_zip_problem(state)
        if problem:
            return f"{state.relative_to(folder)}: {problem}"
    return None


def check(path: Path) -> str | None:
    """Structural check of one checkpoint path (file or DeepSpeed folder)."""
    if not path.exists():
        return "missing"
    if path.is_dir():
        return _deepspeed_problem(path)
    return torch_zip_problem(path)


def last_checkpoint(work_dir: Path) -> tuple[Path | None, str | None]:
    """The path `last_checkpoint` names and why it is stale (None when fine or absent)."""
    marker = work_dir / "last_checkpoint"
    try:
        text = marker.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None, None
    if not text:
        return None, "last_checkpoint is empty"
    named = Path(text)
    if not named.is_absolute():
        named = work_dir / named
    if not named.exists():
        # a work dir that was moved still has its checkpoints beside the marker
        if (work_dir / named.name).exists():
            return work_dir / named.name, None
        return named, f"last_checkpoint names {text}, which does not exist"
    return named, None


def list_checkpoints(work_dir: Path, previous: Sequence[Checkpoint] = ()) -> list[Checkpoint]:
    """Every `iter_N.pth` in the work dir, oldest first, checked and with the latest marked.

    One found in `previous` at the same size keeps that check (reading a zip's directory costs milliseconds).
    One that vanishes while being looked at (mmengine deleting the oldest past max_keep_ckpts) is left out.
    """
    latest, _ = last_checkpoint(work_dir)
    known = {(c.path, c.size): c.problem for c in previous}
    found = []
    try:
        entries = list(work_dir.iterdir())
    except OSError:
        return []
    for entry in entries:
        match = _ITER_RE.match(entry.name)
        if not match:
            continue
        is_dir = entry.is_dir()
        try:
            size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file()) if is_dir else entry.stat().st_size
        except OSError:
            continue
        found.append(
            Checkpoint(
                path=entry,
                iter=int(match.group(1)),
                deepspeed=is_dir,
                size=size,
                latest=latest is not None and latest.name == entry.name,
                problem=known[entry, size] if (entry, size) in known else check(entry),
            )
        )
    return sorted(found, key=lambda c: c.iter)


def latest_good(checkpoints: Sequence[Checkpoint]) -> Checkpoint | None:
    """The checkpoint to resume or chat from: the one `last_checkpoint` names when it is sound, else the newest sound one."""
    good = [c for c in checkpoints if c.ok]
    return next((c for c in good if c.latest), good[-1] if good else None)
