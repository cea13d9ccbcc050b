"""Incremental readers of XTuner's mmengine log and vis_data/scalars.json that turn lines into events.

The parsing lives in engine.runs.logparse; this module tails files (regular files only, never blocking on a
FIFO) and is where callers import the readers from.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path

from engine.files import open_regular
from engine.runs.events import Event
from engine.runs.logparse.parser import LogParser
from engine.runs.logparse.samples import split_sample
from engine.runs.logparse.scalars import ScalarsParser

__all__ = [
    "LogFollower",
    "LogParser",
    "ScalarsFollower",
    "ScalarsParser",
    "TextFollower",
    "read_events",
    "split_sample",
]

_BLOCK = 1 << 20


class _Follower:
    """Feeds the bytes appended to a file since the last poll to a parser; starts over on a shrunk or new file."""

    _parser_type: type[LogParser] | type[ScalarsParser] | type[_RawText]

    def __init__(self, path: str | os.PathLike[str], offset: int = 0, columns: bool = False) -> None:
        self.path = Path(path)
        self._columns = columns  # the parser takes the bytes and gives train steps in TrainSteps batches
        self.parser = self._parser_type()
        self._offset = offset
        self._inode: int | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def offset(self) -> int:
        """Bytes of the file read so far."""
        return self._offset

    def poll(self) -> list[Event]:
        """Events from the bytes appended since the last poll ([] while the file does not exist or is no regular file)."""
        out: list[Event] = []
        try:
            with open_regular(self.path) as fh:
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
                    if self._columns:
                        out += self.parser.feed_bytes(data)
                    else:
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
    """Tails an mmengine log (or xtui's console file) into events; with `columns`, train steps come in batches."""

    _parser_type = LogParser


class ScalarsFollower(_Follower):
    """Tails `vis_data/scalars.json` into TrainSteps and Validations."""

    _parser_type = ScalarsParser


def read_events(path: str | os.PathLike[str]) -> list[Event]:
    """Every event of a whole finished file: a log, or a scalars.json when the name ends in `.json`."""
    follower = ScalarsFollower(path) if str(path).endswith(".json") else LogFollower(path)
    return follower.poll() + follower.flush()
