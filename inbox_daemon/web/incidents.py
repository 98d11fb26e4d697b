"""One incident with every report it groups, and the incidents of a listing page.

:mod:`inbox_daemon.queue` lists incidents; the API and the page also show a single incident
with its reports (the feedback records linked to it, whether or not each still has a queue
item of its own), which this module reads over the same tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import func, select, true
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from ..queue import IncidentSummary, NotFoundError
from ..storage.engine import reading
from ..storage.schema import feedback_records, incidents, queue_items
from ..visibility import Scope

#: Reports shown with an incident, newest first; the summary counts them all.
MAX_REPORTS: Final = 500


@dataclass(frozen=True, slots=True)
class IncidentReport:
    """A feedback record linked to an incident.

    ``status`` and ``assignee`` are those of the record's queue item; ``status`` is ``None``
    when the record has none of its own (it repeats an earlier record, or joined a reopened
    conversation). ``priority`` is the record's label.
    """

    reference: str
    received_at: datetime
    channel: str
    sender: str
    subject: str
    language: str
    priority: str
    team: str
    status: str | None
    assignee: str | None
    duplicate_of: str | None


@dataclass(frozen=True, slots=True)
class IncidentDetail:
    """An incident and its reports (newest first, at most :data:`MAX_REPORTS`)."""

    incident: IncidentSummary
    reports: tuple[IncidentReport, ...]


async def incident_detail(
    engine: AsyncEngine, incident_id: int, scope: Scope | None = None
) -> IncidentDetail:
    """The incident ``incident_id`` with its reports (those ``scope`` allows).

    Raises:
        NotFoundError: no incident has that id, or ``scope`` allows none of its reports.
    """
    async with reading(engine) as conn:
        found = await _summaries(conn, [incident_id], scope)
        reports = await _reports(conn, incident_id, scope) if found else ()
        if not found or not reports:
            raise NotFoundError(f"no incident has the id {incident_id}")
        return IncidentDetail(found[0], reports)


async def incident_summaries(
    engine: AsyncEngine, incident_ids: Sequence[int], scope: Scope | None = None
) -> dict[int, IncidentSummary]:
    """The incidents ``incident_ids`` by id (unknown ids are left out)."""
    if not incident_ids:
        return {}
    async with reading(engine) as conn:
        summaries = await _summaries(conn, incident_ids, scope)
        return {summary.id: summary for summary in summaries}


def _visible(scope: Scope | None) -> ColumnElement[bool]:
    """Reports ``scope`` allows, by their item's team (the record's when it has none)."""
    if scope is None:
        return true()
    team = func.coalesce(queue_items.c.team, feedback_records.c.team)
    return scope.clause(team, feedback_records.c.category)


async def _summaries(
    conn: AsyncConnection, incident_ids: Sequence[int], scope: Scope | None
) -> tuple[IncidentSummary, ...]:
    record, item, c = feedback_records.c, queue_items.c, incidents.c
    counts = await conn.execute(
        select(record.incident_id, item.state, func.count())
        .join(queue_items, item.record_id == record.id)
        .where(record.incident_id.in_(incident_ids), _visible(scope))
        .group_by(record.incident_id, item.state)
    )
    by_state: dict[int, dict[str, int]] = {}
    for incident_id, state, count in counts.all():
        by_state.setdefault(incident_id, {})[state] = count
    rows = await conn.execute(
        select(c.id, c.title, c.category, c.status, c.first_seen, c.last_seen, c.report_count)
        .where(c.id.in_(incident_ids))
        .order_by(c.id)
    )
    return tuple(IncidentSummary(*row, items=by_state.get(row.id, {})) for row in rows.all())


async def _reports(
    conn: AsyncConnection, incident_id: int, scope: Scope | None
) -> tuple[IncidentReport, ...]:
    record, item = feedback_records.c, queue_items.c
    original = feedback_records.alias("original")
    rows = await conn.execute(
        select(
            record.reference,
            record.received_at,
            record.channel,
            record.sender_handle,
            record.subject,
            record.language,
            record.priority,
            record.team,
            item.state,
            item.assignee,
            original.c.reference,
        )
        .outerjoin(queue_items, item.record_id == record.id)
        .outerjoin(original, original.c.id == record.duplicate_of)
        .where(record.incident_id == incident_id, _visible(scope))
        .order_by(record.received_at.desc(), record.id.desc())
        .limit(MAX_REPORTS)
    )
    return tuple(IncidentReport(*row) for row in rows.all())
