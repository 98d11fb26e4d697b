"""Apply and check the Alembic migrations shipped in ``migrations/``."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import InboxError


class NotMigratedError(InboxError):
    """The database schema is older (or newer) than this version of inbox-daemon expects."""


def alembic_config() -> Config:
    """The Alembic configuration pointing at the migrations shipped with the package."""
    config = Config()
    config.set_main_option("script_location", str(files("inbox_daemon.migrations")))
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate the database behind ``engine`` to ``revision``."""
    config = alembic_config()

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, ``None`` when it was never migrated."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(read)


def head_revision() -> str:
    """The newest revision this version of inbox-daemon ships."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None  # noqa: S101 - the package always ships at least one revision
    return head


async def ensure_migrated(engine: AsyncEngine) -> None:
    """Refuse to work on a database that is not at the shipped head revision.

    Raises:
        NotMigratedError: naming the revision found and the command that fixes it.
    """
    found, head = await current_revision(engine), head_revision()
    if found != head:
        raise NotMigratedError(
            f"database schema is at revision {found or 'none'}, this version needs {head}: "
            "run `inbox-daemon migrate --config FILE`"
        )
