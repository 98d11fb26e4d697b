"""The one transaction that stores a fetched batch.

Records, their queue items, the acknowledgments to send and the source's new cursor are
written together or not at all. Records go in with ``INSERT … ON CONFLICT DO NOTHING
RETURNING``, so a re-fetched message is absorbed without aborting the batch; queue items and
outbox rows are made only for the ids that came back. The cursor moves by compare-and-set on
its version and the lease must still be ours, so a replica that lost its lease mid-batch can
neither commit nor move a cursor backwards. An edited message comes back under its external id
with a higher ``revision``: it replaces the stored record's text and labels in place.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Table, and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..errors import RetryableError
from ..interfaces import Cursor, FailedMessage, FeedbackRecord, IncidentLink
from ..queue import follow_edit, reopen_resolved_threads
from ..survey import take_answers
from .rows import outbox_row, queue_row, record_row
from .schema import (
    cursors,
    dead_letters,
    feedback_records,
    incidents,
    leases,
    outbox,
    queue_items,
    reply_log,
)

#: The first key of every sender's advisory lock (PostgreSQL): two-key advisory locks whose
#: first key is this number are acknowledgment locks, the second is the sender's hash.
_SENDER_LOCKS: Final = 0x1B0C5E4D


class LostLeaseError(RetryableError):
    """Another replica holds this source now; the batch was rolled back."""


class CursorConflictError(RetryableError):
    """The cursor moved since it was read; the batch was rolled back."""


@dataclass(frozen=True, slots=True)
class SenderLimits:
    """At most this many acknowledgments to one sender per hour and per day."""

    per_hour: int
    per_day: int


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """Everything one commit writes for a source.

    Attributes:
        source: the source's name.
        owner: this replica's lease owner id.
        records: the triaged records, in source order.
        failures: messages that become dead letters.
        cursor_version: the version of the cursor the fetch started from (``None``: no cursor).
        next_cursor: the cursor after the batch.
        sla_s: seconds to due time, by priority.
        limits: per-sender acknowledgment limits.
    """

    source: str
    owner: str
    records: Sequence[FeedbackRecord]
    failures: Sequence[FailedMessage]
    cursor_version: int | None
    next_cursor: Cursor
    sla_s: Mapping[str, int]
    limits: SenderLimits


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What a commit did, for logs and metrics."""

    stored: int
    absorbed: int
    duplicates: int
    replies_queued: int
    dead_letters: int
    stored_references: tuple[str, ...] = ()


async def commit_batch(engine: AsyncEngine, plan: BatchPlan, *, now: datetime) -> BatchOutcome:
    """Store ``plan`` in one transaction.

    Raises:
        LostLeaseError: the source's lease is no longer ``plan.owner``'s.
        CursorConflictError: the cursor's version is not ``plan.cursor_version`` any more.
    """
    async with engine.begin() as conn:
        await _check_lease(conn, plan.source, plan.owner, now)
        ids = await _insert_records(conn, plan.records, now)
        new = [
            (ids[r.message.external_id], r)
            for r in _unique(plan.records)
            if r.message.external_id in ids
        ]
        duplicates = await _mark_duplicates(conn, plan.source, new)
        duplicates.update(await _link_repeats(conn, new))
        await _link_incidents(conn, new, now)
        # Answers to a resolution survey join their item (reopening it if "not solved").
        answers = await take_answers(conn, new, sla_s=plan.sla_s, now=now)
        new_messages = [(record_id, r) for record_id, r in new if record_id not in answers]
        originals = [(rid, r) for rid, r in new_messages if rid not in duplicates]
        await _insert_many(
            conn,
            queue_items,
            [
                queue_row(record_id, r, now=now, sla_s=plan.sla_s[r.classification.priority])
                for record_id, r in originals
            ],
        )
        await reopen_resolved_threads(conn, new_messages, sla_s=plan.sla_s, now=now)
        await _apply_edits(conn, plan, now)
        queued = await _queue_replies(conn, originals, plan.limits, now)
        dead = await _insert_dead_letters(conn, plan.source, plan.failures, now)
        await _move_cursor(conn, plan.source, plan.cursor_version, plan.next_cursor, now)
    stored = tuple(record.reference for _, record in new)
    return BatchOutcome(
        len(new), len(plan.records) - len(new), len(duplicates), queued, dead, stored
    )


