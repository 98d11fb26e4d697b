"""Queue API under load: requests/s and latency of listing and claiming over 100,000 items.

Run from the repository root::

    python3 benchmarks/queue_api.py [--items 100000] [--clients 50] [--seconds 20]
        [--pg-url postgresql://postgres@127.0.0.1:5432/postgres] [--extra-index]
        [--explain] [--profile]

On a fresh SQLite file, then with ``--pg-url`` on a fresh PostgreSQL database made on that
server (and dropped after), both migrated with the project's migrations, it:

1. builds N queue items that look like a support desk's. The 167 messages of
   ``../shared/corpora/triage-dev/messages.jsonl`` go once through the real pipeline
   (``Triage.record``: redaction, language, rules, dedupe, incidents, the acknowledgment), and
   their records are copied round after round, each copy with its own external id, sender,
   reference, thread, time (the copies spread evenly over the last 30 days) and
   acknowledgment text; the copy of a repeat points at its original's copy of that round, and
   the reports of one incident in 20 rounds form one incident. They are stored through
   ``storage.batch.commit_batch`` (the daemon's ingest transaction: records, queue items,
   incidents, outbox rows, the cursor), one batch per source (e-mail, X, Telegram) for every
   four rounds, in time order, until N queue items exist (repeats get none, so more than N
   records are stored);
2. gives the queue a history: most older items resolved (claimed then resolved by one of 24
   agents, some without a claim, some with a note), a few escalated, some recent ones claimed
   now (their claims outlive the run). ``queue.py`` takes one transaction per change, too slow
   for 100,000 changes, so these are bulk UPDATEs of ``queue_items`` and bulk INSERTs of
   ``queue_events`` and ``audit_log`` rows shaped as ``queue.py`` writes them (the same
   columns, states, actions and details);
3. adds the agents through ``agents.add_agent`` and ``agents.issue_token``: per client one
   to list as (every fifth a lead, who sees every team) and ``AGENTS_PER_CLAIMER`` to claim
   as, all of the client's team. Steps 1 to 3 are timed apart and not counted;
4. starts the real API server in a child process (this script with ``--serve``, which runs
   ``inbox-daemon web --port 0`` over the database: default settings, JSON logs at INFO to a
   file), so its CPU is not the clients'; a fresh server for each phase;
5. runs C clients (asyncio + aiohttp, one keep-alive connection each) for S seconds a phase,
   after a listing warm-up that is not counted:
   - **list**: ``GET /api/v1/items`` (50 a page) with a mix of filters (status ``open``, a
     team, a priority, ``claimed``, a team's ``resolved`` items, none), each client browsing
     1 to 5 pages of one filter through ``next_cursor`` before picking another;
   - **claim**: ``POST /api/v1/items/claim-next`` for the client's team, and ``POST
     /api/v1/items/{reference}/claim`` of a reference from the team's pool (its 100 most
     urgent waiting items when the phase starts), half and half; each claim is made by the
     client's next agent, so claims from different agents race for the same rows. A 409 (the
     item is someone else's) is the expected answer to a lost race and is counted apart;
6. checks in SQL after the claim phase that no item was claimed twice (claim events per item
   since the phase began, and holders against the claim's agent), and in the answers that no
   reference was won by two agents: printed as figures, not asserted;
7. prints, per backend and phase, requests/s, p50, p99 and max latency, the answers by status,
   the CPU seconds of the server process and of the clients, and the errors the server logged.

``--extra-index`` also creates ``EXTRA_INDEXES`` by hand on the benchmark database after the
list phase, runs the list phase again, and drops them before the claim phase (the schema is
Alembic's; this only measures what an index would change). ``--explain`` prints the plans
of the listing's query (captured from ``queue.list_items``) on each backend: ``EXPLAIN QUERY
PLAN`` on SQLite, ``EXPLAIN (ANALYZE, BUFFERS)`` on PostgreSQL. ``--profile`` runs the
server under cProfile and prints its top functions per phase (its event loop's thread only:
aiosqlite runs SQLite in threads of its own; and the figures are then the profiled server's).

benchmarks/README.md has the figures of a run and what they show.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import graphlib
import importlib.metadata
import io
import json
import logging
import math
import os
import platform
import pstats
import random
import re
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

ROOT = Path(__file__).resolve().parents[1]
# The package may not be installed: import it (and its adapters) from the tree.
sys.path[:0] = [str(ROOT), str(ROOT / "adapters")]

import aiohttp  # noqa: E402
from sqlalchemy import bindparam, event, func, insert, select, text, update  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from benchmarks.ingest_imap import postgres_database  # noqa: E402
from inbox_daemon import queue  # noqa: E402
from inbox_daemon.agents import Agent, add_agent, issue_token  # noqa: E402
from inbox_daemon.audit import Actor  # noqa: E402
from inbox_daemon.config import Settings, VisibilitySettings, load_settings  # noqa: E402
from inbox_daemon.evaluation import read_lines, settings_for  # noqa: E402
from inbox_daemon.interfaces import FeedbackRecord, Identity, IncidentLink  # noqa: E402
from inbox_daemon.pipeline.dedupe import DedupeIndex  # noqa: E402
from inbox_daemon.pipeline.reference import new_reference  # noqa: E402
from inbox_daemon.pipeline.reply_policy import ReplyContext  # noqa: E402
from inbox_daemon.pipeline.triage import load_triage  # noqa: E402
from inbox_daemon.storage.batch import BatchPlan, SenderLimits, commit_batch  # noqa: E402
from inbox_daemon.storage.engine import create_engine, database_url  # noqa: E402
from inbox_daemon.storage.migrate import upgrade  # noqa: E402
from inbox_daemon.storage.repository import acquire_lease  # noqa: E402
from inbox_daemon.storage.schema import (  # noqa: E402
    audit_log,
    feedback_records,
    incidents,
    outbox,
    queue_events,
    queue_items,
)
from inbox_daemon.visibility import Scope  # noqa: E402

CORPUS: Final = ROOT.parent / "shared" / "corpora" / "triage-dev" / "messages.jsonl"
SEED: Final = 20261124
#: The sources the copies arrive through, by channel; one lease and cursor each.
SOURCES: Final = {"email": "support-mail", "twitter": "x-mentions", "telegram": "telegram-bot"}
OWNER: Final = "queue-api-bench"
HISTORY_DAYS: Final = 30
#: Rounds of the corpus stored per batch of each source (a repeat and its original share one).
ROUNDS_PER_BATCH: Final = 4
#: Copies of the corpus whose reports of one incident make one incident.
ROUNDS_PER_INCIDENT: Final = 20
INGEST_LAG: Final = timedelta(seconds=20)
#: On PostgreSQL, ANALYZE after every so many windows of the load. A database filled this
#: fast outruns autovacuum: without it, near 100,000 records each batch's conversation
#: lookup (``reopen_resolved_threads``) ran as a parallel sequential scan of over a second,
#: a state a database in use does not stay in.
ANALYZE_EVERY_WINDOWS: Final = 5
#: Agents each claiming client signs in as, one after the other: every claim comes from an
#: agent who has not claimed in the phase yet, until a client has used them all.
AGENTS_PER_CLAIMER: Final = 40
#: Who creates the benchmark's agents and tokens, in the audit log.
BENCH_ACTOR: Final = Actor("queue-api-bench", "cli queue-api-bench")
PAGE_LIMIT: Final = 50
POOL_PER_TEAM: Final = 100
PROFILE_ROWS: Final = 25
AGENTS: Final = (
    *("alice", "bob", "carmen", "dmitri", "elif", "farah", "gustavo", "hana", "ivan", "jia"),
    *("kofi", "lena", "mateo", "nadia", "oskar", "priya", "quentin", "rosa", "sven", "tomoko"),
    *("uma", "viktor", "wen", "yusuf"),
)
NOTES: Final = (
    "answered by mail",
    "refunded the fee",
    "withdrawal released after the node resync",
    "KYC documents approved",
    "password reset link sent; 2FA re-bound",
    "known issue, fixed in app 4.2.1",
    "spam",
    "duplicate of an earlier ticket",
    "explained the trading fee tiers",
)
#: Indexes ``--extra-index`` creates by hand for a before/after comparison of the listing.
EXTRA_INDEXES: Final = (
    "CREATE INDEX bench_ix_queue_items_team_priority_due_at_id "
    "ON queue_items (team, priority, due_at, id)",
    "CREATE INDEX bench_ix_queue_items_state_priority_due_at_id "
    "ON queue_items (state, priority, due_at, id)",
)


# --- the items -------------------------------------------------------------------------------


def corpus_records(settings: Settings) -> list[FeedbackRecord]:
    """The corpus messages triaged once by the real pipeline, in file order (repeats of an
    external id dropped, as the store absorbs them)."""
    triage = load_triage(settings)
    index = DedupeIndex(triage.dedupe)
    own = frozenset(address.lower() for address in settings.replies.own_addresses)
    records: dict[str, FeedbackRecord] = {}
    with CORPUS.open(encoding="utf-8") as lines:
        for line in read_lines(lines):
            message = line.message
            if message.external_id in records:
                continue
            context = ReplyContext(
                can_send=True,
                own_addresses=own,
                loop_marker=settings.replies.loop_marker,
                max_ack_age_s=settings.replies.max_ack_age_s,
                dry_run=False,
                now=message.received_at,
                rules=triage.reply_rules,
            )
            source = SOURCES[message.channel]
            records[message.external_id] = triage.record(
                message, source=source, context=context, index=index
            )
    return list(records.values())


_MESSAGE_ID: Final = re.compile(r"<([^<>\s]+)>")


@dataclass(slots=True)
class Copier:
    """Makes copy ``copy`` of each corpus record, keeping a round's repeats and incidents
    pointing inside that round."""

    copy: int
    references: dict[str, str] = field(default_factory=dict)

    def record(self, template: FeedbackRecord, received_at: datetime) -> FeedbackRecord:
        """The copy of ``template``, received at ``received_at``, with a fresh reference."""
        reference = new_reference()
        self.references[template.reference] = reference
        message = template.message
        sender = _sender(message.sender, self.copy)
        copied = replace(
            message,
            external_id=self._id(message.external_id),
            received_at=received_at,
            sender=sender,
            thread_key=self._id(message.thread_key),
            in_reply_to=self._id(message.in_reply_to) if message.in_reply_to else None,
            references=tuple(self._id(ref) for ref in message.references),
            headers={name: self._ids_in(value) for name, value in message.headers.items()},
            raw_ref=f"{message.raw_ref} copy {self.copy}",
        )
        reply = template.reply
        if reply is not None:
            reply = replace(
                reply,
                recipient=sender,
                subject=reply.subject.replace(template.reference, reference),
                text=reply.text.replace(template.reference, reference),
                html=reply.html.replace(template.reference, reference) if reply.html else None,
                thread_key=copied.thread_key,
                in_reply_to=copied.external_id,
                references=copied.references,
            )
        return replace(
            template,
            message=copied,
            reference=reference,
            reply=reply,
            duplicate_of=self._ref(template.duplicate_of),
            incident=self._incident(template.incident),
        )

    def _id(self, value: str) -> str:
        return f"c{self.copy}.{value}"

    def _ids_in(self, header: str) -> str:
        return _MESSAGE_ID.sub(lambda m: f"<{self._id(m.group(1))}>", header)

    def _ref(self, reference: str | None) -> str | None:
        return self.references.get(reference, reference) if reference else None

    def _incident(self, link: IncidentLink | None) -> IncidentLink | None:
        if link is None:
            return None
        members = tuple(self.references.get(member, member) for member in link.members)
        key = f"{link.key}/{self.copy // ROUNDS_PER_INCIDENT}"
        return replace(link, key=key, members=members)


def _sender(identity: Identity, copy: int) -> Identity:
    """A sender of this copy's own: ``name.12@domain``, ``@handle_12``."""
    handle = identity.handle
    local, at, domain = handle.rpartition("@")
    if at and local:
        handle = f"{local}.{copy}@{domain}"
    elif handle:
        handle = f"{handle}_{copy}"
    return replace(identity, id=handle.lower(), handle=handle)


