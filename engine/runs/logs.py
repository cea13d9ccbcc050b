"""Incremental readers of XTuner's mmengine log and vis_data/scalars.json that turn lines into events."""

from __future__ import annotations

import codecs
import json
import os
import re
from collections import deque
from pathlib import Path

from engine.runs.events import CheckpointSaved, DataloaderAdvance, Event, Resumed, RunError, Sample, TrainStep

_ANSI = r"(?:\x1b\[[0-9;]*m)*"
# `11/28 13:52:00 - mmengine - INFO - ` on the console, `2026/11/28 ...` in the work dir; tty levels are coloured.
_HEAD = rf"((?:\d{{4}}/)?\d\d/\d\d \d\d:\d\d:\d\d) - \S+ - {_ANSI}([A-Z]+){_ANSI} - "
# The usual xtuner train line in mmengine's key order, read in one match; anything else takes the generic path.
_FAST_STEP = (
    r"Iter\(train\) \[\s*(\d{1,18})/(\d{1,18})\]  lr: (\S+)  "
    r"(?:eta: (?:(\d{1,9}) days?, )?(\d\d?):(\d\d):(\d\d)  time: (\S+)  data_time: (\S+)  )?"
    r"(?:memory: (\d+)  )?loss: (\S+)(?:  tflops: (\S+)  tokens_per_sec: (\S+))?(?:  grad_norm: (\S+))?$"
)
_LINE = re.compile(rf"{_HEAD}(?:{_FAST_STEP})?")
_HEAD_ONLY = re.compile(_HEAD)
_STEP = re.compile(r"(?:Iter\(train\) |Epoch\(train\)\s*\[\s*(\d{1,18})\])\[\s*(\d{1,18})/(\d{1,18})\]")
_KV = re.compile(r"([A-Za-z_][\w./-]*): (\d+ days?, [\d:]+|\S+)")
_MESSAGE = re.compile(
    r"(Sample output:)|Saving checkpoint at (\d{1,18}) iterations|resumed epoch: \d+, iter: (\d{1,18})"
    r"|Load checkpoint from (.+)|Advance dataloader (\d{1,18}) steps|(before_train) in EvaluateChatHook"
    r"|Auto resumed from the latest checkpoint (.+)"
)
# The last line of a traceback: `torch.OutOfMemoryError: ...`, or a bare `KeyboardInterrupt`.
_EXCEPTION = re.compile(r"[A-Za-z_][\w.]*(?::|(?:Error|Exception|Interrupt|Exit)$)")
_RANK = re.compile(r"\[(?:default)?rank\d+\]:")  # torchrun's per-rank prefix on stderr lines
_ANSI_CODES = re.compile(r"\x1b\[[0-9;]*m")
_FLOAT_KEYS = frozenset(("lr", "loss", "grad_norm", "time", "data_time", "memory", "tokens_per_sec", "tflops"))
_TRACEBACK = "Traceback (most recent call last):"
_MAX_SAMPLE_LINES = 1000
_MAX_TRACEBACK_LINES = 50
_BLOCK = 1 << 20

# (user marker, assistant marker) of XTuner's PROMPT_TEMPLATE entries, most specific first.
_TEMPLATES = (
    ("<|im_start|>user\n", "<|im_start|>assistant\n"),  # internlm2_chat, qwen_chat, minicpm3
    ("<|start_header_id|>user<|end_header_id|>", "<|start_header_id|>assistant<|end_header_id|>"),  # llama3
    ("<start_of_turn>user\n", "<start_of_turn>model\n"),  # gemma
    ("<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>"),  # cohere_chat
    ("<|User|>:", "<|Bot|>:"),  # default, internlm_chat
    ("<|user|>", "<|assistant|>"),  # zephyr, chatglm3, phi3_chat
    ("[INST]", "[/INST]"),  # llama2_chat, mistral, mixtral, code_llama_chat, deepseek_moe
    ("### Instruction:", "### Response:"),  # deepseek_coder, wizardcoder
    ("USER:", "ASSISTANT:"),  # vicuna, wizardlm
    ("User:", "Assistant:"),  # deepseek_v2
    ("问：", "答："),  # chatglm2
    ("<用户>", "<AI>"),  # minicpm
)
_END_TOKENS = (
    "<|im_end|>", "<|eot_id|>", "<|endoftext|>", "</s>", "<eoa>", "<eoh>", "<|end|>", "<end_of_turn>",
    "<|END_OF_TURN_TOKEN|>", "<｜end▁of▁sentence｜>", "<eos>",
)
_BOS_TOKENS = ("<s>", "<|begin_of_text|>", "<bos>", "<BOS_TOKEN>")


