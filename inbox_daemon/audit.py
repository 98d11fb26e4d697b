"""The audit log: who did what, when and from where, one append-only row per act.

Item views, claims, resolutions, escalations, reassignments, exports, agent and token
changes, configuration reloads, retention runs and erasures each append one row to
``audit_log``, in the transaction of the act itself: a row exists exactly when the act
committed. The table sits beside ``queue_events`` rather than on it: queue events are an
item's state machine (the queue reads them back, and they go when the item goes), while the
audit log also holds acts that change nothing (a view, an export), acts on no item (a token,
a reload), and must outlive the items it names, so it has no foreign keys. Triggers in the
database refuse UPDATE and DELETE on it.

A row never holds what a customer wrote or who they are: items are named by reference, and
details hold counts, labels and names of staff.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy import insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .storage.schema import audit_log

logger = logging.getLogger(__name__)

#: Acts the log records; ``action`` is one of these.
VIEW: Final = "view"
CLAIM: Final = "claim"
RENEW: Final = "renew"
RESOLVE: Final = "resolve"
ESCALATE: Final = "escalate"
REASSIGN: Final = "reassign"
EXPORT: Final = "export"
AGENT_ADD: Final = "agent.add"
AGENT_DISABLE: Final = "agent.disable"
TOKEN_ISSUE: Final = "token.issue"  # noqa: S105 - an action's name
TOKEN_REVOKE: Final = "token.revoke"  # noqa: S105 - an action's name
CONFIG_RELOAD: Final = "config.reload"
RETENTION: Final = "retention"
ERASE: Final = "erase"
#: The actor of what the daemon does by itself (retention, reloads).
SYSTEM_ACTOR: Final = "inbox-daemon"
MAX_LIST: Final = 1000


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, and from where (``http 203.0.113.7``, ``cli ana@host``, ``daemon host:pid``)."""

    name: str
    origin: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit log."""

    id: int
    at: datetime
    actor: str
    action: str
    origin: str
    item_ref: str | None
    detail: Mapping[str, Any]


def cli_origin() -> str:
    """Where a command line runs: the operating-system user and the host."""
    return f"cli {_login()}@{socket.gethostname()}"


def cli_actor(name: str | None = None) -> Actor:
    """The actor of a command: the agent it names with ``--as``, else ``cli:<os user>``."""
    return Actor(name or f"cli:{_login()}", cli_origin())


def daemon_actor() -> Actor:
    """The daemon acting by itself, from this host and process."""
    return Actor(SYSTEM_ACTOR, f"daemon {socket.gethostname()}:{os.getpid()}")


async def append(
    conn: AsyncConnection,
    actor: Actor,
    action: str,
    *,
    at: datetime,
    item_ref: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Append one row inside the caller's transaction (the act and its row commit together)."""
    await conn.execute(
        insert(audit_log).values(
            at=at,
            actor=actor.name[:128],
            action=action,
            origin=actor.origin[:255],
            item_ref=item_ref,
            detail=dict(detail or {}),
        )
    )


async def record(
    engine: AsyncEngine,
    actor: Actor,
    action: str,
    *,
    item_ref: str | None = None,
    detail: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    """Append one row in a transaction of its own (an act that wrote nothing else)."""
    async with engine.begin() as conn:
        at = now or datetime.now(UTC)
        await append(conn, actor, action, at=at, item_ref=item_ref, detail=detail)


async def append_view(
    conn: AsyncConnection, actor: Actor, item_ref: str, *, at: datetime, repeat_s: float
) -> bool:
    """Log that ``actor`` read the detail of ``item_ref``; whether a row was written.

    A read within ``repeat_s`` of the same actor's last logged read of the item, from the
    same origin, is not logged again: the page re-reads an open item on each refresh.
    """
    if repeat_s > 0:
        c = audit_log.c
        recent = await conn.scalar(
            select(c.id)
            .where(
                c.item_ref == item_ref,
                c.actor == actor.name[:128],
                c.action == VIEW,
                c.origin == actor.origin[:255],
                c.at > at - timedelta(seconds=repeat_s),
            )
            .limit(1)
        )
        if recent is not None:
            return False
    await append(conn, actor, VIEW, at=at, item_ref=item_ref)
    return True


async def list_entries(
    engine: AsyncEngine,
    *,
    item_ref: str | None = None,
    actor: str | None = None,
    limit: int = 100,
) -> tuple[AuditEntry, ...]:
    """The newest ``limit`` rows, oldest first, about ``item_ref`` and/or by ``actor``."""
    async with engine.connect() as conn:
        return await entries(conn, item_ref=item_ref, actor=actor, limit=limit)


async def entries(
    conn: AsyncConnection,
    *,
    item_ref: str | None = None,
    actor: str | None = None,
    limit: int = 100,
) -> tuple[AuditEntry, ...]:
    """:func:`list_entries` on an open connection."""
    c = audit_log.c
    query = select(c.id, c.at, c.actor, c.action, c.origin, c.item_ref, c.detail)
    if item_ref is not None:
        query = query.where(c.item_ref == item_ref)
    if actor is not None:
        query = query.where(c.actor == actor)
    rows = (await conn.execute(query.order_by(c.id.desc()).limit(limit))).all()
    return tuple(AuditEntry(*row) for row in reversed(rows))


async def record_reload(engine: AsyncEngine, path: Path, *, error: str | None) -> bool:
    """Log a configuration reload (SIGHUP): the file, its SHA-256, applied or why refused.

    Returns whether the row was written; when the database cannot take it the failure is
    logged and the caller does not apply the reload (what was never logged never ran).
    """
    try:
        digest = hashlib.sha256(await asyncio.to_thread(path.read_bytes)).hexdigest()
    except OSError as exc:
        digest = f"unreadable: {exc.strerror}"
    detail: dict[str, Any] = {"path": str(path), "sha256": digest, "applied": error is None}
    if error is not None:
        detail["error"] = error[:500]
    try:
        await record(engine, daemon_actor(), CONFIG_RELOAD, detail=detail)
    except (OSError, SQLAlchemyError) as exc:
        logger.error(
            "the audit log cannot record the configuration reload; it is not applied",
            extra={"stage": "reload", "error": type(exc).__name__},
        )
        return False
    return True


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container running as a bare uid)
        return f"uid{os.getuid()}"
