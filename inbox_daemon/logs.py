"""Structured logs: one JSON object a line, with the ``extra`` fields (source, stage, reference)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Final, TextIO

# Attributes every LogRecord has; anything else was passed through ``extra``.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


#: The source whose poll or delivery the running task serves. A line logged meanwhile names it,
#: whoever logs it: the core, an adapter, or a client library the adapter drives.
_current_source: Final[ContextVar[str | None]] = ContextVar("current_source", default=None)


@contextmanager
def source_context(name: str) -> Iterator[None]:
    """Name ``name`` as the source of every line logged within (in this task and those it
    starts)."""
    token = _current_source.set(name)
    try:
        yield
    finally:
        _current_source.reset(token)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message and extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line of ``record``."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        source = _current_source.get()
        if source is not None:
            entry["source"] = source  # an explicit ``extra`` source, below, wins
        entry.update({key: value for key, value in vars(record).items() if key not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is logged, not when it was made.

    A handler bound to the stream of its moment would write into a closed stream once that
    one is replaced (test runners do, and so do embedding programs).
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always sys.stderr


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Send logs to stderr as JSON lines (``fmt="json"``) or plain text."""
    handler = _StderrHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
