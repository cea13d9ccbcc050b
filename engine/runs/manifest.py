"""The manifest xtui keeps in a work dir: every launch, its process and how it ended."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.files import write_atomic

MANIFEST = "xtui-run.json"
CONSOLE = "xtui-console.log"


@dataclass(frozen=True, slots=True)
class Launch:
    """One start or resume of a run, as xtui started it."""

    argv: list[str]
    env: dict[str, str]
    pid: int  # session leader; also the process group id
    create_time: float  # guards against pid reuse
    started_at: float
    console_offset: int  # where this launch's output starts in the console file
    config: str
    cwd: str
    gpus: int = 1
    deepspeed: str | None = None
    resume_from: str | None = None
    stopped_at: float | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    """What xtui knows about a work dir beyond the files XTuner writes."""

    work_dir: str
    host: str
    launches: list[Launch] = field(default_factory=list)

    @property
    def last(self) -> Launch | None:
        """The most recent launch, if any."""
        return self.launches[-1] if self.launches else None


def read_manifest(work_dir: Path) -> Manifest | None:
    """The manifest of a work dir, or None when absent or unreadable."""
    try:
        data = json.loads((work_dir / MANIFEST).read_text(encoding="utf-8"))
        launches = [Launch(**item) for item in data.get("launches", [])]
        return Manifest(work_dir=data["work_dir"], host=data["host"], launches=launches)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def write_manifest(work_dir: Path, manifest: Manifest) -> None:
    """Write the manifest atomically (temp file + rename) so a reader never sees half."""
    write_atomic(work_dir / MANIFEST, json.dumps(asdict(manifest), indent=2, ensure_ascii=False))