def rounds(
    templates: Sequence[FeedbackRecord], items: int, *, now: datetime
) -> Iterator[list[FeedbackRecord]]:
    """Rounds of copies until ``items`` queue items exist (a repeat makes none), spread
    evenly over the last ``HISTORY_DAYS`` days, the last one a minute before ``now``."""
    originals = sum(1 for record in templates if record.duplicate_of is None)
    count = math.ceil(items / originals)
    step = timedelta(days=HISTORY_DAYS) / (count * len(templates))
    start = now - timedelta(minutes=1) - step * count * len(templates)
    made = 0
    for copy in range(count):
        copier = Copier(copy)
        copies: list[FeedbackRecord] = []
        for offset, template in enumerate(templates):
            if made == items and template.duplicate_of is None:
                break
            made += template.duplicate_of is None
            copies.append(copier.record(template, start + step * (copy * len(templates) + offset)))
        yield copies


def windows(
    templates: Sequence[FeedbackRecord], items: int, *, now: datetime
) -> Iterator[list[FeedbackRecord]]:
    """The copies, ``ROUNDS_PER_BATCH`` rounds at a time (each source's batch of a window
    holds whole rounds, so a repeat is stored with or after its original)."""
    window: list[FeedbackRecord] = []
    for copy, copies in enumerate(rounds(templates, items, now=now)):
        window += copies
        if (copy + 1) % ROUNDS_PER_BATCH == 0:
            yield window
            window = []
    if window:
        yield window


