"""Persistence: the schema, the engine (SQLite WAL or PostgreSQL) and the repository functions."""

from __future__ import annotations