def _eta_seconds(text: str) -> float | None:
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


def _fast_step(groups: tuple) -> TrainStep:
    """A TrainStep from the groups of a line that matched the usual layout (the hot path)."""
    at, _, it, total, lr, days, hours, minutes, secs, time, data_time, memory, loss, tflops, tps, grad = groups
    eta = None if hours is None else float(
        ((int(days) * 24 if days else 0) + int(hours)) * 3600 + int(minutes) * 60 + int(secs)
    )
    return TrainStep(
        int(it), int(total), float(lr), float(loss), grad and float(grad), time and float(time),
        data_time and float(data_time), memory and float(memory), eta, tps and float(tps),
        tflops and float(tflops), {}, at,
    )


def _clean(text: str) -> str:
    """Text up to the first template end token, without special tokens and outer whitespace."""
    for token in _END_TOKENS:
        cut = text.find(token)
        if cut >= 0:
            text = text[:cut]
    for token in _BOS_TOKENS:
        if token in text:
            text = text.replace(token, "")
    return text.strip()


def split_sample(text: str) -> tuple[str, str]:
    """(prompt, answer) of an EvaluateChatHook output in a known chat template, else ("", text)."""
    for user, bot in _TEMPLATES:
        start = text.find(user)
        for _ in range(4):  # a system block shaped like a turn (llama2, mistral) is skipped
            if start < 0:
                break
            mid = text.find(bot, start + len(user))
            if mid < 0:
                break
            after = mid + len(bot)
            if not text[after:].lstrip().startswith(user):
                return _clean(text[start + len(user) : mid]), _clean(text[after:])
            start = text.find(user, after)
    return "", _clean(text)


def _error(lines: deque[str] | list[str], message: str, at: str | None = None) -> RunError:
    """A RunError whose cause is read off the text: CUDA OOM, torch's weights-only trap, or plain."""
    detail = "\n".join(lines)
    text = f"{detail}\n{message}"
    if "CUDA out of memory" in text or "OutOfMemoryError" in text:
        cause = "cuda_oom"
    elif "Weights only load failed" in text:
        cause = "weights_only"
    else:
        cause = "traceback" if lines else "error"
    return RunError(cause, _ANSI_CODES.sub("", message).strip(), _ANSI_CODES.sub("", detail), at)