def source_order(templates: Sequence[FeedbackRecord]) -> tuple[str, ...]:
    """The sources in an order that stores an original before its repeats and an incident's
    first report before the later ones that name it (they may come through other sources)."""
    channel_of = {record.reference: record.message.channel for record in templates}
    graph: dict[str, set[str]] = {channel: set() for channel in SOURCES}
    for record in templates:
        before = {record.duplicate_of} if record.duplicate_of else set()
        before |= set(record.incident.members) if record.incident else set()
        for reference in before:
            if reference in channel_of and channel_of[reference] != record.message.channel:
                graph[record.message.channel].add(channel_of[reference])
    order = graphlib.TopologicalSorter(graph).static_order()
    return tuple(SOURCES[channel] for channel in order)


# --- loading ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadFigures:
    """What was stored and how long it took (not counted in the figures)."""

    records: int
    batches: int
    ingest_s: float
    history_s: float
    counts: Mapping[str, int]


async def load_items(
    engine: AsyncEngine,
    templates: Sequence[FeedbackRecord],
    settings: Settings,
    *,
    items: int,
    now: datetime,
) -> tuple[int, int, float]:
    """Store the copies through ``commit_batch``; the records, batches and seconds."""
    started = time.perf_counter()
    limits = SenderLimits(settings.replies.per_sender_per_hour, settings.replies.per_sender_per_day)
    first = now - timedelta(days=HISTORY_DAYS + 1)
    for source in SOURCES.values():
        await acquire_lease(engine, source, OWNER, ttl_s=10 * 365 * 86400, now=first)
    order, versions = source_order(templates), dict.fromkeys(SOURCES.values(), 0)
    records = batches = 0
    for number, window in enumerate(windows(templates, items, now=now)):
        by_source: dict[str, list[FeedbackRecord]] = defaultdict(list)
        for record in window:
            by_source[record.source].append(record)
        for source in (source for source in order if by_source[source]):
            batch = by_source[source]
            plan = BatchPlan(
                source=source,
                owner=OWNER,
                records=batch,
                failures=(),
                cursor_version=versions[source] or None,
                next_cursor={"window": number},
                sla_s=settings.queue.sla_s,
                limits=limits,
            )
            # Stored a little after the last one arrived, as a poll would.
            await commit_batch(engine, plan, now=batch[-1].message.received_at + INGEST_LAG)
            versions[source] += 1
            records, batches = records + len(batch), batches + 1
        if engine.dialect.name == "postgresql" and number % ANALYZE_EVERY_WINDOWS == 0:
            await analyze(engine)
    return records, batches, time.perf_counter() - started


async def analyze(engine: AsyncEngine) -> None:
    """Refresh PostgreSQL's planner statistics, as autovacuum does on a database in use."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql("ANALYZE")


@dataclass(frozen=True, slots=True)
class Item:
    """The columns of a fresh queue item that its history depends on."""

    id: int
    reference: str
    priority: str
    created_at: datetime
    due_at: datetime


@dataclass(frozen=True, slots=True)
class Act:
    """One change in an item's past, as ``queue.py`` logs it: a queue event and an audit row."""

    action: str
    actor: str
    at: datetime
    states: tuple[str, str]
    detail: str
    audit: Mapping[str, Any]


@dataclass(slots=True)
class History:
    """The bulk changes that give the queue its past: item updates by kind, events, audit."""

    resolved: list[dict[str, Any]] = field(default_factory=list)
    claimed: list[dict[str, Any]] = field(default_factory=list)
    escalated: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)

    def log(self, item: Item, act: Act) -> None:
        """Append the ``queue_events`` row and the ``audit_log`` row of ``act``."""
        from_state, to_state = act.states
        self.events.append(
            {
                "item_id": item.id,
                "at": act.at,
                "actor": act.actor,
                "action": act.action,
                "from_state": from_state,
                "to_state": to_state,
                "detail": act.detail,
            }
        )
        self.audit.append(
            {
                "at": act.at,
                "actor": act.actor,
                "action": act.action,
                "origin": f"http 10.20.0.{AGENTS.index(act.actor) + 10}",
                "item_ref": item.reference,
                "detail": dict(act.audit),
            }
        )


def plan_history(
    items: Sequence[Item], settings: Settings, *, now: datetime, rng: random.Random
) -> History:
    """Decide each item's past: older items are mostly resolved, recent ones mostly waiting."""
    history = History()
    for item in items:
        age_s = (now - item.created_at).total_seconds()
        resolved_share = 0.9 if age_s > 7 * 86400 else 0.55 if age_s > 86400 else 0.15
        if rng.random() < resolved_share:
            _resolve(history, item, settings, now=now, rng=rng)
        elif rng.random() < 0.06:
            _claim_now(history, item, settings, now=now, rng=rng)
        elif rng.random() < 0.05 and item.priority != "P1":
            _escalate(history, item, settings, now=now, rng=rng)
    return history