def upsert(conn: AsyncConnection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT, which offers ``on_conflict_do_nothing`` / ``_do_update``."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _unique(records: Sequence[FeedbackRecord]) -> list[FeedbackRecord]:
    # The same message twice in one batch (one mail in two folders of one source).
    return list({record.message.external_id: record for record in reversed(records)}.values())[::-1]


async def _check_lease(conn: AsyncConnection, source: str, owner: str, now: datetime) -> None:
    result = await conn.execute(
        select(leases.c.owner).where(
            leases.c.source == source, leases.c.owner == owner, leases.c.expires_at > now
        )
    )
    if result.first() is None:
        raise LostLeaseError(f"lease on source {source!r} is no longer held by {owner}")


async def _insert_records(
    conn: AsyncConnection, records: Sequence[FeedbackRecord], now: datetime
) -> dict[str, int]:
    if not records:
        return {}
    statement = (
        upsert(conn, feedback_records)
        .on_conflict_do_nothing(index_elements=["source", "external_id"])
        .returning(feedback_records.c.id, feedback_records.c.external_id)
    )
    rows = [record_row(record, now=now) for record in _unique(records)]
    result = await conn.execute(statement, rows)
    return {external_id: record_id for record_id, external_id in result.all()}


#: What an edit replaces: the message's content and everything triaged from it. The record
#: keeps its reference, times, sender, thread, acknowledgment, repeats and incident.
_EDITED_COLUMNS: Final = (
    "subject",
    "text",
    "full_text",
    "meta",
    "attachments",
    "notes",
    "language",
    "category",
    "priority",
    "team",
    "reasons",
    "redactions",
    "entities",
    "revision",
)


async def _apply_edits(conn: AsyncConnection, plan: BatchPlan, now: datetime) -> None:
    """Replace stored records by the later revisions of their messages in ``plan``.

    The unique key absorbed the edited message as a re-fetch; here its record takes the
    edited text and the labels triaged from it, and its queue item logs the edit (rising in
    priority if the edit calls for it, see :func:`~inbox_daemon.queue.follow_edit`). No second
    record, outbox row or thread claim: the acknowledgment decided for the message stands.
    An equal or lower revision (a re-fetch, an edit already applied) changes nothing.
    """
    latest: dict[str, FeedbackRecord] = {}
    for record in plan.records:
        known = latest.get(record.message.external_id)
        if record.message.revision > (known.message.revision if known else 0):
            latest[record.message.external_id] = record
    if not latest:
        return
    stored = await conn.execute(
        select(feedback_records.c.id, feedback_records.c.external_id).where(
            feedback_records.c.source == plan.source,
            feedback_records.c.external_id.in_(latest),
        )
    )
    for record_id, external_id in stored.all():
        record = latest[external_id]
        row = record_row(record, now=now)
        edited = await conn.execute(
            update(feedback_records)
            .where(
                feedback_records.c.id == record_id,
                feedback_records.c.revision < record.message.revision,
            )
            .values({column: row[column] for column in _EDITED_COLUMNS})
        )
        if edited.rowcount == 1:
            priority = record.classification.priority
            await follow_edit(conn, record_id, priority=priority, sla_s=plan.sla_s, now=now)


async def _mark_duplicates(
    conn: AsyncConnection, source: str, new: Sequence[tuple[int, FeedbackRecord]]
) -> dict[int, int]:
    """Level 2: the same message already stored through another source (a second mailbox)."""
    by_key = {(r.message.channel, r.message.external_id): record_id for record_id, r in new}
    if not by_key:
        return {}
    earlier = (
        select(
            feedback_records.c.id,
            feedback_records.c.channel,
            feedback_records.c.external_id,
            feedback_records.c.reference,
            feedback_records.c.source,
        )
        .where(
            feedback_records.c.source != source,
            feedback_records.c.external_id.in_([key[1] for key in by_key]),
        )
        .order_by(feedback_records.c.id)
    )
    duplicates: dict[int, int] = {}
    for original_id, channel, external_id, reference, other in (await conn.execute(earlier)).all():
        record_id = by_key.get((channel, external_id))
        if record_id is not None and record_id not in duplicates:
            duplicates[record_id] = original_id
            await _set_ack(
                conn,
                record_id,
                "withheld",
                f"duplicate of {reference} (the same message, received via {other})",
                "duplicate",
                duplicate_of=original_id,
            )
    return duplicates


async def _link_repeats(
    conn: AsyncConnection, new: Sequence[tuple[int, FeedbackRecord]]
) -> dict[int, int]:
    """Levels 3 and 5: a record that repeats an earlier one points at it, by reference."""
    repeats = {record_id: r.duplicate_of for record_id, r in new if r.duplicate_of}
    if not repeats:
        return {}
    rows = await conn.execute(
        select(feedback_records.c.reference, feedback_records.c.id).where(
            feedback_records.c.reference.in_(set(repeats.values()))
        )
    )
    ids = {reference: original_id for reference, original_id in rows.all()}
    linked = {record_id: ids[ref] for record_id, ref in repeats.items() if ref in ids}
    if linked:
        await conn.execute(
            update(feedback_records)
            .where(feedback_records.c.id == bindparam("record_id"))
            .values(duplicate_of=bindparam("original_id")),
            [{"record_id": rid, "original_id": oid} for rid, oid in linked.items()],
        )
    return linked


async def _link_incidents(
    conn: AsyncConnection, new: Sequence[tuple[int, FeedbackRecord]], now: datetime
) -> None:
    """Level 4: make or extend each incident, and link its reports, earlier ones included."""
    by_key: dict[str, list[tuple[int, FeedbackRecord]]] = defaultdict(list)
    for record_id, record in new:
        if record.incident is not None:
            by_key[record.incident.key].append((record_id, record))
    for reports in by_key.values():
        times = [record.message.received_at for _, record in reports]
        link = reports[0][1].incident
        assert link is not None  # noqa: S101 - grouped by incident
        incident_id = await upsert_incident(
            conn,
            link,
            category=reports[0][1].classification.category,
            first_seen=min(times),
            last_seen=max(times),
        )
        earlier = {ref for _, r in reports if r.incident for ref in r.incident.members}
        members = or_(
            feedback_records.c.id.in_([record_id for record_id, _ in reports]),
            feedback_records.c.reference.in_(earlier),
        )
        await conn.execute(update(feedback_records).where(members).values(incident_id=incident_id))
        await count_reports(conn, incident_id)


async def upsert_incident(
    conn: AsyncConnection,
    link: IncidentLink,
    *,
    category: str,
    first_seen: datetime,
    last_seen: datetime,
) -> int:
    """The id of the incident ``link`` names, made or extended to ``last_seen``."""
    statement = (
        upsert(conn, incidents)
        .values(
            title=link.title,
            key=link.key,
            category=category,
            first_seen=first_seen,
            last_seen=last_seen,
            report_count=0,
            status="open",
        )
        .on_conflict_do_update(
            index_elements=["key"],
            set_={
                "last_seen": case(
                    (incidents.c.last_seen < last_seen, last_seen), else_=incidents.c.last_seen
                )
            },
        )
        .returning(incidents.c.id)
    )
    incident_id: int = (await conn.execute(statement)).scalar_one()
    return incident_id


async def count_reports(conn: AsyncConnection, incident_id: int) -> None:
    """Set the incident's report count from the records linked to it."""
    count = select(func.count()).where(feedback_records.c.incident_id == incident_id)
    await conn.execute(
        update(incidents)
        .where(incidents.c.id == incident_id)
        .values(report_count=count.scalar_subquery())
    )


async def _queue_replies(
    conn: AsyncConnection,
    originals: Sequence[tuple[int, FeedbackRecord]],
    limits: SenderLimits,
    now: datetime,
) -> int:
    """Make the outbox rows of the records to acknowledge, in order, within the limits.

    Each sender's acknowledgments of the last hour and day, and the threads already
    acknowledged, are read once for the batch, under a lock per sender so that replicas
    storing mail of one sender from two sources count each other's acknowledgments; the
    thread claim itself is a unique index, so a racing replica cannot acknowledge the same
    thread too.
    """
    wanted = [(rid, r) for rid, r in originals if r.ack.send and r.reply is not None]
    if not wanted:
        return 0
    await _lock_senders(conn, wanted)
    usage = await _recent_acknowledgments(conn, wanted, now)
    claimed = await _claimed_threads(conn, wanted)
    claims: list[tuple[int, FeedbackRecord]] = []
    withheld: list[tuple[int, str, str]] = []
    for record_id, record in wanted:
        sender = (record.message.channel, record.message.sender.id)
        thread = (record.message.channel, record.message.thread_key)
        hour, day = usage.get(sender, (0, 0))
        if hour >= limits.per_hour or day >= limits.per_day:
            limit, label = (
                (limits.per_hour, "hour") if hour >= limits.per_hour else (limits.per_day, "day")
            )
            withheld.append(
                (
                    record_id,
                    f"sender limit reached: {limit} acknowledgments per {label}",
                    "sender limit",
                )
            )
        elif thread in claimed:
            withheld.append((record_id, _THREAD_ACKNOWLEDGED, "thread already acknowledged"))
        else:
            claimed.add(thread)
            usage[sender] = (hour + 1, day + 1)
            claims.append((record_id, record))
    won = await _claim_threads(conn, claims, now)
    withheld += [
        (rid, _THREAD_ACKNOWLEDGED, "thread already acknowledged")
        for rid, _ in claims
        if rid not in won
    ]
    await _withhold(conn, withheld)
    rows = [outbox_row(rid, r, r.reply, now=now) for rid, r in claims if rid in won and r.reply]
    await _insert_many(conn, outbox, rows)
    return len(rows)


_THREAD_ACKNOWLEDGED = "this conversation was already acknowledged"


async def _lock_senders(
    conn: AsyncConnection, wanted: Sequence[tuple[int, FeedbackRecord]]
) -> None:
    """Hold each sender's acknowledgment lock until the transaction ends (PostgreSQL).

    Under READ COMMITTED two batches would each read a sender's count before the other
    commits and both acknowledge past the limit. The locks are taken in one order, so two
    batches never wait for each other in a circle (two senders sharing a hash only share a
    lock). SQLite needs none: ``BEGIN IMMEDIATE`` already runs one writer at a time.
    """
    if conn.dialect.name != "postgresql":
        return
    senders = sorted({f"{r.message.channel}:{r.message.sender.id}" for _, r in wanted})
    for sender in senders:
        await conn.execute(select(func.pg_advisory_xact_lock(_SENDER_LOCKS, func.hashtext(sender))))


async def _recent_acknowledgments(
    conn: AsyncConnection, wanted: Sequence[tuple[int, FeedbackRecord]], now: datetime
) -> dict[tuple[str, str], tuple[int, int]]:
    senders = {r.message.sender.id for _, r in wanted}
    last_hour = case((reply_log.c.created_at > now - timedelta(hours=1), 1), else_=0)
    rows = await conn.execute(
        select(reply_log.c.channel, reply_log.c.sender_id, func.sum(last_hour), func.count())
        .where(reply_log.c.sender_id.in_(senders), reply_log.c.created_at > now - timedelta(days=1))
        .group_by(reply_log.c.channel, reply_log.c.sender_id)
    )
    return {
        (channel, sender): (int(hour or 0), int(day)) for channel, sender, hour, day in rows.all()
    }


async def _claimed_threads(
    conn: AsyncConnection, wanted: Sequence[tuple[int, FeedbackRecord]]
) -> set[tuple[str, str]]:
    threads = {r.message.thread_key for _, r in wanted}
    rows = await conn.execute(
        select(reply_log.c.channel, reply_log.c.thread_key).where(
            reply_log.c.thread_key.in_(threads)
        )
    )
    return {(channel, thread) for channel, thread in rows.all()}


async def _claim_threads(
    conn: AsyncConnection, claims: Sequence[tuple[int, FeedbackRecord]], now: datetime
) -> set[int]:
    """Record the one acknowledgment of each thread; returns the record ids that got it."""
    if not claims:
        return set()
    rows = [
        {
            "channel": r.message.channel,
            "thread_key": r.message.thread_key,
            "sender_id": r.message.sender.id,
            "record_id": rid,
            "created_at": now,
        }
        for rid, r in claims
    ]
    statement = (
        upsert(conn, reply_log)
        .on_conflict_do_nothing(index_elements=["channel", "thread_key"])
        .returning(reply_log.c.record_id)
    )
    return set((await conn.execute(statement, rows)).scalars().all())


async def _withhold(conn: AsyncConnection, withheld: Sequence[tuple[int, str, str]]) -> None:
    if not withheld:
        return
    statement = (
        update(feedback_records)
        .where(feedback_records.c.id == bindparam("record_id"))
        .values(ack_decision="withheld", ack_reason=bindparam("reason"), ack_code=bindparam("code"))
    )
    await conn.execute(
        statement,
        [{"record_id": rid, "reason": reason, "code": code} for rid, reason, code in withheld],
    )


async def _set_ack(
    conn: AsyncConnection,
    record_id: int,
    action: str,
    reason: str,
    code: str,
    *,
    duplicate_of: int | None = None,
) -> None:
    values: dict[str, Any] = {"ack_decision": action, "ack_reason": reason, "ack_code": code}
    if duplicate_of is not None:
        values["duplicate_of"] = duplicate_of
    await conn.execute(
        update(feedback_records).where(feedback_records.c.id == record_id).values(**values)
    )


async def _insert_many(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(table), list(rows))


async def _insert_dead_letters(
    conn: AsyncConnection, source: str, failures: Sequence[FailedMessage], now: datetime
) -> int:
    if not failures:
        return 0
    rows = [
        {
            "source": source,
            "external_id": f.external_id,
            "raw_ref": f.raw_ref,
            "error": f.error,
            "size_bytes": f.size_bytes,
            "replayed": False,
            "created_at": now,
        }
        for f in failures
    ]
    statement = (
        upsert(conn, dead_letters)
        .on_conflict_do_nothing(index_elements=["source", "external_id"])
        .returning(dead_letters.c.id)
    )
    return len((await conn.execute(statement, rows)).all())


async def _move_cursor(
    conn: AsyncConnection, source: str, version: int | None, value: Cursor, now: datetime
) -> None:
    if version is None:
        statement = (
            upsert(conn, cursors)
            .values(source=source, value=dict(value), version=1, updated_at=now)
            .on_conflict_do_nothing(index_elements=["source"])
            .returning(cursors.c.version)
        )
        moved = (await conn.execute(statement)).first() is not None
    else:
        result = await conn.execute(
            update(cursors)
            .where(and_(cursors.c.source == source, cursors.c.version == version))
            .values(value=dict(value), version=version + 1, updated_at=now)
        )
        moved = result.rowcount == 1
    if not moved:
        raise CursorConflictError(f"cursor of source {source!r} moved under this batch")
