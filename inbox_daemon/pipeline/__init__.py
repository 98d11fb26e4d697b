"""The pipeline: pure functions from fetched messages to feedback records, with no I/O."""

from __future__ import annotations