def _resolve(
    history: History, item: Item, settings: Settings, *, now: datetime, rng: random.Random
) -> None:
    """Claimed then resolved by one agent (85 %), or resolved while waiting (spam, answered)."""
    agent = rng.choice(AGENTS)
    age_s = (now - item.created_at).total_seconds()
    sla_s = settings.queue.sla_s[item.priority]
    claimed_at = item.created_at + timedelta(seconds=min(age_s / 2, sla_s * rng.uniform(0.05, 1.5)))
    resolved_at = claimed_at + timedelta(
        seconds=min((now - claimed_at).total_seconds() / 2, rng.uniform(300, 4 * 3600))
    )
    note = rng.choice(NOTES) if rng.random() < 0.4 else None
    via_claim = rng.random() < 0.85
    history.resolved.append(
        {
            "item_id": item.id,
            "v_assignee": agent,
            "v_claimed_at": claimed_at if via_claim else None,
            "v_resolved_at": resolved_at,
            "v_note": note,
        }
    )
    if via_claim:
        until = _iso(claimed_at + timedelta(seconds=settings.queue.claim_timeout_s))
        claimed = {"from": "new", "until": until}
        history.log(
            item, Act("claim", agent, claimed_at, ("new", "claimed"), f"until {until}", claimed)
        )
    waited = "claimed" if via_claim else "new"
    resolved = {"from": waited, "note": note is not None}
    history.log(
        item, Act("resolve", agent, resolved_at, (waited, "resolved"), note or "", resolved)
    )


def _claim_now(
    history: History, item: Item, settings: Settings, *, now: datetime, rng: random.Random
) -> None:
    """Held by an agent since the last five minutes (the claim outlives the benchmark)."""
    agent = rng.choice(AGENTS)
    claimed_at = now - timedelta(seconds=rng.uniform(0, 300))
    until = claimed_at + timedelta(seconds=settings.queue.claim_timeout_s)
    history.claimed.append(
        {"item_id": item.id, "v_assignee": agent, "v_claimed_at": claimed_at, "v_until": until}
    )
    claimed = {"from": "new", "until": _iso(until)}
    history.log(
        item, Act("claim", agent, claimed_at, ("new", "claimed"), f"until {_iso(until)}", claimed)
    )


def _escalate(
    history: History, item: Item, settings: Settings, *, now: datetime, rng: random.Random
) -> None:
    """Raised one priority by a lead; due no later than the new priority's SLA allows."""
    raised = queue.PRIORITIES[queue.PRIORITIES.index(item.priority) - 1]
    at = item.created_at + (now - item.created_at) * rng.uniform(0.0, 0.5)
    due_at = min(item.due_at, at + timedelta(seconds=settings.queue.sla_s[raised]))
    history.escalated.append({"item_id": item.id, "v_priority": raised, "v_due_at": due_at})
    change = {"from": item.priority, "to": raised}
    detail = f"{item.priority} -> {raised}"
    history.log(item, Act("escalate", rng.choice(AGENTS), at, ("new", "escalated"), detail, change))


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


async def write_history(engine: AsyncEngine, history: History) -> None:
    """Apply the history in one transaction: three bulk UPDATEs and two bulk INSERTs."""
    by_id = queue_items.c.id == bindparam("item_id")
    statements = (
        (
            update(queue_items)
            .where(by_id)
            .values(
                state="resolved",
                assignee=bindparam("v_assignee"),
                claimed_at=bindparam("v_claimed_at"),
                resolved_at=bindparam("v_resolved_at"),
                resolution_note=bindparam("v_note"),
            ),
            history.resolved,
        ),
        (
            update(queue_items)
            .where(by_id)
            .values(
                state="claimed",
                assignee=bindparam("v_assignee"),
                claimed_at=bindparam("v_claimed_at"),
                claim_expires_at=bindparam("v_until"),
            ),
            history.claimed,
        ),
        (
            update(queue_items)
            .where(by_id)
            .values(
                state="escalated", priority=bindparam("v_priority"), due_at=bindparam("v_due_at")
            ),
            history.escalated,
        ),
    )
    async with engine.begin() as conn:
        for statement, rows in statements:
            if rows:
                await conn.execute(statement, rows)
        for table, rows in ((queue_events, history.events), (audit_log, history.audit)):
            if rows:
                await conn.execute(insert(table), rows)


async def give_history(engine: AsyncEngine, settings: Settings, *, now: datetime) -> float:
    """Plan and write the queue's past; the seconds it took."""
    started = time.perf_counter()
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                queue_items.c.id,
                feedback_records.c.reference,
                queue_items.c.priority,
                queue_items.c.created_at,
                queue_items.c.due_at,
            )
            .join(feedback_records, feedback_records.c.id == queue_items.c.record_id)
            .order_by(queue_items.c.id)
        )
        items = [Item(*row) for row in rows.all()]
    history = plan_history(items, settings, now=now, rng=random.Random(SEED))
    await write_history(engine, history)
    return time.perf_counter() - started


async def table_counts(engine: AsyncEngine) -> dict[str, int]:
    """Rows of the tables the API reads, and items by state."""
    counts: dict[str, int] = {}
    async with engine.connect() as conn:
        for name, table in (
            ("feedback records", feedback_records),
            ("queue items", queue_items),
            ("queue events", queue_events),
            ("incidents", incidents),
            ("outbox rows", outbox),
            ("audit rows", audit_log),
        ):
            counts[name] = await conn.scalar(select(func.count()).select_from(table)) or 0
        repeats = select(func.count()).where(feedback_records.c.duplicate_of.is_not(None))
        counts["records that repeat another"] = await conn.scalar(repeats) or 0
        linked = select(func.count()).where(feedback_records.c.incident_id.is_not(None))
        counts["records in an incident"] = await conn.scalar(linked) or 0
        by_state = await conn.execute(
            select(queue_items.c.state, func.count()).group_by(queue_items.c.state)
        )
        for state, count in by_state.all():
            counts[f"items {state}"] = count
    return counts


# --- the server ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Server:
    """The API server child process and where it listens."""

    url: str
    process: asyncio.subprocess.Process

    def cpu_s(self) -> float:
        """CPU seconds the server has used so far (user + system, all its threads)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_config(directory: Path, storage_url: str) -> Path:
    """The server's configuration: the database; the defaults for everything else."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "inbox.toml"
    path.write_text(f'config_version = 1\n[storage]\nurl = "{storage_url}"\n', encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def api_server(config: Path, profile_to: Path | None) -> AsyncIterator[Server]:
    """This script in ``--serve`` mode (``inbox-daemon web``) until the block ends."""
    profile = ["--profile-to", str(profile_to)] if profile_to else []
    log = (config.parent / "server.log").open("ab")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve",
        str(config),
        *profile,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
    )
    assert process.stdout is not None
    try:
        line = (await process.stdout.readline()).decode()
        found = re.search(r"https?://\S+", line)
        if found is None:
            raise SystemExit(f"the API server did not start; see {config.parent / 'server.log'}")
        yield Server(found.group(0).rstrip("/"), process)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 120)
        except TimeoutError:
            process.kill()
            await process.wait()
        log.close()


