"""Retention and erasure: what is kept, for how long, and a person's data removed on request.

- **Retention** (``[retention]``, a daily job and ``inbox-daemon retention run``): records
  received longer ago than their category's ``retention_days`` are anonymised (the default:
  labels, times and counts stay for statistics; sender, texts, subject, headers, platform
  fields, attachment metadata, entities and the reasons quoting the text go, with the
  acknowledgment sent and the notes on the item) or deleted with everything hanging off
  them. Dead letters older than the ``default`` are deleted either way: they can hold
  nothing but the raw message's traces.
- **Erasure** (``inbox-daemon erase --sender ADDRESS|HANDLE``): every record the person sent
  goes, with its queue item, history, alerts, resolution notices, acknowledgments (outbox)
  and rate-limit rows, and so do reply-log rows and dead letters that name them.

Both work in batches of ``batch_size`` records, one transaction each, reporting progress
after each; each batch writes one audit log row saying what it removed (counts and the
references of the records), never who the person is. A run cut short resumes where it
stopped: what is done is committed, what is left is found again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import String, and_, cast, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import ScalarSelect

from . import audit
from .audit import Actor
from .config import RetentionSettings
from .storage.repository import acquire_lease, release_lease
from .storage.schema import (
    alerts,
    dead_letters,
    feedback_records,
    outbox,
    queue_events,
    queue_items,
    reply_log,
    resolution_notices,
)

logger = logging.getLogger(__name__)

#: The key of ``retention_days`` that covers every category not named.
DEFAULT: Final = "default"
#: The lease one replica holds while it runs the daily job.
LEASE: Final = "job:retention"
LEASE_TTL_S: Final = 6 * 3600.0
_ANONYMISED: Final = "anonymised"


@dataclass(slots=True)
class Removal:
    """Rows removed (or anonymised) by table, and the references of the records."""

    counts: dict[str, int] = field(default_factory=dict)
    references: list[str] = field(default_factory=list)

    def add(self, other: Removal) -> None:
        """Add ``other``'s counts and references to these."""
        for table, count in other.counts.items():
            self.counts[table] = self.counts.get(table, 0) + count
        self.references.extend(other.references)

    @property
    def records(self) -> int:
        """Records removed or anonymised."""
        return self.counts.get("feedback_records", 0)


#: Called after each batch with (records done, records found).
Progress = Callable[[int, int], None]


# --- retention -------------------------------------------------------------------------------


