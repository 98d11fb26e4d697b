"""Poll one source: fetch a batch, triage it, store it in one transaction, repeat while more."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from .config import Settings, SourceSettings
from .errors import InboxError, RetryableError
from .interfaces import Batch, Cursor, FailedMessage, FeedbackRecord, SourceAdapter
from .metrics import ServiceMetrics
from .pipeline.dedupe import DedupeIndex
from .pipeline.reply_policy import ReplyContext
from .pipeline.triage import Triage
from .storage.batch import BatchOutcome, BatchPlan, SenderLimits, commit_batch
from .storage.repository import acquire_lease, load_cursor, release_lease

logger = logging.getLogger(__name__)

#: A lease is renewed this many times per ``lease_ttl_s`` while its source is polled, so a
#: renewal or two may be late (a busy loop, a slow database) before the lease lapses.
_LEASE_RENEWALS_PER_TTL: Final = 3
#: Records triaged between two turns of the event loop. Triage is CPU work of a few ms a
#: record: a batch of thousands in one go would hold the loop for minutes, and the lease
#: renewal among others would wait, so the batch's commit would find the lease expired.
_TRIAGE_SLICE: Final = 50


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


@dataclass(slots=True)
class PollReport:
    """What one poll of a source did."""

    batches: int = 0
    fetched: int = 0
    stored: int = 0
    absorbed: int = 0
    duplicates: int = 0
    replies_queued: int = 0
    dead_letters: int = 0
    lease_held: bool = True

    def add(self, batch: Batch, outcome: BatchOutcome) -> None:
        """Count one committed batch."""
        self.batches += 1
        self.fetched += len(batch.messages) + len(batch.failures)
        self.stored += outcome.stored
        self.absorbed += outcome.absorbed
        self.duplicates += outcome.duplicates
        self.replies_queued += outcome.replies_queued
        self.dead_letters += outcome.dead_letters


class SourceRunner:
    """Polls one configured source through its adapter (one poll at a time)."""

    def __init__(
        self,
        source: SourceSettings,
        adapter: SourceAdapter,
        *,
        engine: AsyncEngine,
        triage: Triage,
        index: DedupeIndex,
        settings: Settings,
        owner: str,
        metrics: ServiceMetrics,
    ) -> None:
        self.source = source
        self.adapter = adapter
        self._engine = engine
        self._triage = triage
        self._index = index
        self._settings = settings
        self._owner = owner
        self._metrics = metrics
        self._open = False
        self._holding = False

    def use(self, triage: Triage, index: DedupeIndex, settings: Settings) -> None:
        """Triage the next batches with reloaded rules and settings (this source's own stay)."""
        self._triage, self._index, self._settings = triage, index, settings

    async def poll(self) -> PollReport:
        """Fetch and store everything the source holds now, batch by batch.

        Raises:
            RetryableError: the source or the database failed for now (the cursor stayed).
            PermanentError: the source cannot be read until an operator acts.
        """
        report = PollReport()
        if not await self._take_lease():
            self._holding = False
            report.lease_held = False
            return report
        if not self._holding:  # operators see which replica polls a source, and since when
            self._holding = True
            logger.info(
                "lease taken",
                extra={"source": self.source.name, "stage": "lease", "owner": self._owner},
            )
        try:
            async with self._lease_renewed():
                await self._ensure_open()
                while await self._one_batch(report):
                    pass
        except BaseException:
            await self.close()
            raise
        return report

    async def _take_lease(self) -> bool:
        return await acquire_lease(
            self._engine,
            self.source.name,
            self._owner,
            ttl_s=self._settings.service.lease_ttl_s,
            now=utcnow(),
        )

    @contextlib.asynccontextmanager
    async def _lease_renewed(self) -> AsyncIterator[None]:
        """Renew the lease in the background while the poll runs.

        Renewing only between batches would let one batch slower than ``lease_ttl_s`` (a slow
        server, a connection made under load) hand the source to another replica midway; the
        batch then fails to commit, and replicas can take the source from each other forever.
        """
        stop = asyncio.Event()
        renewing = asyncio.create_task(self._renew_lease_until(stop))
        try:
            yield
        finally:
            stop.set()  # not cancelled: a renewal in flight finishes its transaction
            await renewing

    async def _renew_lease_until(self, stop: asyncio.Event) -> None:
        interval_s = self._settings.service.lease_ttl_s / _LEASE_RENEWALS_PER_TTL
        while not await _set_within(stop, interval_s):
            try:
                held = await self._take_lease()
            except (OSError, SQLAlchemyError) as exc:  # the commit's lease check still guards
                logger.warning(
                    "lease renewal failed (%s); trying again",
                    type(exc).__name__,
                    extra={"source": self.source.name, "stage": "lease"},
                )
                continue
            if not held:
                self._holding = False
                logger.warning(
                    "lease lost to another replica; the batch in hand will not commit",
                    extra={"source": self.source.name, "stage": "lease"},
                )
                return

    async def close(self) -> None:
        """Close the adapter's connection; the next poll reconnects."""
        if self._open:
            self._open = False
            await self.adapter.close()

    async def release(self) -> None:
        """Close, and give up the lease so another process may poll the source at once."""
        await self.close()
        await release_lease(self._engine, self.source.name, self._owner)
        self._holding = False

    async def _ensure_open(self) -> None:
        if not self._open:
            await self.adapter.open()
            self._open = True

    async def _one_batch(self, report: PollReport) -> bool:
        cursor, version = await load_cursor(self._engine, self.source.name)
        with self._metrics.fetch_timer(self.source.name):
            batch = await self._fetch(cursor)
        started_s = time.perf_counter()
        records, failures = await self._triage_batch(batch)
        plan = BatchPlan(
            source=self.source.name,
            owner=self._owner,
            records=records,
            failures=(*batch.failures, *failures),
            cursor_version=version,
            next_cursor=batch.next_cursor,
            sla_s=self._settings.queue.sla_s,
            limits=SenderLimits(
                self._settings.replies.per_sender_per_hour,
                self._settings.replies.per_sender_per_day,
            ),
        )
        references = {record.reference for record in records}
        try:
            outcome = await commit_batch(self._engine, plan, now=utcnow())
        except BaseException:
            self._index.forget(references)  # never stored: nothing may repeat them
            raise
        pipeline_s = time.perf_counter() - started_s
        self._index.forget(references - set(outcome.stored_references))
        report.add(batch, outcome)
        await self._after_commit(batch)
        self._log_stored(records, outcome)
        await self._metrics.batch_committed(
            self._engine, batch, records, outcome, source=self.source.name, pipeline_s=pipeline_s
        )
        return batch.more

    def _log_stored(self, records: Sequence[FeedbackRecord], outcome: BatchOutcome) -> None:
        """Log each stored record (reference and labels, never text), then the batch's counts."""
        stored = set(outcome.stored_references)
        if logger.isEnabledFor(logging.INFO):
            for record in records:
                if record.reference in stored:
                    logger.info("record stored", extra=_record_fields(record))
        logger.info(
            "batch stored",
            extra={
                "source": self.source.name,
                "stage": "commit",
                "stored": outcome.stored,
                "absorbed": outcome.absorbed,
                "dead_letters": outcome.dead_letters,
                "replies_queued": outcome.replies_queued,
            },
        )

    async def _after_commit(self, batch: Batch) -> None:
        try:
            await self.adapter.after_commit(batch)
        except InboxError as exc:
            logger.warning(
                "post-ingest action failed: %s",
                exc,
                extra={"source": self.source.name, "stage": "after_commit"},
            )

    async def _fetch(self, cursor: Cursor | None) -> Batch:
        # The adapter times out each network call itself; this bounds the whole fetch.
        try:
            async with asyncio.timeout(self.source.timeout_s * 4):
                return await self.adapter.fetch(cursor, self.source.batch_size)
        except TimeoutError as exc:
            raise RetryableError(f"fetch from {self.source.name!r} timed out") from exc

    async def _triage_batch(self, batch: Batch) -> tuple[list[FeedbackRecord], list[FailedMessage]]:
        triage, index = self._triage, self._index  # one batch, one set of rules (SIGHUP)
        context = ReplyContext(
            can_send=self.adapter.can_send(),
            own_addresses=self._own_addresses(),
            loop_marker=self._settings.replies.loop_marker,
            max_ack_age_s=self._settings.replies.max_ack_age_s,
            dry_run=self._settings.replies.dry_run,
            now=utcnow(),
            rules=triage.reply_rules,
        )
        records: list[FeedbackRecord] = []
        failures: list[FailedMessage] = []
        for position, message in enumerate(batch.messages, 1):
            if position % _TRIAGE_SLICE == 0:
                await asyncio.sleep(0)  # let the lease renewal, reads ahead and the web run
            try:
                records.append(
                    triage.record(message, source=self.source.name, context=context, index=index)
                )
            except Exception as exc:  # one message must never sink its batch: dead-letter it
                logger.exception(
                    "triage failed", extra={"source": self.source.name, "stage": "triage"}
                )
                failures.append(
                    FailedMessage(
                        message.external_id,
                        message.raw_ref,
                        f"triage failed: {exc!r}",
                        len(message.full_text),
                    )
                )
        return records, failures

    def _own_addresses(self) -> frozenset[str]:
        configured = {address.lower() for address in self._settings.replies.own_addresses}
        return frozenset(configured | self.adapter.own_addresses())


def _record_fields(record: FeedbackRecord) -> dict[str, object]:
    """What a log line tells of a stored record: labels and kinds, nothing the sender wrote."""
    return {
        "source": record.source,
        "stage": "commit",
        "reference": record.reference,
        "channel": record.message.channel,
        "language": record.language,
        "category": record.classification.category,
        "priority": record.classification.priority,
        "team": record.classification.team,
        "redactions": dict(record.redactions),
        "duplicate_of": record.duplicate_of,
        "incident": record.incident.key if record.incident else None,
    }


async def _set_within(event: asyncio.Event, timeout_s: float) -> bool:
    """Whether ``event`` is set within ``timeout_s`` seconds."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True