def serve(config: Path, profile_to: Path | None) -> None:
    """Run ``inbox-daemon web`` on a free port, under cProfile if asked."""
    from inbox_daemon.cli import main as cli_main

    argv = ["web", "--config", str(config), "--port", "0"]
    if profile_to is None:
        raise SystemExit(cli_main(argv))
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        code = cli_main(argv)
    finally:
        profiler.disable()
        profiler.dump_stats(profile_to)
    raise SystemExit(code)


# --- the clients -----------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """The latencies and answers of one kind of request."""

    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)

    def merge(self, other: Tally) -> None:
        """Add ``other``'s requests to this one's."""
        self.latencies_s += other.latencies_s
        self.statuses.update(other.statuses)
        self.failures.update(other.failures)


@dataclass(frozen=True, slots=True)
class Badge:
    """An agent the clients sign in as, with the bearer token issued to them."""

    name: str
    team: str
    role: str
    token: str


@dataclass(frozen=True, slots=True)
class Staff:
    """Per client: the agent it lists as, and the agents it claims as, in turn."""

    readers: tuple[Badge, ...]
    claimers: tuple[tuple[Badge, ...], ...]


async def hire(engine: AsyncEngine, name: str, team: str, role: str) -> Badge:
    """Add the agent and issue their token, as ``inbox-daemon agents add`` / ``token`` do."""
    await add_agent(engine, name, team, role=role, actor=BENCH_ACTOR)
    issued = await issue_token(engine, name, ttl_days=30, actor=BENCH_ACTOR)
    return Badge(name, team, role, issued.token)


async def hire_staff(
    engine: AsyncEngine, teams: Sequence[str], clients: int
) -> tuple[Staff, float]:
    """The agents of the history (no tokens) and of every client; the seconds it took.

    Client ``i`` works for team ``i mod teams``; every fifth reader is a lead (sees every
    team's items), the others and every claimer are agents (see their team's and the
    unrestricted teams' items).
    """
    started = time.perf_counter()
    for number, name in enumerate(AGENTS):
        await add_agent(engine, name, teams[number % len(teams)], actor=BENCH_ACTOR)
    readers, claimers = [], []
    for client in range(clients):
        team = teams[client % len(teams)]
        role = "lead" if client % 5 == 0 else "agent"
        readers.append(await hire(engine, f"bench-reader-{client:03d}", team, role))
        claimers.append(
            tuple(
                [
                    await hire(engine, f"bench-{client:03d}-{turn:03d}", team, "agent")
                    for turn in range(AGENTS_PER_CLAIMER)
                ]
            )
        )
    return Staff(tuple(readers), tuple(claimers)), time.perf_counter() - started


@dataclass(slots=True)
class Client:
    """One simulated user: a keep-alive connection, its agents, its random stream, tallies."""

    number: int
    session: aiohttp.ClientSession
    rng: random.Random
    reader: Badge
    claimers: tuple[Badge, ...]
    tallies: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    won: list[tuple[str, str]] = field(default_factory=list)
    turns: int = 0

    async def call(
        self,
        kind: str,
        path: str,
        badge: Badge,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, Any] | None]:
        """GET ``path`` (POST with a JSON ``body``) as ``badge``; time it to the answer's last
        byte and tally it."""
        tally = self.tallies[kind]
        method = "GET" if body is None else "POST"
        headers = {"Authorization": f"Bearer {badge.token}"}
        started = time.perf_counter()
        try:
            async with self.session.request(
                method, path, params=params, json=body, headers=headers
            ) as response:
                answer = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.failures[type(exc).__name__] += 1
            return 0, None
        tally.latencies_s.append(time.perf_counter() - started)
        tally.statuses[response.status] += 1
        return response.status, json.loads(answer) if response.status == 200 else None


@dataclass(frozen=True, slots=True)
class Workload:
    """What the clients ask for: the teams to filter by, the claim pool of each team."""

    teams: tuple[str, ...]
    pools: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def list_filter(rng: random.Random, team: str, priority: str) -> dict[str, str]:
    """One filter of the listing mix (weights in the module docstring's order)."""
    shapes: tuple[tuple[float, dict[str, str]], ...] = (
        (0.20, {"status": "open"}),
        (0.25, {"team": team, "status": "open"}),
        (0.10, {"team": team}),
        (0.10, {"priority": priority, "status": "open"}),
        (0.10, {"team": team, "priority": priority, "status": "open"}),
        (0.05, {"status": "claimed"}),
        (0.05, {"team": team, "status": "resolved"}),
        (0.15, {}),
    )
    weights = [weight for weight, _ in shapes]
    return dict(rng.choices([shape for _, shape in shapes], weights)[0])


async def browse(client: Client, workload: Workload, deadline: float) -> None:
    """List pages until ``deadline``: 1 to 5 pages of one filter, then another filter. A
    lead filters by any team, an agent by their own."""
    reader = client.reader
    while time.monotonic() < deadline:
        team = client.rng.choice(workload.teams) if reader.role == "lead" else reader.team
        params = list_filter(client.rng, team, client.rng.choice(queue.PRIORITIES))
        params["limit"] = str(PAGE_LIMIT)
        for page in range(client.rng.randint(1, 5)):
            kind = "list: first page" if page == 0 else "list: next pages"
            _, answer = await client.call(kind, "/api/v1/items", reader, params=params)
            cursor = answer.get("next_cursor") if answer else None
            if cursor is None or time.monotonic() >= deadline:
                break
            params = params | {"cursor": cursor}


