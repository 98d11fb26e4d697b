"""Small reads and writes around the batch commit: leases, cursors, source state, outbox, queue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ..interfaces import Cursor, OutboundReply, SendResult
from .batch import upsert
from .rows import outbound_reply
from .schema import cursors, feedback_records, incidents, leases, outbox, queue_items, sources


async def acquire_lease(
    engine: AsyncEngine, source: str, owner: str, *, ttl_s: float, now: datetime
) -> bool:
    """Take or renew the lease on ``source``; False while another live owner holds it."""
    expires_at = now + timedelta(seconds=ttl_s)
    async with engine.begin() as conn:
        statement = (
            upsert(conn, leases)
            .values(source=source, owner=owner, expires_at=expires_at)
            .on_conflict_do_update(
                index_elements=["source"],
                set_={"owner": owner, "expires_at": expires_at},
                where=or_(leases.c.owner == owner, leases.c.expires_at <= now),
            )
            .returning(leases.c.owner)
        )
        return (await conn.execute(statement)).first() is not None


async def release_lease(engine: AsyncEngine, source: str, owner: str) -> None:
    """Give up the lease on ``source`` if ``owner`` holds it."""
    async with engine.begin() as conn:
        await conn.execute(
            leases.delete().where(leases.c.source == source, leases.c.owner == owner)
        )


async def load_cursor(engine: AsyncEngine, source: str) -> tuple[Cursor | None, int | None]:
    """The stored cursor of ``source`` and its version; ``(None, None)`` before the first batch."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(cursors.c.value, cursors.c.version).where(cursors.c.source == source)
            )
        ).first()
    return (row.value, row.version) if row else (None, None)


@dataclass(frozen=True, slots=True)
class SourceState:
    """What ``status`` shows of one source."""

    name: str
    kind: str
    state: str
    last_poll_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    backoff_until: datetime | None
    fetched_total: int


async def register_sources(engine: AsyncEngine, configured: Sequence[tuple[str, str]]) -> None:
    """Make sure every configured ``(name, kind)`` has a state row."""
    async with engine.begin() as conn:
        for name, kind in configured:
            await conn.execute(
                upsert(conn, sources)
                .values(name=name, kind=kind, state="idle", consecutive_failures=0, fetched_total=0)
                .on_conflict_do_update(index_elements=["name"], set_={"kind": kind})
            )


async def record_poll(
    engine: AsyncEngine,
    source: str,
    *,
    now: datetime,
    fetched: int = 0,
    error: str | None = None,
    backoff_until: datetime | None = None,
) -> None:
    """Record the outcome of one poll: success (``error`` None) or a failure and its backoff."""
    values: dict[str, Any] = {"last_poll_at": now, "backoff_until": backoff_until}
    if error is None:
        values |= {
            "state": "ok",
            "last_success_at": now,
            "last_error": None,
            "consecutive_failures": 0,
            "fetched_total": sources.c.fetched_total + fetched,
        }
    else:
        values |= {
            "state": "backoff",
            "last_error": error,
            "consecutive_failures": sources.c.consecutive_failures + 1,
        }
    async with engine.begin() as conn:
        await conn.execute(update(sources).where(sources.c.name == source).values(**values))


async def source_states(engine: AsyncEngine) -> list[SourceState]:
    """Every source's state row, by name."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(sources).order_by(sources.c.name))).all()
    return [SourceState(**row._mapping) for row in rows]


@dataclass(frozen=True, slots=True)
class ClaimedReply:
    """An outbox row claimed for delivery: the reply, its source and its attempt number."""

    reply: OutboundReply
    source: str
    attempt: int


async def claim_due_replies(
    engine: AsyncEngine,
    *,
    now: datetime,
    limit: int,
    sources_served: Sequence[str],
    claim_ttl_s: float,
) -> list[ClaimedReply]:
    """Mark up to ``limit`` due outbox rows ``sending`` and return them.

    The row is committed as ``sending`` before delivery is attempted: sending is at most once
    per row. The claim lasts ``claim_ttl_s`` (a ``sending`` row's ``next_attempt_at`` is when
    it lapses) unless :func:`renew_reply_claims` extends it; a claim that lapses was left by
    a replica that died, and :func:`recover_interrupted_sends` takes the row back.
    """
    due = and_(
        outbox.c.state.in_(("pending", "retry")),
        outbox.c.next_attempt_at <= now,
        outbox.c.source.in_(list(sources_served)),
    )
    async with engine.begin() as conn:
        ids = select(outbox.c.id).where(due).order_by(outbox.c.next_attempt_at).limit(limit)
        if conn.dialect.name == "postgresql":
            ids = ids.with_for_update(skip_locked=True)
        claimed = await conn.execute(
            update(outbox)
            .where(outbox.c.id.in_(ids.scalar_subquery()), due)
            .values(
                state="sending",
                attempts=outbox.c.attempts + 1,
                next_attempt_at=now + timedelta(seconds=claim_ttl_s),
            )
            .returning(
                outbox.c.id, outbox.c.channel, outbox.c.payload, outbox.c.source, outbox.c.attempts
            )
        )
        rows = claimed.all()
    return [
        ClaimedReply(outbound_reply(row.id, row.channel, row.payload), row.source, row.attempts)
        for row in rows
    ]


async def renew_reply_claims(
    engine: AsyncEngine, claimed: Sequence[ClaimedReply], *, until: datetime
) -> set[str]:
    """Extend to ``until`` each claim in ``claimed`` that is still the caller's.

    A claim is still the caller's while its row is ``sending`` at the attempt it was claimed
    with; once it lapsed and another replica claimed the row again, the attempt differs.
    Returns the idempotency keys of the claims kept.
    """
    if not claimed:
        return set()
    ours = or_(
        *(
            and_(outbox.c.id == int(item.reply.idempotency_key), outbox.c.attempts == item.attempt)
            for item in claimed
        )
    )
    async with engine.begin() as conn:
        kept = await conn.execute(
            update(outbox)
            .where(outbox.c.state == "sending", ours)
            .values(next_attempt_at=until)
            .returning(outbox.c.id)
        )
        return {str(row_id) for row_id in kept.scalars().all()}


async def finish_reply(
    engine: AsyncEngine,
    reply: OutboundReply,
    result: SendResult,
    *,
    now: datetime,
    retry_at: datetime | None,
) -> None:
    """Store a delivery outcome: ``sent``, ``retry`` at ``retry_at``, or ``failed`` (kept)."""
    if result.outcome == "sent":
        values: dict[str, Any] = {
            "state": "sent",
            "sent_at": now,
            "external_id": result.external_id,
            "last_error": None,
        }
    elif result.outcome == "retry" and retry_at is not None:
        values = {"state": "retry", "next_attempt_at": retry_at, "last_error": result.reason}
    else:
        values = {"state": "failed", "last_error": result.reason}
    async with engine.begin() as conn:
        await conn.execute(
            update(outbox).where(outbox.c.id == int(reply.idempotency_key)).values(**values)
        )


async def recover_interrupted_sends(
    engine: AsyncEngine, *, resend_channels: Sequence[str], now: datetime
) -> int:
    """Take back rows whose claim lapsed while ``sending``: the replica sending them died.

    Those on ``resend_channels`` are retried at once; the others become ``unknown``. A row
    whose claim has not lapsed is left alone: a live replica (this one or another) may be
    sending it right now. Returns how many rows are retried.
    """
    lapsed = and_(outbox.c.state == "sending", outbox.c.next_attempt_at <= now)
    async with engine.begin() as conn:
        retried = await conn.execute(
            update(outbox)
            .where(lapsed, outbox.c.channel.in_(list(resend_channels)))
            .values(state="retry")
        )
        await conn.execute(update(outbox).where(lapsed).values(state="unknown"))
    return retried.rowcount


async def outbox_backlog(engine: AsyncEngine) -> dict[str, int]:
    """Outbox rows by state."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(outbox.c.state, func.count()).group_by(outbox.c.state))
        ).all()
    return {state: count for state, count in rows}


