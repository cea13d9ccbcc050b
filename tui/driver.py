"""Textual's Linux driver with an input thread that sleeps until there is input instead of waking 10 times a second.

Textual's input thread polls select() every 0.1 s, to notice the exit flag and to time out a lone Esc. That is
the whole idle cost of a hello-world app (benchmarks/idle_cost.py), paid by xtui for days in a tmux pane. Here
select() blocks until input arrives, the exit flag is set (it also writes to a wake-up pipe), or, only while the
parser holds a partial escape sequence, its timeout is due.
"""

from __future__ import annotations

import os
import selectors
import threading
from codecs import getincrementaldecoder

from textual.drivers.linux_driver import LinuxDriver

from tui.compat import ParseError, XTermParser, driver_debug, escape_pending


class _WakingEvent(threading.Event):
    """An Event whose `set()` also writes a byte to a pipe, so that a thread blocked in select() wakes up for it."""

    def __init__(self, wake_fd: int) -> None:
        super().__init__()
        self._wake_fd = wake_fd

    def set(self) -> None:
        super().set()
        os.write(self._wake_fd, b"\0")


class QuietLinuxDriver(LinuxDriver):
    """LinuxDriver whose input thread costs nothing while no key is pressed."""

    def __init__(self, app, **kwargs) -> None:
        super().__init__(app, **kwargs)
        self._wake_read, self._wake_write = os.pipe()
        self.exit_event = _WakingEvent(self._wake_write)

    def run_input_thread(self) -> None:
        """Textual's loop (textual 8.2.8), with select() waiting for input, exit or the parser's own timeout."""
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        selector.register(self._wake_read, selectors.EVENT_READ)
        parser = XTermParser(driver_debug(self))
        decode = getincrementaldecoder("utf-8")().decode

        def process(selector_events, final: bool = False) -> None:
            for index, (key, _mask) in enumerate(selector_events, 1):
                if key.fd == self._wake_read:
                    os.read(self._wake_read, 64)
                    continue
                unicode_data = decode(os.read(self.fileno, 1024 * 4), final=final and index == len(selector_events))
                if not unicode_data:
                    break  # stdin is piped and ended
                for event in parser.feed(unicode_data):
                    self.process_message(event)
            for event in parser.tick():
                self.process_message(event)

        def timeout() -> float | None:
            """None (wait for input) unless a partial escape sequence waits for its timeout."""
            return 0.1 if escape_pending(parser) else None

        try:
            while not self.exit_event.is_set():
                process(selector.select(timeout()))
            selector.unregister(self.fileno)
            process(selector.select(0.1), final=True)
        finally:
            selector.close()
            try:
                for _event in parser.feed(""):
                    pass
            except (EOFError, ParseError):
                pass

    def close(self) -> None:
        """Textual's clean-up, then the wake-up pipe."""
        super().close()
        for fd in (self._wake_read, self._wake_write):
            os.close(fd)