async def claim(client: Client, workload: Workload, deadline: float) -> None:
    """Claim until ``deadline``, each time as the client's next agent: half the time the next
    item of their team, half the time a reference from their team's pool."""
    team = client.claimers[0].team
    pool = workload.pools.get(team, ())
    while time.monotonic() < deadline:
        badge = client.claimers[client.turns % len(client.claimers)]
        client.turns += 1
        if client.rng.random() < 0.5 or not pool:
            kind, path = "claim: next of a team", "/api/v1/items/claim-next"
            status, item = await client.call(kind, path, badge, body={"team": team})
        else:
            kind, path = (
                "claim: a given reference",
                f"/api/v1/items/{client.rng.choice(pool)}/claim",
            )
            status, item = await client.call(kind, path, badge, body={})
        if status == 200 and item is not None:
            client.won.append((item["reference"], badge.name))


@dataclass(frozen=True, slots=True)
class PhaseFigures:
    """One phase on one backend: its tallies by kind, wall time and CPU."""

    name: str
    seconds: float
    tallies: Mapping[str, Tally]
    server_cpu_s: float
    client_cpu_s: float
    won: tuple[tuple[str, str], ...]
    repeat_turns: int


async def run_phase(
    name: str, clients: Sequence[Client], server: Server, workload: Workload, seconds: float
) -> PhaseFigures:
    """Every client runs the phase's loop for ``seconds``; their tallies are merged."""
    loop = browse if name.startswith("list") else claim
    for client in clients:
        client.tallies.clear()
        client.won.clear()
        client.turns = 0
    server_cpu, client_cpu = server.cpu_s(), time.process_time()
    started = time.perf_counter()
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(loop(client, workload, deadline) for client in clients))
    elapsed = time.perf_counter() - started
    tallies: dict[str, Tally] = defaultdict(Tally)
    for client in clients:
        for kind, tally in client.tallies.items():
            tallies[kind].merge(tally)
    return PhaseFigures(
        name,
        elapsed,
        dict(sorted(tallies.items())),
        server.cpu_s() - server_cpu,
        time.process_time() - client_cpu,
        tuple(pair for client in clients for pair in client.won),
        sum(max(client.turns - len(client.claimers), 0) for client in clients),
    )


@contextlib.asynccontextmanager
async def open_clients(server: Server, staff: Staff) -> AsyncIterator[list[Client]]:
    """One client per reader of ``staff``, each with one keep-alive connection."""
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for number, (reader, claimers) in enumerate(
            zip(staff.readers, staff.claimers, strict=True)
        ):
            session = aiohttp.ClientSession(
                base_url=server.url,
                connector=aiohttp.TCPConnector(limit=1),
                timeout=aiohttp.ClientTimeout(total=120),
            )
            await stack.enter_async_context(session)
            rng = random.Random(SEED + number)
            clients.append(Client(number, session, rng, reader, claimers))
        yield clients


# --- checks and plans ------------------------------------------------------------------------


async def claim_pools(engine: AsyncEngine, teams: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The ``POOL_PER_TEAM`` most urgent waiting items of each team, in the API's order."""
    pools: dict[str, tuple[str, ...]] = {}
    for team in teams:
        page = await queue.list_items(
            engine, queue.QueueFilter(team=team, status=queue.OPEN), limit=queue.MAX_PAGE
        )
        waiting = [item.reference for item in page.items if item.status in queue.WAITING]
        pools[team] = tuple(waiting[:POOL_PER_TEAM])
    return pools


async def last_event_id(engine: AsyncEngine) -> int:
    """The newest ``queue_events`` id: claims after it belong to the claim phase."""
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.max(queue_events.c.id))) or 0)


async def double_claims(
    engine: AsyncEngine, mark: int, won: Sequence[tuple[str, str]]
) -> dict[str, int]:
    """Figures that would show an item claimed twice in the phase: the last three should
    be 0, and the answers 200 should be the claim events plus the renewals (an agent claiming
    again what they hold)."""
    claims = (
        select(queue_events.c.item_id, queue_events.c.actor)
        .where(queue_events.c.id > mark, queue_events.c.action == "claim")
        .subquery()
    )
    renewals = select(func.count()).where(
        queue_events.c.id > mark, queue_events.c.action == "renew"
    )
    twice = select(claims.c.item_id).group_by(claims.c.item_id).having(func.count() > 1)
    not_holder = (
        select(func.count())
        .select_from(claims.join(queue_items, queue_items.c.id == claims.c.item_id))
        .where(queue_items.c.assignee.is_distinct_from(claims.c.actor))
    )
    async with engine.connect() as conn:
        events = await conn.scalar(select(func.count()).select_from(claims)) or 0
        renewed = await conn.scalar(renewals) or 0
        items_twice = await conn.scalar(select(func.count()).select_from(twice.subquery())) or 0
        holders = await conn.scalar(not_holder) or 0
    agents: dict[str, set[str]] = defaultdict(set)
    for reference, agent in won:
        agents[reference].add(agent)
    return {
        "claims answered 200": len(won),
        "claim events in the database": events,
        "renewals": renewed,
        "items with two or more claim events": items_twice,
        "claimed items held by someone else than their claimer": holders,
        "references won by two or more agents (answers)": sum(len(a) > 1 for a in agents.values()),
    }


#: The team whose agent ``--explain`` lists as (an agent of it sees its own and the
#: unrestricted teams' items; a lead sees everything).
EXPLAIN_TEAM: Final = "customer_service"
#: The listings whose plans ``--explain`` prints: (label, filter, pages deep, as an agent
#: of ``EXPLAIN_TEAM`` rather than a lead).
EXPLAINED: Final[tuple[tuple[str, dict[str, str], int, bool], ...]] = (
    ("lead, everything open, page 1", {"status": "open"}, 1, False),
    ("lead, everything open, page 5", {"status": "open"}, 5, False),
    ("agent, everything open, page 1", {"status": "open"}, 1, True),
    ("agent, own team's open items", {"team": EXPLAIN_TEAM, "status": "open"}, 1, True),
    ("lead, a team's open items, page 5", {"team": "compliance", "status": "open"}, 5, False),
    (
        "lead, team + priority, open",
        {"team": "finance", "priority": "P2", "status": "open"},
        1,
        False,
    ),
    ("lead, claimed items", {"status": "claimed"}, 1, False),
    ("lead, a team's resolved items", {"team": "compliance", "status": "resolved"}, 1, False),
    ("agent, no filter, page 5", {}, 5, True),
)


@dataclass(frozen=True, slots=True)
class Captured:
    """A statement as the driver received it."""

    sql: str
    parameters: Any


