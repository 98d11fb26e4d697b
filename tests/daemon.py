"""The daemon as the end-to-end tests drive it: one run over a config file, and its database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from inbox_daemon.config import load_settings
from inbox_daemon.scheduler import Daemon, RunReport
from inbox_daemon.storage.engine import create_engine, database_url
from inbox_daemon.storage.migrate import upgrade


async def run_once(config_path: Path) -> RunReport:
    """``inbox-daemon run --once`` in this process: poll every source, deliver due replies."""
    async with AsyncExitStack() as stack:
        daemon = await Daemon.open(load_settings(config_path), stack)
        return await daemon.run_once()


@asynccontextmanager
async def migrated_engine(config_path: Path) -> AsyncIterator[AsyncEngine]:
    """The database the config at ``config_path`` names, migrated, disposed of on exit."""
    settings = load_settings(config_path)
    engine = create_engine(database_url(settings.storage.url, settings.config_dir))
    try:
        await upgrade(engine)
        yield engine
    finally:
        await engine.dispose()
