"""What the queue page's filters offer and its header counts: read from the queue itself.

Teams, channels and languages come from the items stored, so a filter never offers a value
that matches nothing and a new team appears without a configuration change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, true
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from ..storage.engine import reading
from ..storage.schema import feedback_records, queue_items
from ..visibility import Scope


@dataclass(frozen=True, slots=True)
class QueueFacets:
    """The values present in the queue, and the open items by priority and overdue."""

    teams: tuple[str, ...]
    channels: tuple[str, ...]
    languages: tuple[str, ...]
    open_by_priority: Mapping[str, int]
    overdue: int


async def queue_facets(
    engine: AsyncEngine, *, now: datetime, scope: Scope | None = None
) -> QueueFacets:
    """The facets of every queue item ``scope`` allows, counted at ``now``."""
    item, record = queue_items.c, feedback_records.c
    is_open = item.state != "resolved"
    seen = true() if scope is None else scope.clause(item.team, record.category)
    items = queue_items.join(feedback_records, record.id == item.record_id)
    async with reading(engine) as conn:

        async def distinct(column: ColumnElement[str]) -> tuple[str, ...]:
            query = select(column).select_from(items).where(seen).distinct().order_by(column)
            return tuple((await conn.execute(query)).scalars())

        counts = await conn.execute(
            select(item.priority, func.count())
            .select_from(items)
            .where(is_open, seen)
            .group_by(item.priority)
        )
        open_by_priority = {priority: count for priority, count in counts.all()}
        overdue = await conn.scalar(
            select(func.count()).select_from(items).where(is_open, seen, item.due_at <= now)
        )
        return QueueFacets(
            teams=await distinct(item.team),
            channels=await distinct(record.channel),
            languages=await distinct(record.language),
            open_by_priority=open_by_priority,
            overdue=overdue or 0,
        )
