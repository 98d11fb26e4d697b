"""Deliver acknowledgments from the outbox through the adapter of the source they answer."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from .config import OutboxSettings
from .ingest import utcnow
from .interfaces import SendResult, SourceAdapter
from .storage.repository import ClaimedReply, claim_due_replies, finish_reply

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class DeliveryReport:
    """Outcomes of one pass over the due outbox rows."""

    sent: int = 0
    retry: int = 0
    failed: int = 0


def retry_delay_s(attempt: int, settings: OutboxSettings, defer_s: float | None = None) -> float:
    """Exponential backoff for the ``attempt``-th failure, capped and jittered; a peer's own
    ``defer_s`` (a rate limit's reset) wins when it is longer."""
    base = min(settings.retry_cap_s, settings.retry_base_s * 2.0 ** max(attempt - 1, 0))
    jittered = base * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security
    return max(jittered, defer_s or 0.0)


class OutboxSender:
    """Sends due replies; sending is at most once per outbox row (see DESIGN.md)."""

    def __init__(
        self, engine: AsyncEngine, adapters: Mapping[str, SourceAdapter], settings: OutboxSettings
    ) -> None:
        self._engine = engine
        self._adapters = adapters
        self._settings = settings

    async def deliver_due(self) -> DeliveryReport:
        """Send every due reply of the sources this process serves, one claim batch at a time."""
        report = DeliveryReport()
        while True:
            claimed = await claim_due_replies(
                self._engine,
                now=utcnow(),
                limit=self._settings.batch_size,
                sources_served=list(self._adapters),
            )
            for item in claimed:
                await self._deliver(item, report)
            if len(claimed) < self._settings.batch_size:
                return report

    async def _deliver(self, item: ClaimedReply, report: DeliveryReport) -> None:
        result = await self._adapters[item.source].send(item.reply)
        if result.outcome == "retry" and item.attempt >= self._settings.max_attempts:
            result = SendResult.failed(f"gave up after {item.attempt} attempts: {result.reason}")
        retry_at = None
        if result.outcome == "retry":
            retry_at = utcnow() + timedelta(
                seconds=retry_delay_s(item.attempt, self._settings, result.defer_s)
            )
        await finish_reply(self._engine, item.reply, result, now=utcnow(), retry_at=retry_at)
        setattr(report, result.outcome, getattr(report, result.outcome) + 1)
        logger.info(
            "reply %s",
            result.outcome,
            extra={
                "source": item.source,
                "stage": "outbox",
                "outbox_id": item.reply.idempotency_key,
                "attempt": item.attempt,
                "reason": result.reason,
            },
        )
