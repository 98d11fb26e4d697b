"""The batch commit: one transaction, absorbed re-fetches, guarded cursor and lease."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from inbox_daemon.interfaces import FailedMessage, SendResult
from inbox_daemon.storage.batch import (
    BatchPlan,
    CursorConflictError,
    LostLeaseError,
    SenderLimits,
    commit_batch,
)
from inbox_daemon.storage.migrate import NotMigratedError, ensure_migrated
from inbox_daemon.storage.repository import (
    acquire_lease,
    claim_due_replies,
    finish_reply,
    load_cursor,
    recover_interrupted_sends,
)
from inbox_daemon.storage.schema import (
    dead_letters,
    feedback_records,
    metadata,
    outbox,
    queue_items,
    reply_log,
)
from tests.factories import NOW, message, record

SLA = {"P1": 900, "P2": 14400, "P3": 86400, "P4": 259200}
OWNER = "replica-a"


def plan(records, *, version=None, cursor=None, failures=(), source="support-mail", limits=None):
    return BatchPlan(
        source=source,
        owner=OWNER,
        records=records,
        failures=failures,
        cursor_version=version,
        next_cursor=cursor or {"folders": {"INBOX": {"uidvalidity": 1, "last_uid": len(records)}}},
        sla_s=SLA,
        limits=limits or SenderLimits(per_hour=3, per_day=10),
    )


async def count(engine: AsyncEngine, table) -> int:
    async with engine.connect() as conn:
        return (await conn.scalar(select(func.count()).select_from(table))) or 0


async def claim(engine: AsyncEngine, *, now=NOW, limit=10):
    return await claim_due_replies(
        engine, now=now, limit=limit, sources_served=["support-mail"], claim_ttl_s=60
    )


async def leased(engine: AsyncEngine, source: str = "support-mail") -> None:
    assert await acquire_lease(engine, source, OWNER, ttl_s=60, now=NOW)


async def test_migrations_create_exactly_the_schema_of_the_code(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert diff == []
    await ensure_migrated(engine)


async def test_unmigrated_database_is_refused(database: str, tmp_path) -> None:
    from inbox_daemon.storage.engine import create_engine, database_url

    fresh = create_engine(database_url(database, tmp_path))
    try:
        with pytest.raises(NotMigratedError, match="inbox-daemon migrate"):
            await ensure_migrated(fresh)
    finally:
        await fresh.dispose()


async def test_batch_stores_records_queue_items_replies_and_cursor(engine: AsyncEngine) -> None:
    await leased(engine)
    records = [
        record(
            message(
                f"m{i}@example.net",
                thread_key=f"m{i}@example.net",
                sender=message().sender.__class__(
                    "email", f"u{i}@example.net", f"u{i}@example.net"
                ),
            )
        )
        for i in range(3)
    ]
    outcome = await commit_batch(engine, plan(records), now=NOW)
    assert (outcome.stored, outcome.absorbed, outcome.replies_queued) == (3, 0, 3)
    assert await count(engine, feedback_records) == 3
    assert await count(engine, queue_items) == 3
    assert await count(engine, outbox) == 3
    cursor, version = await load_cursor(engine, "support-mail")
    assert cursor == {"folders": {"INBOX": {"uidvalidity": 1, "last_uid": 3}}}
    assert version == 1


async def test_refetched_messages_are_absorbed_without_second_reply(engine: AsyncEngine) -> None:
    await leased(engine)
    first = [record(message("a@example.net"))]
    await commit_batch(engine, plan(first), now=NOW)
    again = [record(message("a@example.net")), record(message("b@example.net", thread_key="b"))]
    outcome = await commit_batch(engine, plan(again, version=1), now=NOW)
    assert (outcome.stored, outcome.absorbed) == (1, 1)
    assert await count(engine, feedback_records) == 2
    async with engine.connect() as conn:
        replied = (
            (
                await conn.execute(
                    select(feedback_records.c.external_id).join(
                        outbox, outbox.c.record_id == feedback_records.c.id
                    )
                )
            )
            .scalars()
            .all()
        )
    assert sorted(replied) == ["a@example.net", "b@example.net"]  # a once, not twice


async def test_same_message_twice_in_one_batch_is_stored_once(engine: AsyncEngine) -> None:
    await leased(engine)
    outcome = await commit_batch(engine, plan([record(), record()]), now=NOW)
    assert outcome.stored == 1
    assert await count(engine, outbox) == 1


async def test_stale_cursor_version_rolls_back_the_whole_batch(engine: AsyncEngine) -> None:
    await leased(engine)
    await commit_batch(engine, plan([record(message("a@example.net"))]), now=NOW)
    with pytest.raises(CursorConflictError):
        await commit_batch(engine, plan([record(message("b@example.net"))], version=7), now=NOW)
    with pytest.raises(CursorConflictError):  # a second "first batch" races the first one
        await commit_batch(engine, plan([record(message("c@example.net"))]), now=NOW)
    assert await count(engine, feedback_records) == 1
    assert await count(engine, queue_items) == 1
    assert (await load_cursor(engine, "support-mail"))[1] == 1


async def test_lost_lease_rolls_back_the_whole_batch(engine: AsyncEngine) -> None:
    assert await acquire_lease(engine, "support-mail", "replica-b", ttl_s=60, now=NOW)
    assert not await acquire_lease(engine, "support-mail", OWNER, ttl_s=60, now=NOW)
    with pytest.raises(LostLeaseError):
        await commit_batch(engine, plan([record()]), now=NOW)
    assert await count(engine, feedback_records) == 0
    later = NOW + timedelta(seconds=61)
    assert await acquire_lease(engine, "support-mail", OWNER, ttl_s=60, now=later)


async def test_same_message_id_through_second_mailbox_is_a_silent_duplicate(
    engine: AsyncEngine,
) -> None:
    await leased(engine, "support-mail")
    await leased(engine, "sales-mail")
    await commit_batch(engine, plan([record(message("x@example.net"))]), now=NOW)
    copy = record(message("x@example.net"), source="sales-mail")
    outcome = await commit_batch(engine, plan([copy], source="sales-mail"), now=NOW)
    assert (outcome.stored, outcome.duplicates, outcome.replies_queued) == (1, 1, 0)
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(feedback_records).where(feedback_records.c.source == "sales-mail")
            )
        ).one()
    assert row.duplicate_of is not None
    assert row.ack_decision == "withheld"
    assert "duplicate of FB-" in row.ack_reason
    assert await count(engine, queue_items) == 1


async def test_sender_limit_withholds_further_acknowledgments(engine: AsyncEngine) -> None:
    await leased(engine)
    records = [record(message(f"t{i}@example.net", thread_key=f"t{i}")) for i in range(3)]
    outcome = await commit_batch(engine, plan(records, limits=SenderLimits(2, 10)), now=NOW)
    assert outcome.replies_queued == 2
    async with engine.connect() as conn:
        reasons = (
            (
                await conn.execute(
                    select(feedback_records.c.ack_reason).where(
                        feedback_records.c.ack_decision == "withheld"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert reasons == ["sender limit reached: 2 acknowledgments per hour"]


async def test_failed_messages_become_dead_letters_and_cursor_moves(engine: AsyncEngine) -> None:
    await leased(engine)
    failure = FailedMessage("imap:INBOX;uid=9", "INBOX;uidvalidity=1;uid=9", "empty message", 0)
    outcome = await commit_batch(engine, plan([record()], failures=[failure]), now=NOW)
    assert outcome.dead_letters == 1
    assert await count(engine, dead_letters) == 1
    assert (await load_cursor(engine, "support-mail"))[1] == 1


async def test_concurrent_claims_never_share_a_reply(engine: AsyncEngine) -> None:
    await leased(engine)
    records = [
        record(
            message(
                f"c{i}@example.net",
                thread_key=f"c{i}",
                sender=message().sender.__class__("email", f"c{i}@x.net", f"c{i}@x.net"),
            )
        )
        for i in range(20)
    ]
    await commit_batch(engine, plan(records), now=NOW)
    claims = await asyncio.gather(*[claim(engine, limit=7) for _ in range(4)])
    keys = [claimed.reply.idempotency_key for batch in claims for claimed in batch]
    assert len(keys) == 20
    assert len(set(keys)) == 20


async def test_reply_outcomes_are_stored(engine: AsyncEngine) -> None:
    await leased(engine)
    records = [record(message(f"o{i}@example.net", thread_key=f"o{i}")) for i in range(3)]
    await commit_batch(engine, plan(records), now=NOW)
    claimed = await claim(engine)
    results = [
        SendResult.sent("<ack-1@example.com>"),
        SendResult.retry("451 busy"),
        SendResult.failed("550 no such user"),
    ]
    for item, result in zip(claimed, results, strict=True):
        retry_at = NOW + timedelta(minutes=1) if result.outcome == "retry" else None
        await finish_reply(engine, item.reply, result, now=NOW, retry_at=retry_at)
    async with engine.connect() as conn:
        states = sorted((await conn.execute(select(outbox.c.state, outbox.c.last_error))).all())
    assert states == [("failed", "550 no such user"), ("retry", "451 busy"), ("sent", None)]
    assert await claim(engine) == []
    due = await claim(engine, now=NOW + timedelta(minutes=2))
    assert [item.attempt for item in due] == [2]


async def test_interrupted_email_sends_are_retried_others_become_unknown(
    engine: AsyncEngine,
) -> None:
    await leased(engine)
    await commit_batch(engine, plan([record()]), now=NOW)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO reply_log (channel, thread_key, sender_id, record_id,"
                " created_at) SELECT 'x', 'dm', 'u', id, created_at FROM outbox"
            )
        )
        await conn.execute(
            outbox.insert().from_select(
                [c.name for c in outbox.c if c.name != "id"],
                select(
                    *[
                        outbox.c[c.name] if c.name != "channel" else text("'twitter'")
                        for c in outbox.c
                        if c.name != "id"
                    ]
                ),
            )
        )
        await conn.execute(outbox.update().values(state="sending"))
    assert await recover_interrupted_sends(engine, resend_channels=["email"], now=NOW) == 1
    async with engine.connect() as conn:
        states = dict((await conn.execute(select(outbox.c.channel, outbox.c.state))).all())
    assert states == {"email": "retry", "twitter": "unknown"}
    assert await count(engine, reply_log) == 2
