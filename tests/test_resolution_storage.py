"""Resolution notices and survey answers in the database (SQLite, and PostgreSQL when set)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from importlib.resources import files
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from inbox_daemon.interfaces import AckDecision, Identity
from inbox_daemon.queue import ConflictError, InvalidInputError, resolve, show_item
from inbox_daemon.resolution import NoticeTemplates, resolve_with_reply
from inbox_daemon.storage.schema import outbox, queue_items, reply_log, resolution_notices
from tests.factories import NOW, message, record
from tests.test_queue import feedback, ingest

pytestmark = pytest.mark.postgres

LOOP = "inbox-daemon@example.com"


@pytest.fixture(scope="module")
def templates() -> NoticeTemplates:
    folder = Path(str(files("inbox_daemon.bundled_config") / "templates" / "resolution"))
    return NoticeTemplates(folder, "https://support.example.com/new?ref={reference}")


async def notices(engine: AsyncEngine) -> list[tuple[bool, str | None, int | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                resolution_notices.c.survey,
                resolution_notices.c.verdict,
                resolution_notices.c.rating,
            ).order_by(resolution_notices.c.id)
        )
        return [tuple(row) for row in rows.all()]


async def test_a_notice_is_an_outbox_row_that_takes_the_thread(
    engine: AsyncEngine, templates: NoticeTemplates
) -> None:
    first = replace(feedback(1), language="es")
    (ref,) = await ingest(engine, replace(first, ack=replace(first.ack, action="withheld")))
    await resolve_with_reply(
        engine, ref, "maya", reply="Ya está.", templates=templates, loop_marker=LOOP, now=NOW
    )
    async with engine.connect() as conn:
        payload = await conn.scalar(select(outbox.c.payload))
        threads = (await conn.execute(select(reply_log.c.thread_key))).scalars().all()
    assert payload["in_reply_to"] == "m1@example.net"
    assert payload["subject"] == f"Re: Problem 1 [{ref}]"
    assert "Ya está." in payload["text"] and "¿Se ha resuelto su problema?" in payload["text"]
    assert threads == ["thread-1"]  # a reply to the notice is never acknowledged
    detail = await show_item(engine, ref, now=NOW)
    assert detail.acknowledgment.outbox_state is None  # the notice is not the acknowledgment


async def test_one_survey_per_person_per_week(
    engine: AsyncEngine, templates: NoticeTemplates
) -> None:
    refs = await ingest(engine, feedback(1), feedback(2), feedback(3))
    for ref, days in zip(refs, (0, 3, 8), strict=True):
        await resolve_with_reply(
            engine,
            ref,
            "maya",
            reply="Done.",
            templates=templates,
            loop_marker=LOOP,
            now=NOW + timedelta(days=days),
        )
    assert [survey for survey, _, _ in await notices(engine)] == [True, False, True]


async def test_a_silent_or_refused_resolve_sends_nothing(
    engine: AsyncEngine, templates: NoticeTemplates
) -> None:
    first, second = await ingest(engine, feedback(1), feedback(2))
    await resolve(engine, first, "maya", now=NOW)
    with pytest.raises(ConflictError):
        await resolve_with_reply(
            engine, first, "noor", reply="Hi", templates=templates, loop_marker=LOOP, now=NOW
        )
    with pytest.raises(InvalidInputError, match="reply"):
        await resolve_with_reply(
            engine, second, "noor", reply="  ", templates=templates, loop_marker=LOOP, now=NOW
        )
    async with engine.connect() as conn:
        assert (await conn.execute(select(outbox.c.id).where(outbox.c.id > 2))).first() is None
    assert await notices(engine) == []


async def test_answers_confirm_or_reopen_and_are_never_acknowledged(
    engine: AsyncEngine, templates: NoticeTemplates
) -> None:
    solved_ref, unsolved_ref = await ingest(
        engine, feedback(1), feedback(2, sender="bob@example.net")
    )
    for ref in (solved_ref, unsolved_ref):
        await resolve_with_reply(
            engine, ref, "maya", reply="Fixed.", templates=templates, loop_marker=LOOP, now=NOW
        )
    later = NOW + timedelta(hours=2)

    def answer(n: int, text: str, sender: str) -> object:
        msg = message(f"answer-{n}@example.net", thread_key=f"thread-{n}", text=text)
        msg = replace(msg, sender=replace(msg.sender, id=sender, handle=sender), received_at=later)
        return record(msg)

    await ingest(
        engine,
        answer(1, "Решено, спасибо! 5", "alice@example.net"),
        answer(2, "没有解决 👎", "bob@example.net"),
        now=later,
    )
    assert [(verdict, rating) for _, verdict, rating in await notices(engine)] == [
        ("solved", 5),
        ("not_solved", None),
    ]
    async with engine.connect() as conn:
        states = (await conn.execute(select(queue_items.c.state).order_by(queue_items.c.id))).all()
        acknowledged = await conn.scalar(select(outbox.c.id).where(outbox.c.record_id > 2))
    assert [state for (state,) in states] == ["resolved", "reopened"]
    assert acknowledged is None
    history = (await show_item(engine, unsolved_ref, now=later)).history
    assert [event.action for event in history][-2:] == ["survey", "reopen"]


async def test_an_automatic_reply_to_the_notice_is_no_answer(
    engine: AsyncEngine, templates: NoticeTemplates
) -> None:
    (ref,) = await ingest(engine, feedback(1))
    await resolve_with_reply(
        engine, ref, "maya", reply="Fixed.", templates=templates, loop_marker=LOOP, now=NOW
    )
    later = NOW + timedelta(hours=1)
    away = message(
        "away-1@example.net",
        thread_key="thread-1",
        text="I am away until Monday and still not reading mail.",
        received_at=later,
    )
    automatic = replace(
        record(away, send=False), ack=AckDecision("withheld", "out of office", "out-of-office")
    )
    await ingest(engine, automatic, now=later)
    assert await notices(engine) == [(True, None, None)]
    async with engine.connect() as conn:
        states = (await conn.execute(select(queue_items.c.state))).scalars().all()
    assert states == ["resolved"]  # neither reopened nor queued on its own


async def test_no_reply_goes_to_a_public_group_chat(
    engine: AsyncEngine, templates: NoticeTemplates
) -> None:
    group = message(
        "tg:-100:7",
        channel="telegram",
        sender=Identity("telegram", "77", "@kim", "Kim"),
        thread_key="tg:-100",
        meta={"public": True},
        headers={},
    )
    (ref,) = await ingest(engine, record(group, source="telegram-bot"), source="telegram-bot")
    with pytest.raises(InvalidInputError, match="public chat"):
        await resolve_with_reply(
            engine, ref, "maya", reply="Done.", templates=templates, loop_marker=LOOP, now=NOW
        )
    assert (await show_item(engine, ref, now=NOW)).item.status == "new"  # nothing changed
    assert await notices(engine) == []
