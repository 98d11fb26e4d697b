"""``inbox-daemon check-source NAME``: connect to one source and show what it would read.

The adapter is opened (connect, log in) and asked for one batch after the cursor stored in the
database, if there is one; the batch is printed and dropped. Nothing is stored, no cursor moves
and nothing is sent, so an operator can check credentials, chats and folders of a source on the
live service without side effects (what a source's ``fetch`` never does on the server, it does
not do here either: IMAP reads with ``BODY.PEEK``, Telegram reads updates without marking them).
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from .config import Settings
from .errors import ConfigError
from .interfaces import Batch, Cursor, InboundMessage
from .registry import adapter_plugin
from .storage.engine import create_engine, database_url
from .storage.migrate import NotMigratedError, ensure_migrated
from .storage.repository import load_cursor

#: Messages shown at most: enough to see the source works, not a dump of the mailbox.
SHOWN = 20


async def check_source(settings: Settings, name: str, out: TextIO, *, limit: int = SHOWN) -> int:
    """Open source ``name``, fetch one batch after its stored cursor, print it; returns 0.

    Raises:
        ConfigError: no source is called ``name``.
        RetryableError, PermanentError: the source could not be opened or read.
    """
    try:
        source = settings.source(name)
    except KeyError:
        known = ", ".join(s.name for s in settings.sources) or "none"
        raise ConfigError(f"no source named {name!r}; configured: {known}") from None
    cursor, where = await _stored_cursor(settings, name)
    adapter = adapter_plugin(source.kind).create(source)
    try:
        await adapter.open()
        print(f"{name} ({source.kind}): connected and logged in", file=out)
        batch = await adapter.fetch(cursor, limit)
    finally:
        await adapter.close()
    print(f"read from {where}:", file=out)
    _print_batch(batch, out)
    print("nothing was stored, no cursor moved, nothing was sent", file=out)
    return 0


async def _stored_cursor(settings: Settings, name: str) -> tuple[Cursor | None, str]:
    url = database_url(settings.storage.url, settings.config_dir)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        return None, "the start (no database yet)"
    engine = create_engine(url)
    try:
        await ensure_migrated(engine)
        cursor, _version = await load_cursor(engine, name)
    except NotMigratedError:
        return None, "the start (the database is not migrated)"
    finally:
        await engine.dispose()
    return cursor, "the stored cursor" if cursor is not None else "the start (never polled)"


def _print_batch(batch: Batch, out: TextIO) -> None:
    for message in batch.messages:
        print(f"  {_describe(message)}", file=out)
    for failure in batch.failures:
        print(f"  dead letter {failure.external_id}: {failure.error}", file=out)
    more = "; more would follow" if batch.more else ""
    print(f"{len(batch.messages)} messages, {len(batch.failures)} dead letters{more}", file=out)


def _describe(message: InboundMessage) -> str:
    # Who and what kind, never the words: this output may be pasted into a ticket.
    sender = message.sender.handle or message.sender.id or "(unknown sender)"
    parts = [
        message.external_id,
        f"{message.received_at:%Y-%m-%d %H:%M} UTC",
        f"from {sender}",
        f"{len(message.text)} characters",
    ]
    if message.attachments:
        parts.append(f"{len(message.attachments)} attachments")
    parts.extend(message.notes[:2])
    return "; ".join(parts)
