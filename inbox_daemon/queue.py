"""The shared queue support staff work from: list, show, claim, resolve, escalate, reopen.

A queue item moves ``new -> claimed -> resolved``. While it waits it may also be
``reopened`` (its sender wrote again on the resolved conversation) or ``escalated`` (its
priority was raised); ``new``, ``reopened`` and ``escalated`` are the *waiting* states.
Every operation is one short transaction, and every change of state appends a row to
``queue_events`` (who, when, from what, to what). What staff do (a view of an item's detail,
a claim, a resolution, an escalation, a reassignment, an export) also appends one row to
the audit log (:mod:`.audit`: who, from where) in the same transaction.

Decisions the callers (CLI, HTTP API, web page) rely on:

- **What an agent may see** is a :class:`~.visibility.Scope`: an item it hides is not
  found, exactly as an unknown reference, and is left out of listings and counts.

- **Claims are atomic.** The item row is locked (``FOR UPDATE``, ``SKIP LOCKED`` for the next
  item) on PostgreSQL; SQLite transactions are ``BEGIN IMMEDIATE``, so one writer decides at
  a time. The update is conditional on the state that was read in any case, so two agents
  never hold one item.
- **Claims expire** after ``claim_timeout_s``. Claiming an item one already holds renews the
  claim. Every operation first returns expired claims to the waiting state they were taken
  from, so an abandoned item is back in the listing and claimable at once.
- **Only the holder resolves a claimed item.** A waiting item may be resolved directly by
  anyone (spam, an answer given elsewhere): the same conditional update makes that atomic,
  and a claim made a moment earlier by someone else wins.
- **Escalation only raises the priority.** A waiting item becomes ``escalated``; a claimed
  one keeps its holder. The due time becomes the earlier of the old one and
  escalation time + the new priority's SLA, so a deadline never moves later.
- **Reopening folds the conversation.** When a sender writes again on the conversation of a
  resolved item, that item is ``reopened`` in the ingest transaction and the new record
  joins it (it gets no item of its own, and shows in the item's thread).
- **An edit is logged, not queued again.** When a sender edits a stored message, its item
  logs ``edited`` and may rise in priority with the edited text, never fall.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final

from sqlalchemy import (
    Row,
    Select,
    and_,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Join

from . import audit
from .audit import Actor, AuditEntry
from .errors import InboxError
from .interfaces import FeedbackRecord
from .storage.engine import reading
from .storage.schema import (
    feedback_records,
    incidents,
    outbox,
    queue_events,
    queue_items,
    resolution_notices,
)
from .visibility import Scope

PRIORITIES: Final = ("P1", "P2", "P3", "P4")
WAITING: Final = ("new", "reopened", "escalated")
STATES: Final = (*WAITING, "claimed", "resolved")
#: The status filter for every state but ``resolved``.
OPEN: Final = "open"
#: The items of that filter, in SQL. "resolved" is written into the statement, not bound:
#: the indexes of open items are partial, and SQLite matches a query's condition against
#: an index's WHERE only when it is spelled the same, never through a parameter.
UNRESOLVED: Final = queue_items.c.state != literal_column("'resolved'")
#: The actor of changes nobody asked for: expired claims, reopening on a new message.
SYSTEM_ACTOR: Final = "inbox-daemon"
REPLAY_ACTOR: Final = "replay"
MAX_PAGE: Final = 500
MAX_NOTE_CHARS: Final = 10_000
MAX_AUDIT_SHOWN: Final = 200
#: Items one export holds at most.
MAX_EXPORT: Final = 10_000

_REFERENCE = re.compile(r"FB-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}")
_NO_RECORD = "no feedback record has the reference {reference}"
_LABEL = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}", re.IGNORECASE)


class QueueError(InboxError):
    """A queue operation was refused; nothing changed. ``kind`` is stable for the API."""

    kind: ClassVar[str] = "queue"


class NotFoundError(QueueError):
    """No queue item has that reference (or nothing is waiting to be claimed)."""

    kind = "not_found"


class ConflictError(QueueError):
    """The item's state does not allow the operation: claimed by someone else, resolved…"""

    kind = "conflict"


class InvalidInputError(QueueError):
    """A filter, reference, name, priority, cursor or limit is malformed.

    Args:
        message: what is wrong and what was expected.
        field: the name of the input at fault (``status``, ``reference``, ``cursor``…).
    """

    kind = "invalid_input"

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """What a listing is narrowed to; ``None`` keeps everything. Validated on creation.

    ``status`` is one of :data:`STATES` or ``"open"`` (everything not resolved).
    """

    team: str | None = None
    priority: str | None = None
    status: str | None = None
    channel: str | None = None
    language: str | None = None
    category: str | None = None
    incident_id: int | None = None

    def __post_init__(self) -> None:
        for name in ("team", "channel", "language", "category"):
            _check_label(name, getattr(self, name))
        _check_choice("priority", self.priority, PRIORITIES)
        _check_choice("status", self.status, (*STATES, OPEN))
        if self.incident_id is not None and self.incident_id < 1:
            raise InvalidInputError(
                f"expected a positive id, got {self.incident_id}", field="incident"
            )

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> QueueFilter:
        """A filter from text parameters (a query string); empty values are ignored.

        ``incident`` holds the incident id. Unknown names are errors, so a typo is not
        silently an unfiltered listing.
        """
        given = {name: value.strip() for name, value in params.items() if value.strip()}
        known = {f.name for f in fields(cls)} - {"incident_id"} | {"incident"}
        for name in given:
            if name not in known:
                raise InvalidInputError(
                    f"unknown filter; expected one of {', '.join(sorted(known))}", field=name
                )
        incident = given.pop("incident", None)
        return cls(**given, incident_id=None if incident is None else _positive(incident))


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One queue item with the record it stands for, as lists and the detail page show it.

    ``overdue``: not resolved and past ``due_at`` at the time of the read. ``duplicate_of``
    is the reference of the record this one repeats (repeats join their original rather
    than the queue, so it is set only on records shown in a thread).
    """

    reference: str
    status: str
    priority: str
    team: str
    assignee: str | None
    created_at: datetime
    due_at: datetime
    overdue: bool
    claimed_at: datetime | None
    claim_expires_at: datetime | None
    resolved_at: datetime | None
    resolution_note: str | None
    channel: str
    source: str
    external_id: str
    sender: str
    sender_name: str
    subject: str
    text: str
    language: str
    category: str
    received_at: datetime
    duplicate_of: str | None
    incident_id: int | None
    incident_title: str | None


@dataclass(frozen=True, slots=True)
class QueuePage:
    """One page of a listing; pass ``next_cursor`` back for the next (``None``: the last)."""

    items: tuple[QueueItem, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Acknowledgment:
    """The acknowledgment decided for a record: what was sent, or why nothing was.

    ``outbox_state`` is ``None`` when no reply was queued (then ``reason`` says why).
    """

    decision: str
    reason: str
    code: str
    outbox_state: str | None
    attempts: int
    last_error: str | None
    sent_at: datetime | None
    subject: str | None
    text: str | None


@dataclass(frozen=True, slots=True)
class ThreadEntry:
    """Another record of the same conversation (``relation="thread"``) or sender."""

    reference: str
    relation: str
    received_at: datetime
    channel: str
    sender: str
    subject: str
    text: str
    duplicate_of: str | None
    status: str | None


@dataclass(frozen=True, slots=True)
class QueueEvent:
    """One change of an item's state, oldest first in :attr:`ItemDetail.history`."""

    at: datetime
    actor: str
    action: str
    from_state: str
    to_state: str
    detail: str


