"""inbox-daemon: ingest customer feedback from support channels into one triaged queue."""

from __future__ import annotations

__version__ = "0.1.0"