async def listing_statement(
    engine: AsyncEngine, filters: Mapping[str, str], pages: int, scope: Scope | None
) -> tuple[Captured, float]:
    """The SQL ``queue.list_items`` sends for page ``pages`` of ``filters``, and the median
    milliseconds of that page's call (five calls, in-process, no HTTP)."""
    captured: list[Captured] = []

    def capture(_conn: object, _cursor: object, sql: str, parameters: object, *_: object) -> None:
        if "ORDER BY queue_items.priority" in sql and "LIMIT" in sql:
            captured.append(Captured(sql, parameters))

    query = queue.QueueFilter.parse(filters)
    cursor: str | None = None
    for _ in range(pages - 1):
        page = await queue.list_items(engine, query, cursor=cursor, limit=PAGE_LIMIT, scope=scope)
        cursor = page.next_cursor
    timings = []
    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        for _ in range(5):
            started = time.perf_counter()
            await queue.list_items(engine, query, cursor=cursor, limit=PAGE_LIMIT, scope=scope)
            timings.append(time.perf_counter() - started)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    return captured[-1], sorted(timings)[2] * 1000


async def print_plans(engine: AsyncEngine, title: str, visibility: VisibilitySettings) -> None:
    """The plan of each ``EXPLAINED`` listing on this backend, and its time in-process."""
    postgres = engine.dialect.name == "postgresql"
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
    print(f"{title}: plans of the listing query ({prefix.strip()})")
    agent = Agent("explain", EXPLAIN_TEAM, "agent", datetime.now(UTC), None)
    for label, filters, pages, as_agent in EXPLAINED:
        scope = Scope.of(agent, visibility) if as_agent else None
        statement, median_ms = await listing_statement(engine, filters, pages, scope)
        async with engine.connect() as conn:
            rows = (await conn.exec_driver_sql(prefix + statement.sql, statement.parameters)).all()
        print(f"  {label} {json.dumps(filters)}: list_items {median_ms:.1f} ms (median of 5)")
        for row in rows:
            print(f"    {row[-1]}")


async def create_extra_indexes(engine: AsyncEngine) -> float:
    """Create ``EXTRA_INDEXES``; the seconds it took."""
    started = time.perf_counter()
    async with engine.begin() as conn:
        for statement in EXTRA_INDEXES:
            await conn.exec_driver_sql(statement)
    return time.perf_counter() - started


async def drop_extra_indexes(engine: AsyncEngine) -> None:
    """Drop what :func:`create_extra_indexes` made: the claim phase runs on Alembic's schema."""
    async with engine.begin() as conn:
        for statement in EXTRA_INDEXES:
            name = statement.split()[2]
            await conn.exec_driver_sql(f"DROP INDEX {name}")


# --- reporting -------------------------------------------------------------------------------


def percentile_ms(sorted_s: Sequence[float], share: float) -> float:
    """The nearest-rank percentile of sorted seconds, in milliseconds."""
    if not sorted_s:
        return math.nan
    return sorted_s[max(math.ceil(share * len(sorted_s)) - 1, 0)] * 1000


def tally_row(label: str, tally: Tally, seconds: float) -> str:
    """One table row: requests, requests/s, p50, p99, max, then the answers by status."""
    latencies = sorted(tally.latencies_s)
    answers = ", ".join(f"{status}: {count}" for status, count in sorted(tally.statuses.items()))
    failures = ", ".join(f"{name}: {count}" for name, count in sorted(tally.failures.items()))
    return (
        f"  {label:<28} {len(latencies):>8} {len(latencies) / seconds:>8.1f} "
        f"{percentile_ms(latencies, 0.5):>8.1f} {percentile_ms(latencies, 0.99):>8.1f} "
        f"{percentile_ms(latencies, 1.0):>8.1f}   {answers}"
        + (f"; no answer: {failures}" if failures else "")
    )


def print_phase(backend: str, clients: int, phase: PhaseFigures) -> None:
    """The phase's table: each kind of request, then all of them together."""
    print(
        f"{backend}, {phase.name}: {clients} clients, {phase.seconds:.1f} s; CPU: server "
        f"{phase.server_cpu_s:.1f} s ({phase.server_cpu_s / phase.seconds:.0%} of a core), "
        f"clients {phase.client_cpu_s:.1f} s; load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"  {'request':<28} {'count':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8}   answers by status"
    )
    every = Tally()
    for kind, tally in phase.tallies.items():
        print(tally_row(kind, tally, phase.seconds))
        every.merge(tally)
    if len(phase.tallies) > 1:
        print(tally_row("all", every, phase.seconds))


def print_environment() -> None:
    """The machine and the versions the figures belong to."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"inbox-daemon queue API benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        f"load average {load} (1, 5, 15 min; other work on the machine skews the figures)"
    )
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("aiohttp", "sqlalchemy", "aiosqlite", "asyncpg")
    )
    print(
        f"machine: {os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, {versions}, SQLite {sqlite3.sqlite_version}"
    )


def print_load(backend: str, load: LoadFigures) -> None:
    """What the database holds and how long it took to make (not counted)."""
    print(
        f"{backend}: stored {load.records} records in {load.batches} commit_batch "
        f"transactions in {load.ingest_s:.1f} s ({load.records / load.ingest_s:.0f} records/s), "
        f"history in {load.history_s:.1f} s (not counted)"
    )
    print("  " + ", ".join(f"{name} {count}" for name, count in load.counts.items()))


def print_profile(path: Path, title: str) -> None:
    """The server's top functions by own time and by cumulative time."""
    for order in ("tottime", "cumulative"):
        stream = io.StringIO()
        stats = pstats.Stats(str(path), stream=stream)
        stats.sort_stats(order).print_stats(PROFILE_ROWS)
        report = stream.getvalue()
        print(f"{title}: server profile, top {PROFILE_ROWS} by {order}")
        print(report[report.find("   ncalls") :].rstrip())


# --- main ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    """The command line."""

    items: int
    clients: int
    seconds: float
    pg_url: str | None
    extra_index: bool
    explain: bool
    profile: bool

    @property
    def warmup_s(self) -> float:
        """The uncounted listing before each phase (connections, caches, the pool)."""
        return min(3.0, self.seconds / 5)


@dataclass(frozen=True, slots=True)
class Bench:
    """One backend under test: its database, the server's configuration, the agents."""

    backend: str
    engine: AsyncEngine
    config: Path
    staff: Staff
    options: Options