class LogParser:
    """Stateful parser of mmengine log text (console or work-dir file), fed in arbitrary chunks."""

    def __init__(self) -> None:
        self._pending: list[str] = []  # the unfinished last line
        self._iter = 0  # the iteration a sample belongs to
        self._resume_iter = 0
        self._checkpoint: str | None = None
        self._sample: list[str] | None = None
        self._sample_at: str | None = None
        self._traceback: deque[str] | None = None

    def feed(self, text: str) -> list[Event]:
        """Events of every line completed by `text`; a trailing partial line waits for the next feed."""
        if "\n" not in text:
            if text:
                self._pending.append(text)
            return []
        if self._pending:
            self._pending.append(text)
            text = "".join(self._pending)
            self._pending.clear()
        lines = text.split("\n")
        rest = lines.pop()
        if rest:
            self._pending.append(rest)
        if "\r" in text:
            lines = [seg for line in lines for seg in ([p for p in line.split("\r") if p] or ("",))]
        out: list[Event] = []
        match = _LINE.match
        for line in lines:
            m = match(line)
            if m is None:
                if self._sample is not None or self._traceback is not None or line[:1] in ("T", "["):
                    self._plain(line, out)
                continue
            if self._sample is not None:
                self._end_sample(out)
            if m.lastindex != 2:  # the usual train line matched
                try:
                    step = _fast_step(m.groups())
                except ValueError:  # a value that is no number: the generic path skips just that one
                    m = _HEAD_ONLY.match(line)
                else:
                    self._iter = step.iter
                    out.append(step)
                    continue
            s = _STEP.match(line, m.end())
            if s is not None:
                out.append(self._train_step(line, s, m.group(1)))
            else:
                self._message(line, m, out)
        return out

    def flush(self) -> list[Event]:
        """Events still open at the end of the process: the pending line, a sample, a traceback."""
        out = self.feed("\n") if self._pending else []
        if self._sample is not None:
            self._end_sample(out)
        if self._traceback is not None:
            lines, self._traceback = self._traceback, None
            out.append(_error(lines, next((x for x in reversed(lines) if x.strip()), _TRACEBACK)))
        return out

    def _train_step(self, line: str, s: re.Match[str], at: str) -> TrainStep:
        """A TrainStep from an `Iter(train) [ 5/40]  lr: ...` (or `Epoch(train) [1][5/40]`) line."""
        epoch, it, total = s.groups()
        fields: dict[str, float] = {}
        extra: dict[str, float] = {}
        for key, value in _KV.findall(line, s.end()):
            if key == "eta":
                eta = _eta_seconds(value)
                if eta is not None:
                    fields["eta"] = eta
                continue
            try:
                (fields if key in _FLOAT_KEYS else extra)[key] = float(value)
            except ValueError:
                pass
        self._iter = int(it)
        if epoch is not None:
            extra["epoch"] = float(epoch)
            return TrainStep(self._iter, None, extra=extra, at=at, **fields)
        return TrainStep(self._iter, int(total), extra=extra, at=at, **fields)

    def _message(self, line: str, m: re.Match[str], out: list[Event]) -> None:
        """Handle a timestamped line that is not a train step."""
        at = m.group(1)
        found = _MESSAGE.match(line, m.end())
        if found is None:
            if m.group(2) == "ERROR":  # `- ERROR - path - function - lineno - message`
                parts = line[m.end() :].split(" - ", 3)
                message = parts[3] if len(parts) == 4 and parts[2].isdigit() else line[m.end() :]
                out.append(_error([], message, at))
            return
        kind = found.lastindex
        if kind == 1:  # a new sample also ends a traceback that never got its last line
            self._traceback = None
            self._sample = [rest] if (rest := line[found.end() :].strip()) else []
            self._sample_at = at
        elif kind == 2:  # the final iteration is often saved but not logged: later samples belong to it
            saved = int(found.group(2))
            self._iter = max(self._iter, saved)
            out.append(CheckpointSaved(saved, at))
        elif kind == 3:
            self._iter = self._resume_iter = int(found.group(3))
            out.append(Resumed(self._iter, self._checkpoint, at))
        elif kind in (4, 7):
            self._checkpoint = found.group(kind).strip().removesuffix(".")
        elif kind == 5:
            out.append(DataloaderAdvance(int(found.group(5)), at))
        elif kind == 6:  # before_train: samples of the step training starts (or resumes) from
            self._iter, self._resume_iter = self._resume_iter, 0

    def _plain(self, line: str, out: list[Event]) -> None:
        """Handle a line without a timestamp: sample text, traceback text, or noise."""
        if line[:1] == "[" and (rank := _RANK.match(line)):
            line = line[rank.end() :].removeprefix(" ")
        if line.startswith(_TRACEBACK):
            if self._sample is not None:
                self._end_sample(out)
            self._traceback = deque((line,), maxlen=_MAX_TRACEBACK_LINES)
        elif self._traceback is not None:
            self._traceback.append(line)
            if line[:1] not in " \t" and _EXCEPTION.match(line):
                lines, self._traceback = self._traceback, None
                out.append(_error(lines, line))
        elif self._sample is not None and len(self._sample) < _MAX_SAMPLE_LINES:
            self._sample.append(line)

    def _end_sample(self, out: list[Event]) -> None:
        """Emit the open sample; its text ends at its last blank line (what follows is other output)."""
        lines, self._sample = self._sample or [], None
        for i in range(len(lines) - 1, -1, -1):
            if not lines[i]:
                del lines[i:]
                break
        prompt, answer = split_sample("\n".join(lines))
        out.append(Sample(self._iter, prompt, answer, self._sample_at))


