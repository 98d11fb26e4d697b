"""What the service tells about itself: Prometheus metrics, and the cursors ``status`` shows.

Two kinds of figure, kept apart on purpose:

- **Events of this process**, counted as they happen by the :class:`ServiceMetrics` each
  daemon owns, in a registry of its own (tests, and several daemons in one process, never
  share one): messages fetched and stored, duplicates by dedupe level, incidents opened,
  reply outcomes, dead letters, each source's health, fetch and pipeline latencies. Each
  replica counts its own events; Prometheus sums them.
- **State every replica shares**, read from the database at each scrape by a
  :class:`DatabaseSnapshot` collector: the queue's depth and the outbox backlog. A count kept
  in one process would be wrong as soon as another replica, or an agent, changed the queue.

A scrape whose database read fails or times out still answers: ``inbox_database_up`` is 0 and
the database families are left out, while the process's own figures are served as usual.

No figure carries customer text, a sender or a secret: label values are source names, teams,
priorities, states and outcomes, all from the configuration or the code. So ``/metrics``
needs no token, like the health probes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client import Counter as CounterMetric
from prometheus_client.context_managers import Timer
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import and_, case, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from .interfaces import Batch, FeedbackRecord
from .queue import QueueDepth, queue_depth
from .storage.batch import BatchOutcome
from .storage.engine import reading
from .storage.schema import cursors, feedback_records, outbox

logger = logging.getLogger(__name__)

#: DESIGN.md's dedupe levels: the values of the ``level`` label of ``inbox_duplicates_total``.
DEDUPE_LEVELS: Final = {
    "1": "the same message fetched again (same source and external id), absorbed",
    "2": "the same message received through another source (a second mailbox)",
    "3": "the same sender writing again about a problem already stored",
    "4": "a report joined to an incident (different people, one problem)",
    "5": "the same person under another identity (a quoted UID or e-mail, the operator's list)",
}
#: The values of the ``outcome`` label of ``inbox_replies_total``.
REPLY_OUTCOMES: Final = ("sent", "retry", "failed", "withheld")
#: Outbox states that are still work or trouble; ``sent`` rows only ever grow.
BACKLOG_STATES: Final = ("pending", "sending", "retry", "failed", "unknown")
#: A scrape waits this long for the database before answering without its figures.
DATABASE_TIMEOUT_S: Final = 5.0
#: A fetch is network-bound: from a fast local server to a slow provider's page walk.
FETCH_BUCKETS_S: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: Triage and commit of one batch: CPU-bound, then one transaction.
PIPELINE_BUCKETS_S: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: ``status`` shows this much of a cursor at most.
CURSOR_SUMMARY_CHARS: Final = 120
#: Cursor fields that address a peer or resume a page walk: not a position, never shown.
_HIDDEN_CURSOR_KEYS: Final = frozenset({"access_hash", "token"})


class ServiceMetrics:
    """The metrics of one daemon (or one web server), in a registry of its own.

    Args:
        database_timeout_s: how long a scrape waits for the database's figures.
    """

    def __init__(self, *, database_timeout_s: float = DATABASE_TIMEOUT_S) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.database_timeout_s = database_timeout_s
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._counters()
        self._gauges()
        self.fetch_seconds = Histogram(
            "inbox_fetch_duration_seconds",
            "Time of one adapter fetch (one batch), failed fetches included.",
            ["source"],
            buckets=FETCH_BUCKETS_S,
            registry=self.registry,
        )
        self.pipeline_seconds = Histogram(
            "inbox_pipeline_batch_duration_seconds",
            "Time from a fetched batch to its commit: triage of every message, then the "
            "one transaction. Observed per batch, not per message.",
            ["source"],
            buckets=PIPELINE_BUCKETS_S,
            registry=self.registry,
        )
        self._sources: set[str] = set()

    def _counters(self) -> None:
        def counter(name: str, text: str, *labels: str) -> CounterMetric:
            return CounterMetric(name, text, ["source", *labels], registry=self.registry)

        self.fetched = counter("inbox_messages_fetched", "Messages fetched, unreadable included.")
        self.stored = counter("inbox_messages_stored", "Messages stored as new feedback records.")
        levels = "; ".join(f"{level}: {text}" for level, text in DEDUPE_LEVELS.items())
        self.duplicates = counter(
            "inbox_duplicates", f"Duplicates by dedupe level ({levels}).", "level"
        )
        self.incidents = counter("inbox_incidents_opened", "Incidents opened.")
        self.replies = counter(
            "inbox_replies",
            "Acknowledgments by outcome: sent, retry (failed for now), failed (given up), "
            "withheld (stored records given no outbox row: policy, limits, duplicates, dry run).",
            "outcome",
        )
        self.dead_letters = counter("inbox_dead_letters", "Messages stored as dead letters.")

    def _gauges(self) -> None:
        def gauge(name: str, text: str) -> Gauge:
            return Gauge(name, text, ["source"], registry=self.registry)

        self.up = gauge("inbox_source_up", "1 when the source's last poll succeeded, else 0.")
        self.backoff = gauge("inbox_source_backoff", "1 while the source rests after a failure.")
        self.last_success = gauge(
            "inbox_source_last_success_timestamp_seconds",
            "When this process last polled the source successfully (unix seconds).",
        )

    def _source(self, source: str) -> None:
        """Start every series of ``source`` at zero, so a rate is defined from the first scrape."""
        if source in self._sources:
            return
        self._sources.add(source)
        for family in (self.fetched, self.stored, self.incidents, self.dead_letters):
            family.labels(source)
        for level in DEDUPE_LEVELS:
            self.duplicates.labels(source, level)
        for outcome in REPLY_OUTCOMES:
            self.replies.labels(source, outcome)

    def fetch_timer(self, source: str) -> Timer:
        """A context manager that observes one fetch of ``source``."""
        self._source(source)
        return self.fetch_seconds.labels(source).time()

    async def batch_committed(
        self,
        engine: AsyncEngine,
        batch: Batch,
        records: Sequence[FeedbackRecord],
        outcome: BatchOutcome,
        *,
        source: str,
        pipeline_s: float,
    ) -> None:
        """Count one committed batch of ``source``: ``records`` were triaged from ``batch``.

        Duplicates of levels 2, 3 and 5 are told apart by one read of the records the batch
        stored as duplicates (only when there are some); if that read fails they go uncounted
        and a warning says so, while the batch itself stays committed.
        """
        self._source(source)
        self.fetched.labels(source).inc(len(batch.messages) + len(batch.failures))
        self.stored.labels(source).inc(outcome.stored)
        self.dead_letters.labels(source).inc(outcome.dead_letters)
        self.replies.labels(source, "withheld").inc(outcome.stored - outcome.replies_queued)
        self.pipeline_seconds.labels(source).observe(pipeline_s)
        stored = set(outcome.stored_references)
        kept = [record for record in records if record.reference in stored]
        self.incidents.labels(source).inc(len(opened_incidents(kept)))
        levels = Counter({"1": outcome.absorbed, "4": len(incident_reports(kept))})
        if outcome.duplicates:
            levels.update(await self._repeat_levels(engine, source, kept))
        for level, count in levels.items():
            self.duplicates.labels(source, level).inc(count)

    async def _repeat_levels(
        self, engine: AsyncEngine, source: str, kept: Sequence[FeedbackRecord]
    ) -> Counter[str]:
        try:
            return await repeat_levels(engine, [record.reference for record in kept])
        except (OSError, SQLAlchemyError) as exc:
            logger.warning(
                "duplicates of a stored batch not counted by level (%s)",
                type(exc).__name__,
                extra={"source": source, "stage": "metrics"},
            )
            return Counter()

    def source_polled(self, source: str, *, lease_held: bool, at: datetime) -> None:
        """Record a poll of ``source`` that raised nothing.

        A replica that did not hold the source's lease read nothing: it drops the source's
        gauges, so only the replica polling a source reports on it.
        """
        if not lease_held:
            self.forget_source(source)
            return
        self._source(source)
        self.up.labels(source).set(1)
        self.backoff.labels(source).set(0)
        self.last_success.labels(source).set(at.timestamp())

    def source_failed(self, source: str) -> None:
        """Record a failed poll of ``source``: it is down and backs off."""
        self._source(source)
        self.up.labels(source).set(0)
        self.backoff.labels(source).set(1)

    def forget_source(self, source: str) -> None:
        """Drop the gauges of a source this process no longer polls (its counters stay)."""
        for gauge in (self.up, self.backoff, self.last_success):
            gauge.remove(source)

    def reply_finished(self, source: str, outcome: str) -> None:
        """Count one delivery attempt's ``outcome`` (``sent``, ``retry`` or ``failed``)."""
        self._source(source)
        self.replies.labels(source, outcome).inc()

    async def exposition(self, engine: AsyncEngine, accept: str = "") -> tuple[bytes, str]:
        """The scrape's body and content type, in the format ``accept`` asks for.

        The database's figures are read now, within :attr:`database_timeout_s`.
        """
        snapshot = await read_snapshot(engine, timeout_s=self.database_timeout_s)
        encode, content_type = choose_encoder(accept)
        return encode(_Joined((self.registry, snapshot))), content_type