@dataclass(frozen=True, slots=True)
class IncidentSummary:
    """An incident: many people reporting one problem. ``items``: its queue items by state."""

    id: int
    title: str
    category: str | None
    status: str
    first_seen: datetime
    last_seen: datetime
    report_count: int
    items: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ItemDetail:
    """Everything an agent needs to work one item.

    ``full_text`` is the text as received (quotes and signature kept, secrets redacted);
    ``item.text`` the normalised text. ``thread``: other records of the conversation or
    sender, newest first, capped. ``audit``: the audit log's rows about the item (views,
    claims, exports…), oldest first, the newest :data:`MAX_AUDIT_SHOWN` of them.
    """

    item: QueueItem
    full_text: str
    reasons: tuple[str, ...]
    redactions: Mapping[str, int]
    entities: Mapping[str, tuple[str, ...]]
    notes: tuple[str, ...]
    attachments: tuple[Mapping[str, Any], ...]
    acknowledgment: Acknowledgment
    incident: IncidentSummary | None
    thread: tuple[ThreadEntry, ...]
    history: tuple[QueueEvent, ...]
    audit: tuple[AuditEntry, ...] = ()


#: Work done in a resolution's transaction: ``(conn, item_id, resolved_at)``.
ResolveHook = Callable[[AsyncConnection, int, datetime], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _State:
    """The columns of an item that decide what may happen to it."""

    id: int
    reference: str
    state: str
    priority: str
    assignee: str | None
    created_at: datetime
    due_at: datetime
    claim_expires_at: datetime | None
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class _Change:
    """A change of an item (the column ``values``) and the event that records it."""

    action: str
    actor: str
    at: datetime
    values: Mapping[str, object]
    detail: str = ""


# --- reads -------------------------------------------------------------------------------


async def list_items(
    engine: AsyncEngine,
    filters: QueueFilter | None = None,
    *,
    cursor: str | None = None,
    limit: int = 50,
    now: datetime | None = None,
    scope: Scope | None = None,
) -> QueuePage:
    """The items matching ``filters``, most urgent first: priority, due time, then age.

    Pages are keyset pages on (priority, due time, id): an item added or resolved between
    two pages never makes another one appear twice or be skipped. With ``scope``, only the
    items it allows are listed.

    Raises:
        InvalidInputError: a malformed cursor or a limit outside 1..500.
    """
    at, query = _now(now), _listing(filters or QueueFilter(), scope)
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"expected 1 to {MAX_PAGE}, got {limit}", field="limit")
    if cursor:
        query = query.where(_after(*_decode_cursor(cursor)))
    await _release_expired_claims(engine, at)
    async with reading(engine) as conn:
        rows = (await conn.execute(query.limit(limit + 1))).all()
    items = tuple(_item(row, at) for row in rows[:limit])
    more = len(rows) > limit
    return QueuePage(items, _encode_cursor(rows[limit - 1]) if more else None)


async def show_item(
    engine: AsyncEngine,
    reference: str,
    *,
    thread_limit: int = 20,
    now: datetime | None = None,
    scope: Scope | None = None,
    viewer: Actor | None = None,
    view_log_interval_s: float = 0.0,
) -> ItemDetail:
    """The item ``reference`` with its record, acknowledgment, incident, thread and history.

    With ``scope``, an item it hides is not found, and the thread leaves out what it hides.
    A ``viewer`` is logged in the audit log as having read the item (not again within
    ``view_log_interval_s`` of their last logged read of it).

    Raises:
        NotFoundError: no item has that reference (the message says where a repeat went).
        InvalidInputError: ``reference`` is not of the form ``FB-XXXX-XXXX``.
    """
    ref, at = _reference(reference), _now(now)
    async with _session(engine, at) as conn:
        state = await _locate(conn, ref, lock=False, scope=scope)
        if viewer is not None:
            await audit.append_view(conn, viewer, ref, at=at, repeat_s=view_log_interval_s)
        row = (
            await conn.execute(_item_columns(_record_columns()).where(queue_items.c.id == state.id))
        ).one()
        incident = None
        if row.incident_id is not None:
            [incident] = await _incidents(conn, [row.incident_id])
        return ItemDetail(
            item=_item(row, at),
            full_text=row.full_text,
            reasons=tuple(row.reasons),
            redactions=dict(row.redactions),
            entities={kind: tuple(values) for kind, values in row.entities.items()},
            notes=tuple(row.notes),
            attachments=tuple(row.attachments),
            acknowledgment=await _acknowledgment(conn, row),
            incident=incident,
            thread=await _thread(conn, row, thread_limit, scope),
            history=await _history(conn, state.id),
            audit=await audit.entries(conn, item_ref=ref, limit=MAX_AUDIT_SHOWN),
        )