async def apply_retention(
    engine: AsyncEngine,
    settings: RetentionSettings,
    *,
    actor: Actor,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> Removal:
    """Anonymise or delete the records past their category's retention; what went."""
    at = now or datetime.now(UTC)
    expired = _expired(settings, at)
    total = Removal()
    if expired is None:
        return total
    async with engine.connect() as conn:
        found = await conn.scalar(select(func.count()).where(expired)) or 0
    while True:
        async with engine.begin() as conn:
            ids = await _ids(conn, expired, settings.batch_size)
            if not ids:
                break
            done = await _retire(conn, ids, settings.action, at)
            detail = {"action": settings.action, **done.counts, "references": done.references}
            await audit.append(conn, actor, audit.RETENTION, at=at, detail=detail)
        total.add(done)
        _report(progress, total.records, found)
    total.add(await _expire_dead_letters(engine, settings, actor, at))
    return total


async def run_retention_job(
    engine: AsyncEngine, settings: RetentionSettings, *, owner: str
) -> None:
    """The daily job: one replica (the one holding the lease) applies retention, logging."""
    now = datetime.now(UTC)
    if not await acquire_lease(engine, LEASE, owner, ttl_s=LEASE_TTL_S, now=now):
        logger.info("retention runs on another replica today", extra={"stage": "retention"})
        return
    try:
        removal = await apply_retention(
            engine, settings, actor=audit.daemon_actor(), now=now, progress=_log_progress
        )
    finally:
        await release_lease(engine, LEASE, owner)
    logger.info(
        "retention: %d records %s",
        removal.records,
        "deleted" if settings.action == "delete" else "anonymised",
        extra={"stage": "retention", "counts": removal.counts},
    )


def _expired(settings: RetentionSettings, now: datetime) -> ColumnElement[bool] | None:
    """Records past their retention (not yet anonymised); ``None`` when nothing expires."""
    record = feedback_records.c
    named = [name for name in settings.retention_days if name != DEFAULT]
    clauses = [
        and_(record.category == name, record.received_at < now - timedelta(days=days))
        for name, days in settings.retention_days.items()
        if name != DEFAULT
    ]
    if DEFAULT in settings.retention_days:
        cutoff = now - timedelta(days=settings.retention_days[DEFAULT])
        clauses.append(and_(record.category.not_in(named), record.received_at < cutoff))
    if not clauses:
        return None
    return and_(or_(*clauses), record.anonymised_at.is_(None))


async def _retire(conn: AsyncConnection, ids: Sequence[int], action: str, now: datetime) -> Removal:
    if action == "delete":
        return await remove_records(conn, ids)
    return await _anonymise(conn, ids, now)


async def _anonymise(conn: AsyncConnection, ids: Sequence[int], now: datetime) -> Removal:
    """Strip the records ``ids`` of everything that identifies or quotes their sender."""
    done = Removal(references=await _references(conn, ids))
    record, items = feedback_records.c, _items_of(ids)
    marker = _ANONYMISED + ":" + cast(record.id, String)
    await conn.execute(
        update(feedback_records)
        .where(record.id.in_(ids))
        .values(
            external_id=marker,
            sender_id=marker,
            sender_handle=_ANONYMISED,
            sender_name="",
            recipients=[],
            subject="",
            text="",
            full_text="",
            thread_key=marker,
            in_reply_to=None,
            headers={},
            meta={},
            attachments=[],
            raw_ref="",
            notes=[],
            reasons=[],
            entities={},
            anonymised_at=now,
        )
    )
    done.counts["feedback_records"] = len(ids)
    done.counts["queue_items"] = await _count(
        conn,
        update(queue_items).where(queue_items.c.record_id.in_(ids)).values(resolution_note=None),
    )
    done.counts["queue_events"] = await _count(
        conn, update(queue_events).where(queue_events.c.item_id.in_(items)).values(detail="")
    )
    done.counts["outbox"] = await _count(conn, delete(outbox).where(outbox.c.record_id.in_(ids)))
    done.counts["reply_log"] = await _count(
        conn, delete(reply_log).where(reply_log.c.record_id.in_(ids))
    )
    # A resolution notice keeps its verdict and rating (statistics), not whom it went to.
    notice = resolution_notices.c
    pseudonym = _ANONYMISED + ":" + cast(notice.record_id, String)
    done.counts["resolution_notices"] = await _count(
        conn,
        update(resolution_notices)
        .where(notice.record_id.in_(ids))
        .values(sender_id=pseudonym, thread_key=pseudonym),
    )
    return done


async def _expire_dead_letters(
    engine: AsyncEngine, settings: RetentionSettings, actor: Actor, now: datetime
) -> Removal:
    days = settings.retention_days.get(DEFAULT)
    done = Removal()
    if days is None:
        return done
    old = dead_letters.c.created_at < now - timedelta(days=days)
    async with engine.begin() as conn:
        done.counts["dead_letters"] = await _count(conn, delete(dead_letters).where(old))
        if done.counts["dead_letters"]:
            detail = {"action": "delete", **done.counts}
            await audit.append(conn, actor, audit.RETENTION, at=now, detail=detail)
    return done


# --- erasure ---------------------------------------------------------------------------------


async def erase_sender(
    engine: AsyncEngine,
    sender: str,
    *,
    actor: Actor,
    batch_size: int = 500,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> Removal:
    """Remove everything stored of the person who wrote as ``sender`` (address or handle).

    ``sender`` matches a record's sender id or handle, case-insensitively, with or without
    a leading ``@``. Reply-log rows of that sender and dead letters whose id, reference or
    error names them go too.

    Raises:
        ValueError: ``sender`` is empty or shorter than three characters (too broad).
    """
    at = now or datetime.now(UTC)
    names = _spellings(sender)
    record = feedback_records.c
    theirs = or_(
        func.lower(record.sender_id).in_(names), func.lower(record.sender_handle).in_(names)
    )
    async with engine.connect() as conn:
        found = await conn.scalar(select(func.count()).where(theirs)) or 0
    total = Removal()
    while True:
        async with engine.begin() as conn:
            ids = await _ids(conn, theirs, batch_size)
            if not ids:
                break
            done = await remove_records(conn, ids)
            detail = {"request": "erasure", **done.counts, "references": done.references}
            await audit.append(conn, actor, audit.ERASE, at=at, detail=detail)
        total.add(done)
        _report(progress, total.records, found)
    # The last row is written even when nothing was found: the request itself is on record.
    async with engine.begin() as conn:
        traces = await _remove_traces(conn, names)
        detail = {"request": "erasure", "records_total": total.records, **traces.counts}
        await audit.append(conn, actor, audit.ERASE, at=at, detail=detail)
    total.add(traces)
    return total


def _spellings(sender: str) -> list[str]:
    bare = sender.strip().lower().lstrip("@")
    if len(bare) < 3:
        raise ValueError(f"--sender {sender!r}: give the whole address or handle")
    return sorted({bare, f"@{bare}"})


async def _remove_traces(conn: AsyncConnection, names: Sequence[str]) -> Removal:
    """Reply-log rows and dead letters that name the person, outside their records."""
    done = Removal()
    done.counts["reply_log"] = await _count(
        conn, delete(reply_log).where(func.lower(reply_log.c.sender_id).in_(names))
    )
    done.counts["outbox"] = await _count(
        conn, delete(outbox).where(func.lower(outbox.c.recipient).in_(names))
    )
    letter = dead_letters.c
    mentions = [
        func.lower(column).contains(name, autoescape=True)
        for name in names
        for column in (letter.external_id, letter.raw_ref, letter.error)
    ]
    done.counts["dead_letters"] = await _count(conn, delete(dead_letters).where(or_(*mentions)))
    return done


# --- removing records ------------------------------------------------------------------------


async def remove_records(conn: AsyncConnection, ids: Sequence[int]) -> Removal:
    """Delete the records ``ids`` and every row that hangs off them; what went, by table."""
    done = Removal(references=await _references(conn, ids))
    items = _items_of(ids)
    notice = resolution_notices.c
    done.counts["resolution_notices"] = await _count(
        conn,
        delete(resolution_notices).where(or_(notice.record_id.in_(ids), notice.item_id.in_(items))),
    )
    await conn.execute(
        update(resolution_notices)
        .where(notice.answer_record_id.in_(ids))
        .values(answer_record_id=None)
    )
    done.counts["alerts"] = await _count(conn, delete(alerts).where(alerts.c.item_id.in_(items)))
    done.counts["queue_events"] = await _count(
        conn, delete(queue_events).where(queue_events.c.item_id.in_(items))
    )
    done.counts["queue_items"] = await _count(
        conn, delete(queue_items).where(queue_items.c.record_id.in_(ids))
    )
    done.counts["outbox"] = await _count(conn, delete(outbox).where(outbox.c.record_id.in_(ids)))
    done.counts["reply_log"] = await _count(
        conn, delete(reply_log).where(reply_log.c.record_id.in_(ids))
    )
    # Repeats of these records by others keep their own rows; their link goes.
    await conn.execute(
        update(feedback_records)
        .where(feedback_records.c.duplicate_of.in_(ids))
        .values(duplicate_of=None)
    )
    done.counts["feedback_records"] = await _count(
        conn, delete(feedback_records).where(feedback_records.c.id.in_(ids))
    )
    return done


def _items_of(ids: Sequence[int]) -> ScalarSelect[int]:
    return select(queue_items.c.id).where(queue_items.c.record_id.in_(ids)).scalar_subquery()


async def _ids(conn: AsyncConnection, condition: ColumnElement[bool], limit: int) -> list[int]:
    query = select(feedback_records.c.id).where(condition).order_by(feedback_records.c.id)
    return list((await conn.execute(query.limit(limit))).scalars())


async def _references(conn: AsyncConnection, ids: Sequence[int]) -> list[str]:
    query = select(feedback_records.c.reference).where(feedback_records.c.id.in_(ids))
    return sorted((await conn.execute(query)).scalars())


async def _count(conn: AsyncConnection, statement: Executable) -> int:
    return max(int((await conn.execute(statement)).rowcount), 0)


def _report(progress: Progress | None, done: int, found: int) -> None:
    if progress is not None:
        progress(done, max(found, done))


def _log_progress(done: int, found: int) -> None:
    logger.info("retention: %d of %d records", done, found, extra={"stage": "retention"})
