"""Text fed in chunks cut into complete lines, each bounded in length, whatever the chunk boundaries."""

from __future__ import annotations

MAX_LINE = 1 << 16  # characters of a line the parsers look at; the rest of a longer line is dropped


class LineSplitter:
    """Complete lines of text fed in arbitrary chunks; the unfinished last line waits, bounded like the others."""

    def __init__(self, carriage_returns: bool = False, limit: int = MAX_LINE) -> None:
        self._pending: list[str] = []
        self._pending_size = 0
        self._carriage_returns = carriage_returns  # a CR also ends a line (progress bars, CRLF)
        self._limit = limit

    def feed(self, text: str) -> list[str]:
        """The lines that `text` completes, each cut to the limit; a trailing partial line waits for the next feed."""
        if "\n" not in text:
            if text and self._pending_size < self._limit:
                self._pending.append(text)
                self._pending_size += len(text)
            return []
        if self._pending:
            self._pending.append(text)
            text = "".join(self._pending)
            self._pending.clear()
        lines = text.split("\n")
        rest = lines.pop()[: self._limit]
        self._pending_size = len(rest)
        if rest:
            self._pending.append(rest)
        limit = self._limit
        if len(text) > limit and max(map(len, lines)) > limit:  # no line is longer than the text
            lines = [line[:limit] for line in lines]
        if self._carriage_returns and "\r" in text:
            lines = [seg for line in lines for seg in ([p for p in line.split("\r") if p] or ("",))]
        return lines

    def flush(self) -> list[str]:
        """The unfinished last line, as if it had its newline."""
        return self.feed("\n") if self._pending else []