async def queue_listing(engine: AsyncEngine, *, limit: int = 500) -> list[dict[str, Any]]:
    """Queue items with their records, most urgent first (priority, then due time)."""
    columns = [
        feedback_records.c.reference,
        feedback_records.c.channel,
        feedback_records.c.source,
        feedback_records.c.external_id,
        feedback_records.c.sender_handle.label("sender"),
        feedback_records.c.sender_name,
        feedback_records.c.subject,
        feedback_records.c.text,
        feedback_records.c.language,
        feedback_records.c.category,
        queue_items.c.priority,
        queue_items.c.team,
        queue_items.c.state.label("status"),
        feedback_records.c.received_at,
        queue_items.c.due_at,
        queue_items.c.assignee,
        feedback_records.c.duplicate_of,
        feedback_records.c.incident_id,
        feedback_records.c.ack_decision,
        feedback_records.c.ack_reason,
        feedback_records.c.reasons,
        feedback_records.c.notes,
    ]
    query = (
        select(*columns)
        .join(feedback_records, feedback_records.c.id == queue_items.c.record_id)
        .order_by(queue_items.c.priority, queue_items.c.due_at, queue_items.c.id)
        .limit(limit)
    )
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in (await conn.execute(query)).all()]


async def acknowledgment_decisions(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every record's acknowledgment decision with its reason and outbox state, oldest first."""
    query = (
        select(
            feedback_records.c.reference,
            feedback_records.c.sender_handle.label("sender"),
            feedback_records.c.subject,
            feedback_records.c.ack_decision,
            feedback_records.c.ack_reason,
            outbox.c.state.label("outbox_state"),
            outbox.c.last_error,
        )
        .outerjoin(outbox, outbox.c.record_id == feedback_records.c.id)
        .order_by(feedback_records.c.id)
    )
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in (await conn.execute(query)).all()]


async def outbox_problems(engine: AsyncEngine, *, limit: int = 20) -> list[dict[str, Any]]:
    """Replies waiting for a retry, failed or of unknown outcome, newest first."""
    query = (
        select(
            outbox.c.id,
            outbox.c.source,
            outbox.c.state,
            outbox.c.attempts,
            outbox.c.next_attempt_at,
            outbox.c.last_error,
        )
        .where(outbox.c.state.in_(("retry", "failed", "unknown")))
        .order_by(outbox.c.id.desc())
        .limit(limit)
    )
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in (await conn.execute(query)).all()]


async def recent_records(engine: AsyncEngine, *, since: datetime) -> list[dict[str, Any]]:
    """Records received since ``since``, oldest first, with what deduplication keys on."""
    query = (
        select(
            feedback_records.c.reference,
            feedback_records.c.received_at,
            feedback_records.c.channel,
            feedback_records.c.sender_id,
            feedback_records.c.sender_handle,
            feedback_records.c.category,
            feedback_records.c.entities,
            feedback_records.c.text,
            feedback_records.c.duplicate_of,
            incidents.c.key.label("incident_key"),
            incidents.c.title.label("incident_title"),
        )
        .outerjoin(incidents, incidents.c.id == feedback_records.c.incident_id)
        .where(feedback_records.c.received_at >= since)
        .order_by(feedback_records.c.received_at, feedback_records.c.id)
    )
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in (await conn.execute(query)).all()]
