"""Shared fixtures: databases (SQLite always, PostgreSQL when INBOX_TEST_PG_URL is set)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from inbox_daemon.storage.engine import create_engine, database_url
from inbox_daemon.storage.migrate import upgrade

CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
if not CORPORA.is_dir():  # a checkout whose shared/ sits beside the repository's parent
    CORPORA = Path(os.environ.get("INBOX_CORPORA", "../shared/corpora")).resolve()

PG_URL = os.environ.get("INBOX_TEST_PG_URL")
BACKENDS = (
    ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)] if PG_URL else ["sqlite"]
)


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A configured storage URL of an empty database, on each backend under test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'inbox.db'}"
        return
    assert PG_URL is not None
    name = f"inbox_test_{secrets.token_hex(6)}"
    admin = create_async_engine(database_url(PG_URL, tmp_path), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture
async def engine(database: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated engine on ``database``."""
    engine = create_engine(database_url(database, tmp_path))
    await upgrade(engine)
    yield engine
    await engine.dispose()
