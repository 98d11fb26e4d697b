"""``inbox-daemon replay``: re-run classification and incident grouping over stored records.

After the operator changes the rules, the records of the last ``--since`` are classified
again (language, category, priority, team and reasons) and their incidents rebuilt, oldest
first; new queue items follow the new priority, team and due time, and a raised priority
escalates any open item (see ``queue.requeue_relabelled``).
Records keep their reference, their duplicates and their acknowledgment decision: no reply
is sent or sent again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .interfaces import Identity, InboundMessage
from .pipeline.dedupe import DedupeIndex, DedupeResult, Seen, persons_of
from .pipeline.entities import extract_entities
from .pipeline.language import detect_language
from .pipeline.triage import Triage
from .queue import requeue_relabelled
from .storage.batch import count_reports, upsert_incident
from .storage.schema import feedback_records, incidents


@dataclass(slots=True)
class ReplayReport:
    """What a replay changed."""

    records: int = 0
    relabelled: int = 0
    incidents: int = 0


async def replay(
    engine: AsyncEngine, triage: Triage, *, since: datetime, sla_s: Mapping[str, int]
) -> ReplayReport:
    """Classify the records received since ``since`` again and rebuild their incidents."""
    report = ReplayReport()
    index = DedupeIndex(triage.dedupe)
    async with engine.begin() as conn:
        rows = (
            await conn.execute(
                select(feedback_records)
                .where(feedback_records.c.received_at >= since)
                .order_by(feedback_records.c.received_at, feedback_records.c.id)
            )
        ).all()
        await _detach_incidents(conn, [row.id for row in rows])
        for row in rows:
            report.records += 1
            report.relabelled += await _relabel(conn, triage, index, dict(row._mapping), sla_s)
        report.incidents = len(
            set(
                (
                    await conn.execute(
                        select(feedback_records.c.incident_id).where(
                            feedback_records.c.received_at >= since,
                            feedback_records.c.incident_id.is_not(None),
                        )
                    )
                ).scalars()
            )
        )
    return report


async def _detach_incidents(conn: AsyncConnection, record_ids: Sequence[int]) -> None:
    for start in range(0, len(record_ids), 500):
        chunk = record_ids[start : start + 500]
        await conn.execute(
            update(feedback_records)
            .where(feedback_records.c.id.in_(chunk))
            .values(incident_id=None)
        )
    linked = select(feedback_records.c.incident_id).where(
        feedback_records.c.incident_id.is_not(None)
    )
    await conn.execute(delete(incidents).where(incidents.c.id.not_in(linked)))


async def _relabel(
    conn: AsyncConnection,
    triage: Triage,
    index: DedupeIndex,
    row: Mapping[str, Any],
    sla_s: Mapping[str, int],
) -> int:
    message = _message(row)
    language = detect_language(f"{message.subject}\n{message.text}")
    labels = triage.classifier.classify(message, language)
    entities = extract_entities(f"{message.subject}\n{message.text}")
    seen = Seen(
        row["reference"],
        message.received_at,
        persons_of(
            message.channel,
            message.sender.id,
            entities,
            handle=message.sender.handle,
            people=triage.dedupe.people,
        ),
        labels.category,
        entities,
        " ".join(message.text.lower().split()),
        row["duplicate_of"] is not None,
    )
    verdict = DedupeResult() if seen.duplicate else index.check(seen)
    index.add(seen, verdict)
    incident_id = await _incident(conn, verdict, row["id"], labels.category, message.received_at)
    values = {
        "language": language,
        "category": labels.category,
        "priority": labels.priority,
        "team": labels.team,
        "reasons": list(labels.reasons),
        "entities": entities.as_dict(),
        "incident_id": incident_id,
    }
    await conn.execute(
        update(feedback_records).where(feedback_records.c.id == row["id"]).values(**values)
    )
    await requeue_relabelled(
        conn,
        row["id"],
        team=labels.team,
        priority=labels.priority,
        sla_s=sla_s,
        now=datetime.now(UTC),
    )
    changed = (row["category"], row["priority"], row["team"]) != (
        labels.category,
        labels.priority,
        labels.team,
    )
    return int(changed)


async def _incident(
    conn: AsyncConnection, verdict: DedupeResult, record_id: int, category: str, when: datetime
) -> int | None:
    link = verdict.incident
    if link is None:
        return None
    incident_id = await upsert_incident(
        conn, link, category=category, first_seen=when, last_seen=when
    )
    members = or_(
        feedback_records.c.id == record_id, feedback_records.c.reference.in_(link.members)
    )
    await conn.execute(update(feedback_records).where(members).values(incident_id=incident_id))
    await count_reports(conn, incident_id)
    return incident_id


def _message(row: Mapping[str, Any]) -> InboundMessage:
    channel = row["channel"]
    return InboundMessage(
        external_id=row["external_id"],
        channel=channel,
        received_at=row["received_at"],
        sender=Identity(channel, row["sender_id"], row["sender_handle"], row["sender_name"]),
        subject=row["subject"],
        text=row["text"],
        full_text=row["full_text"],
        thread_key=row["thread_key"],
        raw_ref=row["raw_ref"],
        in_reply_to=row["in_reply_to"],
        headers=row["headers"],
        meta=row["meta"],
    )