async def phase(bench: Bench, name: str, workload: Workload) -> PhaseFigures:
    """Start a server, warm it up with listings, run the phase, stop it; print the figures."""
    slug = re.sub(r"\W+", "-", f"{bench.backend}-{name}").strip("-").lower()
    profile_to = bench.config.parent / f"{slug}.prof" if bench.options.profile else None
    async with (
        api_server(bench.config, profile_to) as server,
        open_clients(server, bench.staff) as clients,
    ):
        warmup = Workload(workload.teams)
        await run_phase("list (warm-up)", clients, server, warmup, bench.options.warmup_s)
        figures = await run_phase(name, clients, server, workload, bench.options.seconds)
    print_phase(bench.backend, bench.options.clients, figures)
    if profile_to is not None:
        print_profile(profile_to, f"{bench.backend}, {name}")
    return figures


async def measure(bench: Bench, teams: tuple[str, ...]) -> None:
    """The list phase (and with ``--extra-index`` again with them), then the claim phase."""
    engine = bench.engine
    workload = Workload(teams)
    visibility = load_settings(bench.config).staff.visibility  # what the server applies
    if bench.options.explain:
        await print_plans(engine, bench.backend, visibility)
    await phase(bench, "list", workload)
    if bench.options.extra_index:
        seconds = await create_extra_indexes(engine)
        print(f"{bench.backend}: created the extra indexes in {seconds:.1f} s")
        if bench.options.explain:
            await print_plans(engine, f"{bench.backend} with the extra indexes", visibility)
        await phase(bench, "list with the extra indexes", workload)
        await drop_extra_indexes(engine)
    pools = await claim_pools(engine, workload.teams)
    mark = await last_event_id(engine)
    claimed = await phase(bench, "claim", replace(workload, pools=pools))
    checks = await double_claims(engine, mark, claimed.won)
    pooled = sum(map(len, pools.values()))
    print(
        f"{bench.backend}, claim check ({pooled} references pooled; {claimed.repeat_turns} "
        f"claims by an agent who had claimed in the phase before):"
    )
    print("  " + ", ".join(f"{name} {count}" for name, count in checks.items()))


async def run_backend(
    backend: str,
    storage_url: str,
    workdir: Path,
    templates: Sequence[FeedbackRecord],
    settings: Settings,
    options: Options,
) -> None:
    """Migrate a fresh database, load it, and measure it."""
    engine = create_engine(database_url(storage_url, workdir))
    try:
        await upgrade(engine)
        now = datetime.now(UTC)
        records, batches, ingest_s = await load_items(
            engine, templates, settings, items=options.items, now=now
        )
        history_s = await give_history(engine, settings, now=now)
        if engine.dialect.name == "postgresql":
            await analyze(engine)  # what autovacuum would do in its next minute
            async with engine.connect() as conn:
                version = await conn.scalar(text("SHOW server_version"))
            backend = f"{backend} {str(version).split()[0]}"
        counts = await table_counts(engine)
        print_load(backend, LoadFigures(records, batches, ingest_s, history_s, counts))
        async with engine.connect() as conn:
            teams = await conn.execute(select(queue_items.c.team).distinct())
            team_names = tuple(sorted(teams.scalars()))
        staff, hire_s = await hire_staff(engine, team_names, options.clients)
        hired = len(AGENTS) + sum(1 + len(badges) for badges in staff.claimers)
        print(f"{backend}: added {hired} agents and their tokens in {hire_s:.1f} s (not counted)")
        config = write_config(workdir, storage_url)
        await measure(Bench(backend, engine, config, staff, options), team_names)
    finally:
        await engine.dispose()
    print_server_errors(backend, workdir / "server.log")


def _exception_line(trace: str) -> str:
    """The line of a traceback that names the exception (SQLAlchemy adds lines after it)."""
    named = [line for line in trace.splitlines() if line[:1].isalpha()]
    return named[-1][:160] if named else trace.strip()[:160]


def print_server_errors(backend: str, log: Path) -> None:
    """The errors the server logged (a 500 logs its exception), by their last line."""
    errors: Counter[str] = Counter()
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if '"level": "ERROR"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            errors[line[:160]] += 1
            continue
        errors[_exception_line(str(entry.get("exception", entry.get("message", ""))))] += 1
    print(f"{backend}: {sum(errors.values())} errors in the server log")
    for message, count in errors.most_common():
        print(f"  {count} x {message}")


async def run(options: Options) -> None:
    """Triage the corpus once, then measure each backend (see the module docstring)."""
    print_environment()
    settings = settings_for(None)
    started = time.perf_counter()
    templates = corpus_records(settings)
    print(
        f"corpus: {len(templates)} records triaged in {time.perf_counter() - started:.1f} s; "
        f"copies stored through the sources in the order {', '.join(source_order(templates))}"
    )
    with tempfile.TemporaryDirectory(prefix="inbox-queue-bench-") as folder:
        workdir = Path(folder)
        sqlite_url = f"sqlite:///{workdir / 'sqlite' / 'bench.db'}"
        await run_backend("SQLite", sqlite_url, workdir / "sqlite", templates, settings, options)
        if options.pg_url:
            async with postgres_database(options.pg_url) as url:
                pg_dir = workdir / "postgresql"
                await run_backend("PostgreSQL", url, pg_dir, templates, settings, options)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


def parse_options(argv: Sequence[str] | None = None) -> Options | tuple[Path, Path | None]:
    """The options, or in ``--serve`` mode the server's configuration and profile file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=100_000, help="queue items to load")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--pg-url", help="also run on a fresh database of this PostgreSQL server")
    parser.add_argument(
        "--extra-index", action="store_true", help="rerun the list phase with EXTRA_INDEXES"
    )
    parser.add_argument("--explain", action="store_true", help="print the listing's plans")
    parser.add_argument("--profile", action="store_true", help="profile the server per phase")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return args.serve, args.profile_to
    if args.items < 1 or args.clients < 1 or args.seconds <= 0:
        parser.error("--items and --clients must be at least 1, --seconds above 0")
    return Options(
        args.items,
        args.clients,
        args.seconds,
        args.pg_url,
        args.extra_index,
        args.explain,
        args.profile,
    )


def main() -> None:
    """Entry point."""
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    options = parse_options()
    if isinstance(options, tuple):
        serve(*options)
    else:
        asyncio.run(run(options))


if __name__ == "__main__":
    main()
