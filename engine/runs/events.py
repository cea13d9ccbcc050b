"""Typed events read off an XTuner run: what the log and vis_data say happened."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event; `type` names it in JSON lines."""

    type = "event"

    def to_json(self) -> dict:
        """Plain dict for `xtui events`: the fields plus `type`."""
        return {"type": self.type, **asdict(self)}


@dataclass(frozen=True, slots=True)
class TrainStep(Event):
    """One logged training iteration with every numeric field the log line had."""

    type = "train_step"
    iter: int
    max_iters: int | None = None
    lr: float | None = None
    loss: float | None = None
    grad_norm: float | None = None
    time: float | None = None
    data_time: float | None = None
    memory: float | None = None
    eta: float | None = None  # seconds
    tokens_per_sec: float | None = None
    tflops: float | None = None
    extra: dict[str, float] = field(default_factory=dict)
    at: str | None = None  # log timestamp as written
    epoch: int | None = None  # set by epoch-based loops; `iter` is then the global iteration


@dataclass(frozen=True, slots=True)
class Sample(Event):
    """An EvaluateChatHook answer: the prompt and what the model said at `iter`."""

    type = "sample"
    iter: int
    prompt: str
    answer: str
    at: str | None = None
    complete: bool = True  # False: the text was cut off (the log ended inside it)


@dataclass(frozen=True, slots=True)
class CheckpointSaved(Event):
    """mmengine's 'Saving checkpoint at N iterations' (or 'at N epochs': `epoch` set, `iter` the global iteration)."""

    type = "checkpoint_saved"
    iter: int
    at: str | None = None
    epoch: int | None = None


@dataclass(frozen=True, slots=True)
class Started(Event):
    """A new log folder: a start or a resume of the run."""

    type = "started"
    log: str
    at: str | None = None


@dataclass(frozen=True, slots=True)
class Resumed(Event):
    """mmengine resumed from a checkpoint at `iter`."""

    type = "resumed"
    iter: int
    checkpoint: str | None = None
    at: str | None = None
    epoch: int | None = None  # epochs done at the checkpoint


@dataclass(frozen=True, slots=True)
class DataloaderAdvance(Event):
    """A resume replaying the dataloader `steps` steps before training goes on."""

    type = "dataloader_advance"
    steps: int
    at: str | None = None


@dataclass(frozen=True, slots=True)
class RunError(Event):
    """Why a run failed: `cause` is a short kind, `message` the line to show."""

    type = "error"
    cause: str  # "traceback", "cuda_oom", "weights_only", "nccl_timeout", "rank_failed", "error"
    message: str
    detail: str = ""
    at: str | None = None
    rank: int | None = None  # the distributed rank that failed, when the text says


@dataclass(frozen=True, slots=True)
class Validation(Event):
    """A validation loop's metrics (mmengine's `Epoch(val) [e][n/n]` summary or a scalars.json record without `iter`)."""

    type = "validation"
    iter: int | None
    metrics: dict[str, float]
    epoch: int | None = None
    at: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class TrainSteps(Event):
    """Consecutive train steps read in bulk, as rows `start:stop` of a StepColumns (see engine.runs.logparse)."""

    type = "train_steps"
    columns: Sequence[TrainStep]
    start: int = 0
    stop: int | None = None

    def __len__(self) -> int:
        return len(range(*slice(self.start, self.stop).indices(len(self.columns))))

    def __iter__(self) -> Iterator[TrainStep]:
        """The steps as TrainStep events."""
        return iter(self.columns[self.start : self.stop])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrainSteps) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def to_json(self) -> dict:
        """Plain dict: the steps as a list."""
        return {"type": self.type, "steps": [step.to_json() for step in self]}


def spread_steps(events: Iterable[Event]) -> list[Event]:
    """`events` with each TrainSteps batch spread into its TrainStep events (for code that wants one per line)."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, TrainSteps):
            out.extend(event)
        else:
            out.append(event)
    return out