async def list_incidents(
    engine: AsyncEngine,
    *,
    limit: int = 100,
    now: datetime | None = None,
    scope: Scope | None = None,
) -> tuple[IncidentSummary, ...]:
    """Incidents, most recently reported first, each with its queue items counted by state.

    With ``scope``, only incidents with a report it allows are listed, and only the items it
    allows are counted.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"expected 1 to {MAX_PAGE}, got {limit}", field="limit")
    query = select(incidents.c.id)
    if scope is not None:
        record = feedback_records.c
        query = query.where(
            select(record.id)
            .select_from(_records_with_items())
            .where(record.incident_id == incidents.c.id, _visible_record(scope))
            .exists()
        )
    async with _session(engine, _now(now)) as conn:
        ids = (
            await conn.execute(
                query.order_by(incidents.c.last_seen.desc(), incidents.c.id.desc()).limit(limit)
            )
        ).scalars()
        return await _incidents(conn, list(ids), scope)


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """How many open items one team holds at one priority in one state."""

    team: str
    priority: str
    status: str
    items: int


async def queue_depth(engine: AsyncEngine) -> list[QueueDepth]:
    """Open items (every state but ``resolved``) counted by team, priority and state.

    A read only: a claim past its expiry counts as ``claimed`` until the next queue
    operation returns it, so metrics and ``status`` never write to the queue.
    """
    columns = (queue_items.c.team, queue_items.c.priority, queue_items.c.state)
    query = select(*columns, func.count()).where(UNRESOLVED).group_by(*columns).order_by(*columns)
    async with reading(engine) as conn:
        rows = (await conn.execute(query)).all()
    return [QueueDepth(team, priority, status, count) for team, priority, status, count in rows]


# --- changes by agents -------------------------------------------------------------------


async def claim(
    engine: AsyncEngine,
    reference: str,
    agent: str,
    *,
    claim_timeout_s: float,
    now: datetime | None = None,
    scope: Scope | None = None,
    origin: str = "",
) -> QueueItem:
    """Claim the item ``reference`` for ``agent`` (renewing the claim if ``agent`` holds it).

    ``scope`` is what ``agent`` may see; ``origin`` where the request came from (both for
    the audit log row the claim writes).

    Raises:
        NotFoundError: no item has that reference.
        ConflictError: someone else holds it, or it is resolved.
        InvalidInputError: a malformed reference or agent name.
    """
    ref, who, at = _reference(reference), _agent(agent), _now(now)
    async with _session(engine, at) as conn:
        state = await _locate(conn, ref, lock=True, scope=scope)
        if state.state == "resolved":
            raise ConflictError(f"{ref} is resolved; it reopens when its sender writes again")
        if state.state == "claimed" and state.assignee != who:
            raise ConflictError(_held(state))
        await _take(conn, state, Actor(who, origin), at, claim_timeout_s)
        return await _item_by_id(conn, state.id, at)


async def claim_next(
    engine: AsyncEngine,
    team: str,
    agent: str,
    *,
    claim_timeout_s: float,
    now: datetime | None = None,
    scope: Scope | None = None,
    origin: str = "",
) -> QueueItem:
    """Claim the most urgent waiting item of ``team`` (that ``scope`` allows) for ``agent``.

    Most urgent: the highest priority, then the earliest due time, then the oldest. On
    PostgreSQL, rows another agent is claiming right now are skipped, not waited for.

    Raises:
        NotFoundError: nothing of ``team`` is waiting.
        InvalidInputError: a malformed team or agent name.
    """
    _check_label("team", team)
    who, at = _agent(agent), _now(now)
    async with _session(engine, at) as conn:
        query = (
            _state_query()
            .where(queue_items.c.team == team, queue_items.c.state.in_(WAITING))
            .where(_visible_item(scope))
            .order_by(queue_items.c.priority, queue_items.c.due_at, queue_items.c.id)
            .limit(1)
        )
        if _is_postgresql(conn):
            query = query.with_for_update(skip_locked=True, of=queue_items)
        row = (await conn.execute(query)).first()
        if row is None:
            raise NotFoundError(f"no item of team {team!r} is waiting to be claimed")
        state = _State(*row)
        await _take(conn, state, Actor(who, origin), at, claim_timeout_s)
        return await _item_by_id(conn, state.id, at)


async def resolve(
    engine: AsyncEngine,
    reference: str,
    agent: str,
    *,
    note: str | None = None,
    now: datetime | None = None,
    scope: Scope | None = None,
    origin: str = "",
    then: ResolveHook | None = None,
) -> QueueItem:
    """Resolve the item ``reference`` as ``agent``, with an optional ``note``.

    A claimed item is resolved only by its holder; a waiting item by anyone (who may see it).
    The audit log's row says whether there was a note, never what it says. ``then`` runs in
    the same transaction once the item is resolved (the resolution notice's outbox row), so
    the notice is queued if and only if the item is resolved.

    Raises:
        NotFoundError: no item has that reference.
        ConflictError: someone else holds it, or it is already resolved.
        InvalidInputError: a malformed reference or agent name, or a note over 10,000 chars.
    """
    ref, who, at = _reference(reference), _agent(agent), _now(now)
    text = _note(note)
    async with _session(engine, at) as conn:
        state = await _locate(conn, ref, lock=True, scope=scope)
        if state.state == "resolved":
            raise ConflictError(f"{ref} is already resolved (at {_iso(state.resolved_at)})")
        if state.state == "claimed" and state.assignee != who:
            raise ConflictError(f"{_held(state)}; only they can resolve it")
        resolved = {
            "state": "resolved",
            "assignee": who,
            "resolved_at": at,
            "resolution_note": text,
            "claim_expires_at": None,
        }
        await _change(conn, state, _Change("resolve", who, at, resolved, text or ""))
        detail = {"from": state.state, "note": text is not None}
        await audit.append(
            conn, Actor(who, origin), audit.RESOLVE, at=at, item_ref=ref, detail=detail
        )
        if then is not None:
            await then(conn, state.id, at)
        return await _item_by_id(conn, state.id, at)


async def escalate(
    engine: AsyncEngine,
    reference: str,
    priority: str,
    agent: str,
    *,
    sla_s: Mapping[str, int],
    now: datetime | None = None,
    scope: Scope | None = None,
    origin: str = "",
) -> QueueItem:
    """Raise the priority of the item ``reference`` to ``priority`` as ``agent``.

    Raises:
        NotFoundError: no item has that reference.
        ConflictError: it is resolved, or its priority is already as high.
        InvalidInputError: a malformed reference, agent name or priority.
    """
    ref, who, at = _reference(reference), _agent(agent), _now(now)
    _check_choice("priority", priority, PRIORITIES)
    async with _session(engine, at) as conn:
        state = await _locate(conn, ref, lock=True, scope=scope)
        if state.state == "resolved":
            raise ConflictError(f"{ref} is resolved; it cannot be escalated")
        if _rank(priority) >= _rank(state.priority):
            raise ConflictError(
                f"{ref} is already {state.priority}; escalation only raises the priority"
            )
        raised = {
            "state": "claimed" if state.state == "claimed" else "escalated",
            "priority": priority,
            "due_at": min(state.due_at, at + timedelta(seconds=sla_s[priority])),
        }
        detail = f"{state.priority} -> {priority}"
        await _change(conn, state, _Change("escalate", who, at, raised, detail))
        change = {"from": state.priority, "to": priority}
        await audit.append(
            conn, Actor(who, origin), audit.ESCALATE, at=at, item_ref=ref, detail=change
        )
        return await _item_by_id(conn, state.id, at)


async def reassign(
    engine: AsyncEngine,
    reference: str,
    agent: str,
    *,
    team: str | None = None,
    assignee: str | None = None,
    assignee_scope: Scope | None = None,
    claim_timeout_s: float,
    now: datetime | None = None,
    scope: Scope | None = None,
    origin: str = "",
) -> QueueItem:
    """Move the item ``reference`` to another ``team`` and/or hand it to ``assignee``.

    ``agent`` acts (callers let leads and admins only). With ``assignee`` the item becomes
    claimed by them, as by their own claim; with only ``team`` a claimed item returns to the
    waiting state it was claimed from, for the new team to take. ``assignee_scope`` is what
    ``assignee`` may see: an item they could not see is not handed to them.

    Raises:
        NotFoundError: no item has that reference (or ``scope`` hides it).
        ConflictError: it is resolved, the change changes nothing, or ``assignee`` may not
            see the item.
        InvalidInputError: a malformed reference, team or name, or neither team nor assignee.
    """
    ref, who, at = _reference(reference), _agent(agent), _now(now)
    _check_label("team", team)
    target = None if assignee is None else _agent(assignee)
    if team is None and target is None:
        raise InvalidInputError("give the new team, the new assignee, or both", field="team")
    async with _session(engine, at) as conn:
        state = await _locate(conn, ref, lock=True, scope=scope)
        if state.state == "resolved":
            raise ConflictError(f"{ref} is resolved; it cannot be reassigned")
        old_team, category = (
            await conn.execute(
                select(queue_items.c.team, feedback_records.c.category)
                .join(feedback_records, feedback_records.c.id == queue_items.c.record_id)
                .where(queue_items.c.id == state.id)
            )
        ).one()
        new_team = team or old_team
        if assignee_scope is not None and not assignee_scope.allows(new_team, category):
            raise ConflictError(f"{target} may not see items of team {new_team} ({category})")
        values = await _reassignment(conn, state, new_team, target, at, claim_timeout_s)
        if new_team == old_team and (target is None or target == state.assignee):
            raise ConflictError(
                f"{ref} is with {new_team} and {state.assignee or 'nobody'} already"
            )
        moved = {"team": [old_team, new_team], "assignee": [state.assignee, values["assignee"]]}
        detail = f"team {old_team} -> {new_team}; assignee {state.assignee} -> {values['assignee']}"
        await _change(conn, state, _Change("reassign", who, at, values, detail))
        await audit.append(
            conn, Actor(who, origin), audit.REASSIGN, at=at, item_ref=ref, detail=moved
        )
        return await _item_by_id(conn, state.id, at)


async def _reassignment(
    conn: AsyncConnection,
    state: _State,
    team: str,
    assignee: str | None,
    at: datetime,
    claim_timeout_s: float,
) -> dict[str, object]:
    """The column values of a reassignment (see :func:`reassign`)."""
    values: dict[str, object] = {"team": team, "assignee": state.assignee}
    if assignee is not None:
        expires_at = at + timedelta(seconds=claim_timeout_s)
        values |= {"state": "claimed", "assignee": assignee, "claim_expires_at": expires_at}
        values["claimed_at"] = at
    elif state.state == "claimed":
        waiting = (await _claimed_from(conn, [state.id])).get(state.id, "new")
        values |= {"state": waiting, "assignee": None, "claimed_at": None}
        values["claim_expires_at"] = None
    return values


@dataclass(frozen=True, slots=True)
class Export:
    """The items of an export, most urgent first; ``complete`` is false past the cap."""

    items: tuple[QueueItem, ...]
    complete: bool


async def export_items(
    engine: AsyncEngine,
    filters: QueueFilter | None = None,
    *,
    actor: Actor,
    scope: Scope | None = None,
    limit: int = MAX_EXPORT,
    now: datetime | None = None,
) -> Export:
    """Every item matching ``filters`` that ``scope`` allows (up to ``limit``), for ``actor``.

    The audit log's row names the filters and every reference that left, so a person can
    learn later who took their data out.
    """
    at, query = _now(now), _listing(filters or QueueFilter(), scope)
    async with _session(engine, at) as conn:
        rows = (await conn.execute(query.limit(limit + 1))).all()
        items = tuple(_item(row, at) for row in rows[:limit])
        given = {f.name: getattr(filters, f.name) for f in fields(QueueFilter)} if filters else {}
        detail = {
            "filters": {name: value for name, value in given.items() if value is not None},
            "count": len(items),
            "complete": len(rows) <= limit,
            "references": [item.reference for item in items],
        }
        await audit.append(conn, actor, audit.EXPORT, at=at, detail=detail)
    return Export(items, len(rows) <= limit)


async def release_expired_claims(engine: AsyncEngine, *, now: datetime | None = None) -> int:
    """Return every claim older than its expiry to the queue; the number released.

    Every other operation does this first, so calling it is needed only to make the
    database itself current (for reports that read the tables directly).
    """
    at = _now(now)
    async with engine.begin() as conn:
        return await _release_expired(conn, at)


# --- changes inside other transactions (ingest, replay) ----------------------------------


async def reopen_resolved_threads(
    conn: AsyncConnection,
    new: Sequence[tuple[int, FeedbackRecord]],
    *,
    sla_s: Mapping[str, int],
    now: datetime,
) -> int:
    """Reopen resolved items whose sender wrote again on their conversation; how many.

    Runs inside the ingest transaction, after the new records (``(id, record)`` pairs) and
    their queue items are stored. The conversation's newest item by that sender is reopened
    if it is resolved, at the higher of its priority and the new records', due from now;
    the new records join it and lose their own queue items. A copy of an already stored
    message (a second mailbox) reopens nothing.
    """
    by_record = {record_id: record for record_id, record in new}
    latest = await _latest_items(conn, by_record)
    follow_ups: dict[int, tuple[_State, list[FeedbackRecord], list[int]]] = {}
    for record_id, record in by_record.items():
        state = latest.get(_conversation(record))
        if state is not None and state.state == "resolved":
            entry = follow_ups.setdefault(state.id, (state, [], []))
            entry[1].append(record)
            entry[2].append(record_id)
    copies = await _copies(conn, [rid for _, _, ids in follow_ups.values() for rid in ids])
    reopened = 0
    for state, records, record_ids in follow_ups.values():
        fresh = [(rid, r) for rid, r in zip(record_ids, records, strict=True) if rid not in copies]
        if fresh:
            reopened += await _reopen(conn, state, fresh, sla_s, now)
    return reopened


async def reopen_item(
    conn: AsyncConnection,
    item_id: int,
    follow_ups: Sequence[tuple[int, FeedbackRecord]],
    *,
    sla_s: Mapping[str, int],
    now: datetime,
) -> bool:
    """Reopen the resolved item ``item_id`` for the new records ``follow_ups`` (which join
    it), as a new message on its conversation would; False if it is not resolved."""
    query = _state_query().where(queue_items.c.id == item_id)
    if _is_postgresql(conn):
        query = query.with_for_update(of=queue_items)
    row = (await conn.execute(query)).first()
    if row is None or row.state != "resolved":
        return False
    return await _reopen(conn, _State(*row), follow_ups, sla_s, now) == 1


async def log_event(
    conn: AsyncConnection, item_id: int, actor: str, action: str, detail: str, *, now: datetime
) -> None:
    """Add an event to the item's history without changing the item."""
    query = _state_query().where(queue_items.c.id == item_id)
    row = (await conn.execute(query)).first()
    if row is not None:
        await _apply(conn, _State(*row), _Change(action, actor, now, {}, detail))


async def requeue_relabelled(
    conn: AsyncConnection,
    record_id: int,
    *,
    team: str,
    priority: str,
    sla_s: Mapping[str, int],
    now: datetime,
) -> None:
    """Follow a record's new labels after a rules replay.

    A ``new`` item takes the new team, priority and due time (``created_at`` + SLA), and
    becomes ``escalated`` if the priority rose. Other open items only ever rise in
    priority (an agent's escalation or a reopening is not undone by rules); a resolved item
    does not change.
    """
    query = _state_query().where(queue_items.c.record_id == record_id)
    if _is_postgresql(conn):
        query = query.with_for_update(of=queue_items)
    row = (await conn.execute(query)).first()
    if row is None or row.state == "resolved":
        return
    state = _State(*row)
    raised = _rank(priority) < _rank(state.priority)
    due_at = state.created_at + timedelta(seconds=sla_s[priority])
    if state.state == "new":
        values: dict[str, object] = {"team": team, "priority": priority, "due_at": due_at}
    elif raised:
        values = {"priority": priority, "due_at": min(state.due_at, due_at)}
    else:
        return
    if not raised:
        await conn.execute(update(queue_items).where(queue_items.c.id == state.id).values(values))
        return
    values["state"] = "escalated" if state.state == "new" else state.state
    detail = f"{state.priority} -> {priority} (rules replay)"
    await _apply(conn, state, _Change("escalate", REPLAY_ACTOR, now, values, detail))


async def follow_edit(
    conn: AsyncConnection,
    record_id: int,
    *,
    priority: str,
    sla_s: Mapping[str, int],
    now: datetime,
) -> None:
    """Log that the sender edited the message of ``record_id``; raise its item if need be.

    Runs inside the ingest transaction, once the record holds the edited text and the
    labels triaged from it (``priority``). The item's history gets an ``edited`` event, so
    an agent sees that the text changed under them. The priority only rises, as with a
    rules replay: an edit never undoes an escalation nor lowers what staff already see; a
    ``new`` item then becomes ``escalated``, due no later than ``now`` + the new SLA. A
    resolved item only logs the edit (a new message, not an edit, reopens a conversation).
    A record without an item of its own (a repeat, a follow-up folded into a conversation)
    has no history to log to.
    """
    query = _state_query().where(queue_items.c.record_id == record_id)
    if _is_postgresql(conn):
        query = query.with_for_update(of=queue_items)
    row = (await conn.execute(query)).first()
    if row is None:
        return
    state = _State(*row)
    values: dict[str, object] = {}
    detail = "the sender edited the message; text and labels follow the edit"
    if state.state != "resolved" and _rank(priority) < _rank(state.priority):
        values = {
            "state": "escalated" if state.state == "new" else state.state,
            "priority": priority,
            "due_at": min(state.due_at, now + timedelta(seconds=sla_s[priority])),
        }
        detail += f"; {state.priority} -> {priority}"
    await _apply(conn, state, _Change("edited", SYSTEM_ACTOR, now, values, detail))


# --- transactions and state changes ------------------------------------------------------


@asynccontextmanager
async def _session(engine: AsyncEngine, now: datetime) -> AsyncIterator[AsyncConnection]:
    """One transaction that first returns expired claims to the queue."""
    async with engine.begin() as conn:
        await _release_expired(conn, now)
        yield conn


async def _release_expired_claims(engine: AsyncEngine, now: datetime) -> None:
    """Return expired claims to the queue, taking the write lock only when there are some
    (a listing is a read, and most find none)."""
    async with reading(engine) as conn:
        expired = (
            await conn.execute(select(queue_items.c.id).where(_expired(now)).limit(1))
        ).first()
    if expired is not None:
        async with engine.begin() as conn:
            await _release_expired(conn, now)


def _expired(now: datetime) -> ColumnElement[bool]:
    return and_(queue_items.c.state == "claimed", queue_items.c.claim_expires_at <= now)


async def _release_expired(conn: AsyncConnection, now: datetime) -> int:
    expired = _expired(now)
    query = _state_query().where(expired).order_by(queue_items.c.id)
    if _is_postgresql(conn):
        query = query.with_for_update(skip_locked=True, of=queue_items)
    states = [_State(*row) for row in (await conn.execute(query)).all()]
    if not states:
        return 0
    claimed_from = await _claimed_from(conn, [state.id for state in states])
    released = 0
    for state in states:
        waiting = {
            "state": claimed_from.get(state.id, "new"),
            "assignee": None,
            "claimed_at": None,
            "claim_expires_at": None,
        }
        detail = f"claim by {state.assignee} expired at {_iso(state.claim_expires_at)}"
        released += await _apply(
            conn, state, _Change("release", SYSTEM_ACTOR, now, waiting, detail)
        )
    return released


async def _claimed_from(conn: AsyncConnection, item_ids: Sequence[int]) -> dict[int, str]:
    """The waiting state each item was in when it was last claimed."""
    rows = await conn.execute(
        select(queue_events.c.item_id, queue_events.c.from_state)
        .where(queue_events.c.item_id.in_(item_ids), queue_events.c.action == "claim")
        .order_by(queue_events.c.id)
    )
    return {item_id: from_state for item_id, from_state in rows.all()}


async def _take(
    conn: AsyncConnection, state: _State, agent: Actor, at: datetime, timeout_s: float
) -> None:
    expires_at = at + timedelta(seconds=timeout_s)
    values: dict[str, object] = {
        "state": "claimed",
        "assignee": agent.name,
        "claim_expires_at": expires_at,
    }
    if state.state != "claimed":
        values["claimed_at"] = at
    action = "renew" if state.state == "claimed" else "claim"
    until = _iso(expires_at)
    await _change(conn, state, _Change(action, agent.name, at, values, f"until {until}"))
    detail = {"from": state.state, "until": until}
    await audit.append(conn, agent, action, at=at, item_ref=state.reference, detail=detail)


async def _change(conn: AsyncConnection, state: _State, change: _Change) -> None:
    """Apply a change decided on ``state``; refuse it if the item moved meanwhile."""
    if not await _apply(conn, state, change):
        raise ConflictError(f"{state.reference} changed while this was decided; try again")


async def _apply(conn: AsyncConnection, state: _State, change: _Change) -> bool:
    """Update the item if it is still as ``state`` says, and log the event; False if not.

    A change without ``values`` only logs the event.
    """
    if change.values:
        unchanged = and_(
            queue_items.c.id == state.id,
            queue_items.c.state == state.state,
            queue_items.c.assignee.is_not_distinct_from(state.assignee),
        )
        result = await conn.execute(update(queue_items).where(unchanged).values(change.values))
        if result.rowcount != 1:
            return False
    event = {
        "item_id": state.id,
        "at": change.at,
        "actor": change.actor,
        "action": change.action,
        "from_state": state.state,
        "to_state": change.values.get("state", state.state),
        "detail": change.detail,
    }
    await conn.execute(insert(queue_events).values(event))
    return True


async def _locate(
    conn: AsyncConnection, reference: str, *, lock: bool, scope: Scope | None = None
) -> _State:
    query = _state_query().where(feedback_records.c.reference == reference)
    if lock and _is_postgresql(conn):
        query = query.with_for_update(of=queue_items)
    row = (await conn.execute(query)).first()
    if row is not None and (scope is None or await _allowed(conn, row.id, scope)):
        return _State(*row)
    if scope is not None and not await _record_allowed(conn, reference, scope):
        raise NotFoundError(_NO_RECORD.format(reference=reference))
    raise NotFoundError(await _why_missing(conn, reference))


async def _allowed(conn: AsyncConnection, item_id: int, scope: Scope) -> bool:
    """Whether ``scope`` allows the item ``item_id``."""
    query = (
        select(queue_items.c.id)
        .join(feedback_records, feedback_records.c.id == queue_items.c.record_id)
        .where(queue_items.c.id == item_id, _visible_item(scope))
    )
    return (await conn.scalar(query)) is not None


async def _record_allowed(conn: AsyncConnection, reference: str, scope: Scope) -> bool:
    """Whether ``scope`` allows the record ``reference`` (a hidden one is told as unknown)."""
    query = (
        select(feedback_records.c.id)
        .select_from(_records_with_items())
        .where(feedback_records.c.reference == reference, _visible_record(scope))
    )
    return (await conn.scalar(query)) is not None


async def _why_missing(conn: AsyncConnection, reference: str) -> str:
    """Name the problem: no such record, or where the record is worked on instead."""
    row = (
        await conn.execute(
            select(
                feedback_records.c.channel,
                feedback_records.c.thread_key,
                _original.c.reference.label("original"),
            )
            .outerjoin(_original, _original.c.id == feedback_records.c.duplicate_of)
            .where(feedback_records.c.reference == reference)
        )
    ).first()
    if row is None:
        return _NO_RECORD.format(reference=reference)
    if row.original is not None:
        return f"{reference} repeats {row.original} and is worked on there"
    joined = await conn.scalar(
        select(feedback_records.c.reference)
        .join(queue_items, queue_items.c.record_id == feedback_records.c.id)
        .where(
            feedback_records.c.channel == row.channel,
            feedback_records.c.thread_key == row.thread_key,
        )
        .order_by(queue_items.c.id.desc())
        .limit(1)
    )
    if joined is not None:
        return f"{reference} joined the conversation of {joined} and is worked on there"
    return f"{reference} has no queue item"


async def _latest_items(
    conn: AsyncConnection, by_record: Mapping[int, FeedbackRecord]
) -> dict[tuple[str, str, str], _State]:
    """The newest item of each conversation and sender that the new records belong to."""
    threads = {record.message.thread_key for record in by_record.values()}
    if not threads:
        return {}
    conversation = (
        feedback_records.c.channel,
        feedback_records.c.thread_key,
        feedback_records.c.sender_id,
    )
    rows = await conn.execute(
        _state_query(*conversation, queue_items.c.record_id)
        .where(feedback_records.c.thread_key.in_(threads))
        .order_by(queue_items.c.id)
    )
    latest: dict[tuple[str, str, str], _State] = {}
    for row in rows.all():
        if row.record_id not in by_record:
            latest[(row.channel, row.thread_key, row.sender_id)] = _State(*row[:9])
    return latest


async def _copies(conn: AsyncConnection, record_ids: Sequence[int]) -> set[int]:
    """Those of ``record_ids`` whose message was stored before (through another source)."""
    if not record_ids:
        return set()
    earlier = feedback_records.alias("earlier")
    rows = await conn.execute(
        select(feedback_records.c.id).where(
            feedback_records.c.id.in_(record_ids),
            select(earlier.c.id)
            .where(
                earlier.c.channel == feedback_records.c.channel,
                earlier.c.external_id == feedback_records.c.external_id,
                earlier.c.id < feedback_records.c.id,
            )
            .exists(),
        )
    )
    return set(rows.scalars())


async def _reopen(
    conn: AsyncConnection,
    state: _State,
    follow_ups: Sequence[tuple[int, FeedbackRecord]],
    sla_s: Mapping[str, int],
    now: datetime,
) -> int:
    labels = [record.classification.priority for _, record in follow_ups]
    priority = min((state.priority, *labels), key=_rank)
    references = ", ".join(record.reference for _, record in follow_ups)
    sender = follow_ups[0][1].message.sender.handle
    detail = f"{sender} wrote again: {references}"
    if priority != state.priority:
        detail += f"; {state.priority} -> {priority}"
    values = {
        "state": "reopened",
        "priority": priority,
        "due_at": now + timedelta(seconds=sla_s[priority]),
        "assignee": None,
        "claimed_at": None,
        "claim_expires_at": None,
        "resolved_at": None,
        "resolution_note": None,
    }
    reopened = await _apply(conn, state, _Change("reopen", SYSTEM_ACTOR, now, values, detail))
    if not reopened:  # reopened by a concurrent batch: the new records keep their own items
        return 0
    record_ids = [record_id for record_id, _ in follow_ups]
    await conn.execute(delete(queue_items).where(queue_items.c.record_id.in_(record_ids)))
    return 1


# --- queries -----------------------------------------------------------------------------


def _visible_item(scope: Scope | None) -> ColumnElement[bool]:
    """Items ``scope`` allows, in a query joining queue items to their records."""
    if scope is None:
        return true()
    return scope.clause(queue_items.c.team, feedback_records.c.category)


def _visible_record(scope: Scope | None) -> ColumnElement[bool]:
    """Records ``scope`` allows, by their item's team (their own without one).

    For a query over :func:`_records_with_items`.
    """
    if scope is None:
        return true()
    team = func.coalesce(queue_items.c.team, feedback_records.c.team)
    return scope.clause(team, feedback_records.c.category)


def _records_with_items() -> Join:
    return feedback_records.outerjoin(queue_items, queue_items.c.record_id == feedback_records.c.id)


def _state_query(*extra: ColumnElement[Any]) -> Select[Any]:
    return select(
        queue_items.c.id,
        feedback_records.c.reference,
        queue_items.c.state,
        queue_items.c.priority,
        queue_items.c.assignee,
        queue_items.c.created_at,
        queue_items.c.due_at,
        queue_items.c.claim_expires_at,
        queue_items.c.resolved_at,
        *extra,
    ).join(feedback_records, feedback_records.c.id == queue_items.c.record_id)


_original = feedback_records.alias("original")
#: Outbox rows that carry resolution notices (resolution.py), not acknowledgments.
_notice_rows = select(resolution_notices.c.outbox_id).where(
    resolution_notices.c.outbox_id.is_not(None)
)


def _item_columns(extra: Sequence[ColumnElement[Any]] = ()) -> Select[Any]:
    record = feedback_records.c
    return (
        select(
            queue_items.c.id,
            record.reference,
            queue_items.c.state.label("status"),
            queue_items.c.priority,
            queue_items.c.team,
            queue_items.c.assignee,
            queue_items.c.created_at,
            queue_items.c.due_at,
            queue_items.c.claimed_at,
            queue_items.c.claim_expires_at,
            queue_items.c.resolved_at,
            queue_items.c.resolution_note,
            record.channel,
            record.source,
            record.external_id,
            record.sender_handle.label("sender"),
            record.sender_name,
            record.subject,
            record.text,
            record.language,
            record.category,
            record.received_at,
            _original.c.reference.label("duplicate_of"),
            record.incident_id,
            incidents.c.title.label("incident_title"),
            *extra,
        )
        .select_from(queue_items)
        .join(feedback_records, record.id == queue_items.c.record_id)
        .outerjoin(_original, _original.c.id == record.duplicate_of)
        .outerjoin(incidents, incidents.c.id == record.incident_id)
    )


def _record_columns() -> list[ColumnElement[Any]]:
    record = feedback_records.c
    return [
        record.id.label("record_id"),
        record.full_text,
        record.reasons,
        record.redactions,
        record.entities,
        record.notes,
        record.attachments,
        record.thread_key,
        record.sender_id,
        record.ack_decision,
        record.ack_reason,
        record.ack_code,
    ]


def _listing(filters: QueueFilter, scope: Scope | None = None) -> Select[Any]:
    record = feedback_records.c
    matches: list[ColumnElement[bool]] = [_visible_item(scope)]
    for value, column in (
        (filters.team, queue_items.c.team),
        (filters.priority, queue_items.c.priority),
        (filters.channel, record.channel),
        (filters.language, record.language),
        (filters.category, record.category),
        (filters.incident_id, record.incident_id),
    ):
        if value is not None:
            matches.append(column == value)
    if filters.status == OPEN:
        matches.append(UNRESOLVED)
    elif filters.status is not None:
        matches.append(queue_items.c.state == filters.status)
    return (
        _item_columns()
        .where(*matches)
        .order_by(queue_items.c.priority, queue_items.c.due_at, queue_items.c.id)
    )


def _after(priority: str, due_at: datetime, item_id: int) -> ColumnElement[bool]:
    """Rows after (priority, due_at, id) in listing order, portable to SQLite."""
    p, d, i = queue_items.c.priority, queue_items.c.due_at, queue_items.c.id
    return or_(
        p > priority,
        and_(p == priority, d > due_at),
        and_(p == priority, d == due_at, i > item_id),
    )


async def _item_by_id(conn: AsyncConnection, item_id: int, now: datetime) -> QueueItem:
    row = (await conn.execute(_item_columns().where(queue_items.c.id == item_id))).one()
    return _item(row, now)


def _item(row: Row[Any], now: datetime) -> QueueItem:
    values = {name: getattr(row, name) for name in _ITEM_COLUMNS}
    return QueueItem(**values, overdue=row.status != "resolved" and row.due_at <= now)


_ITEM_COLUMNS: Final = tuple(name for name in QueueItem.__dataclass_fields__ if name != "overdue")


async def _acknowledgment(conn: AsyncConnection, row: Row[Any]) -> Acknowledgment:
    reply = (
        await conn.execute(
            select(
                outbox.c.state,
                outbox.c.attempts,
                outbox.c.last_error,
                outbox.c.sent_at,
                outbox.c.payload,
            )
            .where(outbox.c.record_id == row.record_id, outbox.c.id.not_in(_notice_rows))
            .order_by(outbox.c.id.desc())
            .limit(1)
        )
    ).first()
    payload = reply.payload if reply else {}
    return Acknowledgment(
        decision=row.ack_decision,
        reason=row.ack_reason,
        code=row.ack_code,
        outbox_state=reply.state if reply else None,
        attempts=reply.attempts if reply else 0,
        last_error=reply.last_error if reply else None,
        sent_at=reply.sent_at if reply else None,
        subject=payload.get("subject"),
        text=payload.get("text"),
    )


async def _thread(
    conn: AsyncConnection, row: Row[Any], limit: int, scope: Scope | None
) -> tuple[ThreadEntry, ...]:
    record = feedback_records.c
    same_thread = record.thread_key == row.thread_key
    query = (
        select(
            record.reference,
            record.thread_key,
            record.received_at,
            record.channel,
            record.sender_handle,
            record.subject,
            record.text,
            _original.c.reference.label("duplicate_of"),
            queue_items.c.state,
        )
        .outerjoin(_original, _original.c.id == record.duplicate_of)
        .outerjoin(queue_items, queue_items.c.record_id == record.id)
        .where(
            record.id != row.record_id,
            record.channel == row.channel,
            or_(same_thread, record.sender_id == row.sender_id),
            _visible_record(scope),
        )
        .order_by(record.received_at.desc(), record.id.desc())
        .limit(limit)
    )
    return tuple(
        ThreadEntry(
            reference=entry.reference,
            relation="thread" if entry.thread_key == row.thread_key else "sender",
            received_at=entry.received_at,
            channel=entry.channel,
            sender=entry.sender_handle,
            subject=entry.subject,
            text=entry.text,
            duplicate_of=entry.duplicate_of,
            status=entry.state,
        )
        for entry in (await conn.execute(query)).all()
    )


async def _history(conn: AsyncConnection, item_id: int) -> tuple[QueueEvent, ...]:
    c = queue_events.c
    rows = await conn.execute(
        select(c.at, c.actor, c.action, c.from_state, c.to_state, c.detail)
        .where(c.item_id == item_id)
        .order_by(c.id)
    )
    return tuple(QueueEvent(*row) for row in rows.all())


async def _incidents(
    conn: AsyncConnection, incident_ids: Sequence[int], scope: Scope | None = None
) -> tuple[IncidentSummary, ...]:
    """The incidents ``incident_ids``, in that order, with their items counted by state."""
    if not incident_ids:
        return ()
    counts = await conn.execute(
        select(feedback_records.c.incident_id, queue_items.c.state, func.count())
        .join(queue_items, queue_items.c.record_id == feedback_records.c.id)
        .where(feedback_records.c.incident_id.in_(incident_ids), _visible_item(scope))
        .group_by(feedback_records.c.incident_id, queue_items.c.state)
    )
    by_state: dict[int, dict[str, int]] = {}
    for incident_id, state, count in counts.all():
        by_state.setdefault(incident_id, {})[state] = count
    c = incidents.c
    rows = await conn.execute(
        select(
            c.id, c.title, c.category, c.status, c.first_seen, c.last_seen, c.report_count
        ).where(c.id.in_(incident_ids))
    )
    found = {row.id: IncidentSummary(*row, items=by_state.get(row.id, {})) for row in rows.all()}
    return tuple(found[incident_id] for incident_id in incident_ids if incident_id in found)


# --- inputs ------------------------------------------------------------------------------


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("naive datetime given as now; use an aware UTC value")
    return now


def _reference(reference: str) -> str:
    ref = reference.strip().upper()
    if not _REFERENCE.fullmatch(ref):
        raise InvalidInputError(
            f"{reference!r} is not a reference (expected FB-XXXX-XXXX)", field="reference"
        )
    return ref


def _agent(agent: str) -> str:
    name = agent.strip()
    if not name or len(name) > 128 or not name.isprintable():
        raise InvalidInputError(
            f"{agent!r}: expected the acting person's name, 1 to 128 printable characters",
            field="agent",
        )
    return name


def _note(note: str | None) -> str | None:
    text = (note or "").strip()
    if "\x00" in text:  # PostgreSQL's text cannot hold it
        raise InvalidInputError("a NUL character cannot be stored", field="note")
    if len(text) > MAX_NOTE_CHARS:
        raise InvalidInputError(
            f"{len(text)} characters; at most {MAX_NOTE_CHARS} are kept", field="note"
        )
    return text or None


def _check_label(name: str, value: str | None) -> None:
    if value is not None and not _LABEL.fullmatch(value):
        raise InvalidInputError(
            f"{value!r}: expected a name of letters, digits, '_', '.' or '-' (at most 32)",
            field=name,
        )


def _check_choice(name: str, value: str | None, choices: Sequence[str]) -> None:
    if value is not None and value not in choices:
        raise InvalidInputError(
            f"unknown value {value!r}; expected one of {', '.join(choices)}", field=name
        )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidInputError(f"expected a positive id, got {text!r}", field="incident")
    return value


def _encode_cursor(row: Row[Any]) -> str:
    position = json.dumps([row.priority, row.due_at.isoformat(), row.id])
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, datetime, int]:
    """The listing position ``cursor`` encodes (see :func:`_encode_cursor`)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        priority, due_at, item_id = json.loads(raw)
        position = (str(priority), datetime.fromisoformat(due_at), int(item_id))
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            "not a cursor this listing returned; start again without it", field="cursor"
        ) from exc
    if position[0] not in PRIORITIES or position[1].tzinfo is None:
        raise InvalidInputError(
            "not a cursor this listing returned; start again without it", field="cursor"
        )
    return position


# --- small helpers -----------------------------------------------------------------------


def _rank(priority: str) -> int:
    return PRIORITIES.index(priority)


def _conversation(record: FeedbackRecord) -> tuple[str, str, str]:
    message = record.message
    return (message.channel, message.thread_key, message.sender.id)


def _held(state: _State) -> str:
    return f"{state.reference} is claimed by {state.assignee} until {_iso(state.claim_expires_at)}"


def _iso(when: datetime | None) -> str:
    return when.isoformat(timespec="seconds") if when else "-"


def _is_postgresql(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"
