"""What the top of an mmengine log says about the loop: the config dump (`Config:`) and the hook table."""

from __future__ import annotations

import re
from dataclasses import dataclass

_MAX_LINES = 5000  # lines of a config dump or hook table looked at
# A `name=dict(...)` without nested calls, as mmengine's pretty_text writes it (across lines or not).
_TRAIN_CFG = re.compile(r"^train_cfg = dict\(([^()]*)\)", re.M)
_CHECKPOINT = re.compile(r"\bcheckpoint=dict\(([^()]*)\)")
_EVERY_N_ITERS = re.compile(r"\bevery_n_iters=(\d{1,12})\b")
_HOOK = re.compile(r"\([A-Z_0-9 ]+\) (\w+)")


@dataclass(slots=True)
class TrainPlan:
    """The loop's limits and the hooks' intervals and order, as far as the log's header said."""

    max_epochs: int | None = None  # an epoch-based loop's (or XTuner TrainLoop's) max_epochs
    every_n_iters: int | None = None  # EvaluateChatHook's
    save_every: int | None = None  # CheckpointHook's interval when it saves by iteration
    eval_before_logger: bool = False  # EvaluateChatHook runs before LoggerHook after each iteration (XTuner <= 0.1.13)


def _number(text: str, key: str) -> int | None:
    """The integer `key=N` in a dict's text, or None."""
    m = re.search(rf"\b{key}=(\d{{1,12}})\b", text)
    return int(m.group(1)) if m else None


class ConfigDump:
    """The text of mmengine's `Config:` dump, collected up to the next log record."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def add(self, line: str) -> None:
        """One more line of the dump."""
        if len(self._lines) < _MAX_LINES:
            self._lines.append(line)

    def apply(self, plan: TrainPlan) -> None:
        """Set what the dump says in `plan`."""
        text = "\n".join(self._lines)
        if (train := _TRAIN_CFG.search(text)) is not None:
            plan.max_epochs = _number(train.group(1), "max_epochs")
        if (every := _EVERY_N_ITERS.search(text)) is not None:
            plan.every_n_iters = int(every.group(1)) or None
        if (checkpoint := _CHECKPOINT.search(text)) is not None:
            by_epoch = "by_epoch=False" not in checkpoint.group(1)  # CheckpointHook saves by epoch by default
            plan.save_every = None if by_epoch else _number(checkpoint.group(1), "interval") or None


class HookTable:
    """mmengine's `Hooks will be executed in the following order:` table, collected up to the next log record."""

    def __init__(self) -> None:
        self._stage: str | None = None
        self._after_iter: list[str] = []
        self._lines = 0

    def add(self, line: str) -> None:
        """One more line of the table: a stage (`after_train_iter:`) or a hook (`(NORMAL      ) EvaluateChatHook`)."""
        self._lines += 1
        line = line.rstrip()
        if self._lines > _MAX_LINES:
            return
        if line.endswith(":") and not line.startswith("("):
            self._stage = line[:-1]
        elif self._stage == "after_train_iter" and (hook := _HOOK.match(line)) is not None:
            self._after_iter.append(hook.group(1))

    def apply(self, plan: TrainPlan) -> None:
        """Set the hook order in `plan`."""
        hooks = self._after_iter
        if "EvaluateChatHook" in hooks and "LoggerHook" in hooks:
            plan.eval_before_logger = hooks.index("EvaluateChatHook") < hooks.index("LoggerHook")