def opened_incidents(stored: Iterable[FeedbackRecord]) -> set[str]:
    """The keys of the incidents ``stored`` records opened (the first link to each)."""
    return {r.incident.key for r in stored if r.incident is not None and not r.incident.known}


def incident_reports(stored: Iterable[FeedbackRecord]) -> set[str]:
    """References of the records that joined an incident: ``stored`` ones, and the earlier
    reports an incident opened by them takes in."""
    joined: set[str] = set()
    for record in stored:
        if record.incident is not None:
            joined.add(record.reference)
            joined.update(record.incident.members)
    return joined


async def repeat_levels(engine: AsyncEngine, references: Sequence[str]) -> Counter[str]:
    """The dedupe level (2, 3 or 5) of each stored duplicate among ``references``.

    Level 2 when the same message (channel and external id) was stored earlier through
    another source; else 3 when the original has the same sender; else 5 (the same person,
    linked by what they quote or by the operator's list).
    """
    record = feedback_records.alias("record")
    original = feedback_records.alias("original")
    copy = feedback_records.alias("copy")
    earlier_copy = (
        select(copy.c.id)
        .where(
            copy.c.channel == record.c.channel,
            copy.c.external_id == record.c.external_id,
            copy.c.source != record.c.source,
            copy.c.id < record.c.id,
        )
        .exists()
    )
    same_sender = and_(
        original.c.channel == record.c.channel, original.c.sender_id == record.c.sender_id
    )
    level = case((earlier_copy, "2"), (same_sender, "3"), else_="5")
    query = (
        select(level)
        .select_from(record.join(original, original.c.id == record.c.duplicate_of))
        .where(record.c.reference.in_(list(references)))
    )
    async with reading(engine) as conn:
        return Counter((await conn.execute(query)).scalars().all())


