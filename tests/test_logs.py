"""Logs are JSON lines on the stderr of the moment, with source and stage, never a body."""

from __future__ import annotations

import io
import json
import logging

import pytest

from inbox_daemon.logs import configure_logging


def test_logs_follow_stderr_when_it_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    first = io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    configure_logging("INFO", "json")
    first.close()  # a test runner closes the stream it captured with
    later = io.StringIO()
    monkeypatch.setattr("sys.stderr", later)
    try:
        logging.getLogger("inbox_daemon.test").warning("stored %d records", 3)
    finally:
        logging.getLogger().handlers.clear()
    line = json.loads(later.getvalue())
    assert line["message"] == "stored 3 records"
    assert line["level"] == "WARNING"