class ScalarsParser:
    """Parser of `vis_data/scalars.json` text (one JSON object per logged iteration) into TrainSteps."""

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, text: str) -> list[Event]:
        """TrainSteps of every line completed by `text`."""
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        return [step for line in lines if (step := _scalars_step(line)) is not None]

    def flush(self) -> list[Event]:
        """The last line when it lacks its newline."""
        return self.feed("\n")


class _Follower:
    """Feeds the bytes appended to a file since the last poll to a parser; starts over on a shrunk or new file."""

    _parser_type: type[LogParser] | type[ScalarsParser] | type[_RawText]

    def __init__(self, path: str | os.PathLike[str], offset: int = 0) -> None:
        self.path = Path(path)
        self.parser = self._parser_type()
        self._offset = offset
        self._inode: int | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def offset(self) -> int:
        """Bytes of the file read so far."""
        return self._offset

    def poll(self) -> list[Event]:
        """Events from the bytes appended since the last poll ([] while the file does not exist)."""
        out: list[Event] = []
        try:
            with open(self.path, "rb") as fh:
                st = os.fstat(fh.fileno())
                if st.st_size < self._offset or (self._inode is not None and st.st_ino != self._inode):
                    self._offset = 0
                    self._decoder.reset()
                    self.parser = self._parser_type()
                self._inode = st.st_ino
                if st.st_size == self._offset:
                    return out
                fh.seek(self._offset)
                while data := fh.read(_BLOCK):
                    self._offset += len(data)
                    out += self.parser.feed(self._decoder.decode(data))
        except OSError:
            pass
        return out

    def flush(self) -> list[Event]:
        """Events still open once the writer is gone (the last sample, an unfinished traceback)."""
        return self.parser.flush()


class _RawText:
    """A pass-through 'parser': the decoded text itself, for showing a log as it is."""

    def feed(self, text: str) -> list[str]:
        """The chunk, when there is one."""
        return [text] if text else []

    def flush(self) -> list[str]:
        """Nothing is held back."""
        return []


class TextFollower(_Follower):
    """Tails any file as decoded text chunks (a log view), with the same offset and restart rules."""

    _parser_type = _RawText


class LogFollower(_Follower):
    """Tails an mmengine log (or xtui's console file) into events."""

    _parser_type = LogParser


class ScalarsFollower(_Follower):
    """Tails `vis_data/scalars.json` into TrainSteps."""

    _parser_type = ScalarsParser


def _scalars_step(line: str) -> TrainStep | None:
    """A TrainStep from one scalars.json line, None for a line that is not a train record."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    it = record.get("iter", record.get("step"))
    if not isinstance(it, int) or isinstance(it, bool):
        return None
    fields: dict[str, float] = {}
    extra: dict[str, float] = {}
    for key, value in record.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("iter", "step"):
            try:
                (fields if key in _FLOAT_KEYS else extra)[key] = float(value)
            except OverflowError:  # an int too large for a float
                pass
    return TrainStep(it, extra=extra, **fields)


def read_events(path: str | os.PathLike[str]) -> list[Event]:
    """Every event of a whole finished file: a log, or a scalars.json when the name ends in `.json`."""
    follower = ScalarsFollower(path) if str(path).endswith(".json") else LogFollower(path)
    return follower.poll() + follower.flush()