@dataclass(frozen=True, slots=True)
class DatabaseSnapshot:
    """The shared state one scrape read: a collector of the queue and outbox gauges.

    ``queue`` and ``outbox`` are ``None`` when the database could not be read: only
    ``inbox_database_up 0`` is collected then.
    """

    queue: Sequence[QueueDepth] | None = None
    outbox: Mapping[str, int] | None = None

    def collect(self) -> Iterator[Metric]:
        """The gauges of this snapshot."""
        readable = self.queue is not None and self.outbox is not None
        yield GaugeMetricFamily(
            "inbox_database_up",
            "1 when this scrape read the queue and outbox figures from the database, else 0.",
            value=1 if readable else 0,
        )
        if self.queue is None or self.outbox is None:
            return
        queue = GaugeMetricFamily(
            "inbox_queue_items",
            "Open queue items (all but resolved) by team, priority and status.",
            labels=["team", "priority", "status"],
        )
        for depth in self.queue:
            queue.add_metric([depth.team, depth.priority, depth.status], depth.items)
        yield queue
        backlog = GaugeMetricFamily(
            "inbox_outbox_replies",
            "Outbox rows not sent, by state (failed and unknown rows stay until handled).",
            labels=["state"],
        )
        for state in BACKLOG_STATES:
            backlog.add_metric([state], self.outbox.get(state, 0))
        yield backlog


