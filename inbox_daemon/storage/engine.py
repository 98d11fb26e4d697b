"""Open the database: SQLite in WAL mode (the embedded default) or PostgreSQL via asyncpg."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

from sqlalchemy import Connection, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

#: How long a SQLite writer waits for another process's lock before failing.
SQLITE_BUSY_TIMEOUT_MS: Final = 10_000
#: The execution option that marks a connection as only reading (see :func:`reading`).
_READS_ONLY: Final = "inbox_reads_only"


def database_url(url: str, base_dir: Path) -> URL:
    """The async driver URL for ``url``; a relative SQLite path is resolved against ``base_dir``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not Path(database).is_absolute():
            database = str((base_dir / database).resolve())
        return parsed.set(drivername="sqlite+aiosqlite", database=database)
    return parsed.set(drivername="postgresql+asyncpg")


def describe_database(url: URL) -> str:
    """The database ``url`` names, in words for logs: the SQLite file, or the PostgreSQL
    database and its server (never the credentials)."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite database {url.database or ':memory:'}"
    return f"PostgreSQL database {url.database} on {url.host}:{url.port or 5432}"


def create_engine(url: URL) -> AsyncEngine:
    """An engine for ``url`` (from :func:`database_url`), tuned for this service."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    return create_async_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)


def _sqlite_engine(url: URL) -> AsyncEngine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url)
    else:  # one in-memory database exists per connection: share a single one
        engine = create_async_engine(url, poolclass=StaticPool)

    @event.listens_for(engine.sync_engine, "connect")
    def _configure(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the driver, open transactions so they can be BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        # Take the write lock up front: two writers then queue on busy_timeout instead of
        # failing with "database is locked" when a read transaction tries to upgrade. A
        # connection that only reads takes none: in WAL mode it reads beside the writer.
        if connection.get_execution_options().get(_READS_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads only.

    On SQLite its transaction does not take the write lock, so reads (the queue page's
    listings, sign-ins, metrics) run beside each other and beside a writer instead of
    queueing behind every write. A write through it would fail: use ``engine.begin()``.
    """
    async with engine.connect() as conn:
        await conn.execution_options(**{_READS_ONLY: True})
        yield conn
