"""Which folders are XTuner work dirs, and where their logs are; cheap to import (the TUI checks before its first frame)."""

from __future__ import annotations

import re
from pathlib import Path

MANIFEST = "xtui-run.json"  # xtui's manifest in a work dir (engine.runs.manifest reads and writes it)
_TS_DIR = re.compile(r"^\d{8}_\d{6}$")
_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", "vis_data"}


def log_files(work_dir: Path) -> list[Path]:
    """The mmengine log of every start of the run, oldest first."""
    try:
        folders = sorted(p for p in work_dir.iterdir() if _TS_DIR.match(p.name) and p.is_dir())
    except OSError:
        return []
    return [f / f"{f.name}.log" for f in folders if (f / f"{f.name}.log").exists()]


def is_run_dir(path: Path) -> bool:
    """True for a work dir xtui launched (node 0's part, or another node's: xtui-run.nodeN.json) or one that holds an
    mmengine log folder."""
    return (path / MANIFEST).exists() or bool(log_files(path)) or any(path.glob("xtui-run.node*.json"))


def discover(roots: list[Path], depth: int = 3) -> list[Path]:
    """Work dirs under `roots` (each root itself included), at most `depth` levels down."""
    found: list[Path] = []

    def walk(path: Path, level: int) -> None:
        if is_run_dir(path):
            found.append(path)
            return
        if level >= depth:
            return
        try:
            children = sorted(p for p in path.iterdir() if p.is_dir())
        except OSError:
            return
        for child in children:
            if child.name not in _SKIP_DIRS and not child.name.startswith("."):
                walk(child, level + 1)

    for root in roots:
        walk(root.resolve(), 0)
    return found