async def read_snapshot(engine: AsyncEngine, *, timeout_s: float) -> DatabaseSnapshot:
    """Read the queue depth and outbox backlog; an empty snapshot when the database fails."""
    try:
        async with asyncio.timeout(timeout_s):
            return DatabaseSnapshot(await queue_depth(engine), await outbox_backlog(engine))
    except TimeoutError:
        reason = f"no answer within {timeout_s:g} s"
    except (OSError, SQLAlchemyError) as exc:
        reason = type(exc).__name__
    logger.warning(
        "metrics scraped without the database's figures: %s", reason, extra={"stage": "metrics"}
    )
    return DatabaseSnapshot()


async def outbox_backlog(engine: AsyncEngine) -> dict[str, int]:
    """Outbox rows by state, for the states of :data:`BACKLOG_STATES` (``sent`` is skipped)."""
    query = (
        select(outbox.c.state, func.count())
        .where(outbox.c.state.in_(BACKLOG_STATES))
        .group_by(outbox.c.state)
    )
    async with reading(engine) as conn:
        return {state: count for state, count in (await conn.execute(query)).all()}


class _Joined:
    """Several collectors as one, for one exposition."""

    def __init__(self, collectors: Sequence[Collector]) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


# --- what ``status`` shows of cursors ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class CursorState:
    """A source's stored cursor: its short form, version and last move."""

    summary: str
    version: int
    updated_at: datetime


async def cursor_states(engine: AsyncEngine) -> dict[str, CursorState]:
    """Every stored cursor by source name (a source that never committed has none)."""
    query = select(cursors.c.source, cursors.c.value, cursors.c.version, cursors.c.updated_at)
    async with reading(engine) as conn:
        rows = (await conn.execute(query)).all()
    return {
        row.source: CursorState(cursor_summary(row.value), row.version, row.updated_at)
        for row in rows
    }


def cursor_summary(value: Mapping[str, Any], *, limit_chars: int = CURSOR_SUMMARY_CHARS) -> str:
    """A cursor in one short line: ``INBOX: uidvalidity=7 last_uid=42; Archive: …``.

    Cursors are the adapters' own JSON; this shows their scalar fields grouped by the table
    holding them, without a lone top-level wrapper (``folders``, ``streams``) and without
    fields that address a peer or resume a page walk.
    """
    if len(value) == 1 and isinstance(next(iter(value.values())), Mapping):
        value = next(iter(value.values()))
    groups = [f"{path}: {fields}" if path else fields for path, fields in _cursor_groups(value, "")]
    text = "; ".join(groups) or "{}"
    return text if len(text) <= limit_chars else text[: limit_chars - 1] + "…"


def _cursor_groups(table: Mapping[str, Any], path: str) -> Iterator[tuple[str, str]]:
    scalars = [
        f"{key}={item}"
        for key, item in table.items()
        if not isinstance(item, Mapping | list) and key not in _HIDDEN_CURSOR_KEYS
    ]
    if scalars:
        yield path, " ".join(scalars)
    for key, item in table.items():
        if isinstance(item, Mapping):
            yield from _cursor_groups(item, f"{path}.{key}" if path else str(key))
