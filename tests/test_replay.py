"""`replay` classifies stored records again after a rules change, and sends nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from inbox_daemon.config import Settings
from inbox_daemon.interfaces import Classification, Identity
from inbox_daemon.pipeline.triage import load_triage
from inbox_daemon.replay import replay
from inbox_daemon.storage.batch import BatchPlan, SenderLimits, commit_batch
from inbox_daemon.storage.repository import acquire_lease
from inbox_daemon.storage.schema import feedback_records, incidents, outbox, queue_items
from tests.factories import NOW, message, record

SLA = {"P1": 900, "P2": 14400, "P3": 86400, "P4": 259200}
STALE = Classification("other", "P4", "customer_service", ("category other: no rule matched",))


async def test_replay_relabels_records_and_queue_and_rebuilds_incidents(
    engine: AsyncEngine, tmp_path
) -> None:
    texts = [
        "USDT TRC20 withdrawal stuck on processing",
        "my trc20 usdt withdraw is pending for hours",
        "Someone logged in and made an unauthorized withdrawal of 2 BTC",
    ]
    records = [
        replace(
            record(
                message(
                    f"r{i}@example.net",
                    text=text,
                    full_text=text,
                    thread_key=f"r{i}",
                    sender=Identity("email", f"u{i}@example.net", f"u{i}@example.net"),
                    received_at=NOW + timedelta(minutes=i),
                )
            ),
            classification=STALE,
        )
        for i, text in enumerate(texts)
    ]
    assert await acquire_lease(engine, "support-mail", "me", ttl_s=60, now=NOW)
    plan = BatchPlan("support-mail", "me", records, (), None, {"x": 1}, SLA, SenderLimits(9, 9))
    await commit_batch(engine, plan, now=NOW)
    async with engine.connect() as conn:
        replies_before = await conn.scalar(select(func.count()).select_from(outbox))
    triage = load_triage(Settings(config_version=1, config_path=tmp_path / "inbox.toml"))
    report = await replay(engine, triage, since=NOW - timedelta(days=1), sla_s=SLA)
    assert (report.records, report.relabelled, report.incidents) == (3, 3, 1)
    async with engine.connect() as conn:
        labels = (
            await conn.execute(
                select(
                    feedback_records.c.category,
                    feedback_records.c.priority,
                    feedback_records.c.incident_id,
                ).order_by(feedback_records.c.id)
            )
        ).all()
        teams = (
            (await conn.execute(select(queue_items.c.team).order_by(queue_items.c.id)))
            .scalars()
            .all()
        )
        [reports] = (await conn.execute(select(incidents.c.report_count))).scalars().all()
        replies_after = await conn.scalar(select(func.count()).select_from(outbox))
    assert [label.category for label in labels] == ["deposit_withdrawal"] * 2 + ["account_security"]
    assert labels[2].priority == "P1"
    assert labels[0].incident_id == labels[1].incident_id is not None
    assert reports == 2
    assert teams[2] == "risk_control"
    assert replies_after == replies_before
