"""An edited message updates its stored record in place: never a second record or reply.

Every test runs on SQLite and, when INBOX_TEST_PG_URL is set, on PostgreSQL.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from inbox_daemon.interfaces import Classification, FeedbackRecord
from inbox_daemon.queue import claim, resolve, show_item
from inbox_daemon.storage.batch import BatchOutcome, BatchPlan, SenderLimits, commit_batch
from inbox_daemon.storage.repository import acquire_lease, load_cursor
from inbox_daemon.storage.schema import feedback_records, outbox, queue_items, reply_log
from tests.factories import NOW, message, record

SLA = {"P1": 900, "P2": 14400, "P3": 86400, "P4": 259200}
SOURCE, OWNER = "tg-bot", "replica-a"
EDITED_AT = 1_795_000_000  # the edit's Unix time: the revision Telegram messages carry
LATER = NOW + timedelta(minutes=5)


def posted(
    text: str = "My BTC withdrawal has been pending for two days.",
    *,
    revision: int = 0,
    labels: Classification | None = None,
    **fields: Any,
) -> FeedbackRecord:
    """A triaged Telegram message, at ``revision``, with the labels its text got."""
    msg = message(
        "-1000000000900:41",
        channel="telegram",
        subject="",
        text=text,
        full_text=text,
        thread_key="-1000000000900:41",
        headers={},
        revision=revision,
    )
    labels = labels or Classification("deposit_withdrawal", "P3", "finance", ("rule slow",))
    return replace(record(msg, source=SOURCE), classification=labels, **fields)


def edit(text: str, *, revision: int = EDITED_AT, **fields: Any) -> FeedbackRecord:
    """The same message edited: a new record triaged from the new text (a new reference)."""
    return posted(text, revision=revision, **fields)


URGENT = Classification(
    "account_security", "P1", "risk_control", ("rule account_takeover: 'hacked'",)
)


async def store(engine: AsyncEngine, *records: FeedbackRecord, now=NOW) -> BatchOutcome:
    """Commit ``records`` as the daemon does: one batch under the source's lease."""
    assert await acquire_lease(engine, SOURCE, OWNER, ttl_s=3600, now=now)
    _, version = await load_cursor(engine, SOURCE)
    plan = BatchPlan(SOURCE, OWNER, records, (), version, {"pts": 1}, SLA, SenderLimits(9, 9))
    return await commit_batch(engine, plan, now=now)


async def stored_row(engine: AsyncEngine) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(feedback_records))).one()


async def counts(engine: AsyncEngine) -> tuple[int, ...]:
    async with engine.connect() as conn:
        return tuple(
            [
                (await conn.scalar(select(func.count()).select_from(table))) or 0
                for table in (feedback_records, queue_items, outbox, reply_log)
            ]
        )


async def test_a_later_revision_replaces_the_text_and_labels_and_is_logged(
    engine: AsyncEngine,
) -> None:
    first = posted()
    await store(engine, first)
    assert await counts(engine) == (1, 1, 1, 1)
    newer = edit(
        "My account was hacked, seed [REDACTED:seed_phrase] leaked, tx 0xabc123",
        labels=URGENT,
        language="de",
        redactions={"seed_phrase": 1},
        entities={"tx_hash": ("0xabc123",)},
    )
    outcome = await store(engine, newer, now=LATER)
    assert (outcome.stored, outcome.replies_queued) == (0, 0)
    assert await counts(engine) == (1, 1, 1, 1)  # no second record, reply or thread claim
    row = await stored_row(engine)
    assert row.reference == first.reference and row.received_at == NOW
    assert row.text == row.full_text == newer.message.text
    assert (row.language, row.category, row.priority, row.team) == (
        "de",
        "account_security",
        "P1",
        "risk_control",
    )
    assert row.reasons == ["rule account_takeover: 'hacked'"]
    assert row.redactions == {"seed_phrase": 1}
    assert row.entities == {"tx_hash": ["0xabc123"]}
    assert row.revision == EDITED_AT
    assert row.ack_decision == "send"  # the acknowledgment decided for the message stays
    detail = await show_item(engine, first.reference, now=LATER)
    assert (detail.item.priority, detail.item.status, detail.item.team) == (
        "P1",
        "escalated",
        "finance",
    )
    assert detail.item.due_at == LATER + timedelta(seconds=SLA["P1"])
    [edited] = [event for event in detail.history if event.action == "edited"]
    assert (edited.from_state, edited.to_state, edited.at) == ("new", "escalated", LATER)
    assert "P3 -> P1" in edited.detail


async def test_an_equal_or_older_revision_changes_nothing(engine: AsyncEngine) -> None:
    await store(engine, edit("the edited words", revision=EDITED_AT))
    before = await stored_row(engine)
    for stale in (EDITED_AT, EDITED_AT - 60, 0):
        outcome = await store(engine, edit("older words", revision=stale, labels=URGENT))
        assert (outcome.stored, outcome.absorbed) == (0, 1)
    assert await stored_row(engine) == before
    assert await counts(engine) == (1, 1, 1, 1)
    detail = await show_item(engine, before.reference, now=LATER)
    assert detail.history == ()
    assert detail.item.priority == "P3"


async def test_an_edit_never_lowers_the_item_nor_takes_it_from_its_holder(
    engine: AsyncEngine,
) -> None:
    first = posted("hacked! someone is withdrawing everything", labels=URGENT)
    await store(engine, first)
    await claim(engine, first.reference, "alice", claim_timeout_s=1800, now=NOW)
    calmer = Classification("other", "P4", "customer_service", ("no rule matched",))
    await store(engine, edit("never mind, it was me", labels=calmer), now=LATER)
    row = await stored_row(engine)
    assert (row.text, row.priority) == ("never mind, it was me", "P4")
    detail = await show_item(engine, first.reference, now=LATER)
    assert (detail.item.priority, detail.item.status, detail.item.assignee) == (
        "P1",
        "claimed",
        "alice",
    )
    assert detail.history[-1].action == "edited"
    assert detail.history[-1].from_state == detail.history[-1].to_state == "claimed"


async def test_an_edit_of_a_resolved_item_is_logged_without_reopening_it(
    engine: AsyncEngine,
) -> None:
    first = posted()
    await store(engine, first)
    await resolve(engine, first.reference, "bob", note="answered in chat", now=NOW)
    await store(engine, edit("withdrawal still pending, hacked?", labels=URGENT), now=LATER)
    assert (await stored_row(engine)).text == "withdrawal still pending, hacked?"
    detail = await show_item(engine, first.reference, now=LATER)
    assert (detail.item.status, detail.item.priority) == ("resolved", "P3")
    assert [event.action for event in detail.history] == ["resolve", "edited"]


async def test_a_message_and_its_edit_in_one_batch_store_the_edit_once(
    engine: AsyncEngine,
) -> None:
    outcome = await store(engine, posted("draft"), edit("final words", labels=URGENT))
    assert (outcome.stored, outcome.replies_queued) == (1, 1)
    assert await counts(engine) == (1, 1, 1, 1)
    row = await stored_row(engine)
    assert (row.text, row.priority, row.revision) == ("final words", "P1", EDITED_AT)


async def test_an_edit_seen_before_its_message_is_stored_as_a_new_record(
    engine: AsyncEngine,
) -> None:
    outcome = await store(engine, edit("final words"))
    assert (outcome.stored, outcome.replies_queued) == (1, 1)
    row = await stored_row(engine)
    assert (row.text, row.revision) == ("final words", EDITED_AT)
    assert (await show_item(engine, row.reference)).history == ()
