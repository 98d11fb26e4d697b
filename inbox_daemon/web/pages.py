"""The queue page: an HTML shell, and the server-rendered fragments its script swaps in.

The shell (``/``) holds no data, so it loads without signing in; the page's script asks
once for the agent's own token (unless a reverse proxy signed them in), keeps it in
``localStorage``, and fetches the fragments (``/fragments/...``, signed in) that Jinja2
renders here with autoescaping, narrowed to what the agent may see:
whatever a customer wrote reaches the browser as text, never as markup. The page's
Content-Security-Policy (see :mod:`.app`) forbids inline script as a second line of defence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Final

import jinja2
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from .. import queue
from ..queue import PRIORITIES, STATES, IncidentSummary, QueueItem
from ..visibility import Scope
from .api import listing_query
from .context import actor_of, engine_of, scope_of, settings_of
from .facets import queue_facets
from .incidents import incident_summaries

#: Items fetched per page of rows; "Show more" fetches the next.
PAGE_SIZE: Final = 100
STATIC_DIR: Final = Path(str(files("inbox_daemon.web") / "static"))
#: The status filter's choices: "open" (the default) and "" (every state) first.
STATUS_CHOICES: Final = (("open", "Open"), ("", "All"), *((state, state) for state in STATES))

_TEMPLATES: Final = jinja2.Environment(
    loader=jinja2.PackageLoader("inbox_daemon.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(slots=True)
class IncidentGroup:
    """The listed items of one incident, shown under one row that expands to them."""

    id: int
    title: str
    summary: IncidentSummary | None
    items: list[QueueItem] = field(default_factory=list)


def add_routes(app: web.Application) -> None:
    """Register the page, its fragments and its static files on ``app``."""
    app.router.add_get("/", queue_page)
    app.router.add_get("/fragments/queue", queue_fragment)
    app.router.add_get("/fragments/items/{reference}", item_fragment)
    app.router.add_static("/static", STATIC_DIR)


async def queue_page(request: web.Request) -> web.Response:
    """The page's shell: layout, filters and the sign-in form; its script loads the data."""
    web_settings = settings_of(request).web
    return _html(
        "queue.html",
        refresh_s=web_settings.page_refresh_s,
        page_size=PAGE_SIZE,
        priorities=PRIORITIES,
        statuses=STATUS_CHOICES,
    )


async def queue_fragment(request: web.Request) -> web.Response:
    """The rows of one listing page, the header counts and the filters' choices."""
    filters, cursor, limit = listing_query(request, default_limit=PAGE_SIZE)
    engine, now, scope = engine_of(request), datetime.now(UTC), scope_of(request)
    page = await queue.list_items(engine, filters, cursor=cursor, limit=limit, now=now, scope=scope)
    groups = await group_by_incident(engine, page.items, scope)
    return _html(
        "_queue.html",
        rows=groups,
        next_cursor=page.next_cursor or "",
        shown=len(page.items),
        facets=await queue_facets(engine, now=now, scope=scope),
        filters=filters,
        priorities=PRIORITIES,
        statuses=STATUS_CHOICES,
        now=now,
    )


async def item_fragment(request: web.Request) -> web.Response:
    """The detail panel of one item: texts, labels and why, acknowledgment, thread, history.

    Reading it is a view of the item, logged in the audit log.
    """
    now = datetime.now(UTC)
    detail = await queue.show_item(
        engine_of(request),
        request.match_info["reference"],
        now=now,
        scope=scope_of(request),
        viewer=actor_of(request),
        view_log_interval_s=settings_of(request).staff.view_log_interval_s,
    )
    return _html("_item.html", detail=detail, item=detail.item, now=now)


async def group_by_incident(
    engine: AsyncEngine, items: Sequence[QueueItem], scope: Scope | None = None
) -> list[QueueItem | IncidentGroup]:
    """``items`` in order, with each incident that has two or more of them folded into one group.

    The group takes the place of the incident's most urgent item, so the listing's order by
    priority and due time holds for the rows a person sees.
    """
    listed: dict[int, int] = {}
    for item in items:
        if item.incident_id is not None:
            listed[item.incident_id] = listed.get(item.incident_id, 0) + 1
    grouped = [incident_id for incident_id, count in listed.items() if count > 1]
    summaries = await incident_summaries(engine, grouped, scope)
    rows: list[QueueItem | IncidentGroup] = []
    groups: dict[int, IncidentGroup] = {}
    for item in items:
        if item.incident_id is None or item.incident_id not in summaries:
            rows.append(item)
            continue
        group = groups.get(item.incident_id)
        if group is None:
            title = item.incident_title or f"incident {item.incident_id}"
            group = groups[item.incident_id] = IncidentGroup(
                item.incident_id, title, summaries[item.incident_id]
            )
            rows.append(group)
        group.items.append(item)
    return rows


# --- rendering ---------------------------------------------------------------------------


def _html(template: str, **context: object) -> web.Response:
    body = _TEMPLATES.get_template(template).render(**context)
    return web.Response(text=body, content_type="text/html", charset="utf-8")


def span(delta: timedelta) -> str:
    """A duration read at a glance: ``45s``, ``14m``, ``3h 59m``, ``2d 23h``."""
    seconds = int(abs(delta).total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 60:
        return f"{minutes}m"
    if hours < 24:
        return f"{hours}h {minutes % 60}m" if minutes % 60 else f"{hours}h"
    return f"{days}d {hours % 24}h" if hours % 24 else f"{days}d"


def due_text(item: QueueItem, now: datetime) -> str:
    """When the item is due, relative to ``now``; resolved items show when they were."""
    if item.status == "resolved":
        return "resolved"
    if item.due_at > now:
        return f"in {span(item.due_at - now)}"
    return f"{span(now - item.due_at)} overdue"


def ago(when: datetime, now: datetime) -> str:
    """``when`` relative to ``now``: ``5m ago``."""
    return "just now" if now - when < timedelta(seconds=30) else f"{span(now - when)} ago"


def timestamp(when: datetime | None) -> str:
    """``when`` in UTC to the minute (the page's script shows it in local time as well)."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if when else "-"


def size(size_bytes: int) -> str:
    """A byte count as ``512 B``, ``14 KB``, ``2.1 MB``."""
    if size_bytes < 1024:
        return f"{size_bytes} B"
    if size_bytes < 1024 * 1024:
        return f"{size_bytes / 1024:.0f} KB"
    return f"{size_bytes / (1024 * 1024):.1f} MB"


@cache
def static_url(name: str) -> str:
    """The URL of a static file, versioned by its content so a new release is fetched anew."""
    digest = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]
    return f"/static/{name}?v={digest}"


_TEMPLATES.globals.update(
    due_text=due_text, ago=ago, timestamp=timestamp, size=size, static_url=static_url
)
_TEMPLATES.tests["incident_group"] = lambda value: isinstance(value, IncidentGroup)
