"""Opening a run's files only when they are regular files, without ever blocking on a FIFO.

A work dir can hold a FIFO, a link to /dev/zero or a folder where a log or checkpoint should be.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFile(OSError):
    """The path exists but is no regular file (a FIFO, a device, a folder, a socket)."""


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words (`a FIFO`)."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """`path` opened for binary reading without blocking; NotRegularFile when it is not a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"{Path(path).name} is {kind_of(mode)}, not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_head(path: str | os.PathLike[str], limit: int) -> bytes:
    """At most `limit` bytes from the start of a regular file."""
    with open_regular(path) as fh:
        return fh.read(limit)
