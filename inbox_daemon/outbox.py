"""Deliver acknowledgments from the outbox through the adapter of the source they answer."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from .config import OutboxSettings
from .ingest import utcnow
from .interfaces import DeliveryPass, SendResult, SourceAdapter
from .logs import source_context
from .metrics import ServiceMetrics
from .storage.repository import (
    ClaimedReply,
    claim_due_replies,
    finish_reply,
    recover_interrupted_sends,
    renew_reply_claims,
)

logger = logging.getLogger(__name__)

#: Channels whose replies may be sent again after a crash left them ``sending``: a repeated
#: e-mail carries the same Message-ID, so the recipient's client shows it once.
RESENDABLE_CHANNELS: Final = ("email",)

#: Claims still to send are renewed this many times per claim TTL.
_RENEWALS_PER_TTL: Final = 3


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
    """Sends due replies; sending is at most once per outbox row (see DESIGN.md).

    Claims last ``claim_ttl_s`` and are renewed while their replies wait their turn, so
    several replicas share the outbox and the claims of one that died are taken back.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        adapters: Mapping[str, SourceAdapter],
        settings: OutboxSettings,
        *,
        claim_ttl_s: float,
        metrics: ServiceMetrics,
    ) -> None:
        self._engine = engine
        self._adapters = adapters
        self._settings = settings
        self._claim_ttl_s = claim_ttl_s
        self._metrics = metrics

    async def deliver_due(self) -> DeliveryReport:
        """Send every due reply of the sources this process serves, one claim batch at a time."""
        report = DeliveryReport()
        await recover_interrupted_sends(
            self._engine, resend_channels=RESENDABLE_CHANNELS, now=utcnow()
        )
        async with AsyncExitStack() as connections:
            # One connection per adapter for the whole pass, not one per reply.
            for adapter in self._adapters.values():
                if isinstance(adapter, DeliveryPass):
                    await connections.enter_async_context(adapter.delivery_pass())
            while True:
                claimed = await claim_due_replies(
                    self._engine,
                    now=utcnow(),
                    limit=self._settings.batch_size,
                    sources_served=list(self._adapters),
                    claim_ttl_s=self._claim_ttl_s,
                )
                await self._deliver_claimed(claimed, report)
                if len(claimed) < self._settings.batch_size:
                    return report

    async def _deliver_claimed(
        self, claimed: Sequence[ClaimedReply], report: DeliveryReport
    ) -> None:
        # Renewed three times per claim_ttl_s, the claims still to send do not lapse while a
        # slow relay or a busy loop delays this replica by up to a third of it.
        loop = asyncio.get_running_loop()
        renew_every_s = self._claim_ttl_s / _RENEWALS_PER_TTL
        renew_at = loop.time() + renew_every_s
        lost: set[str] = set()
        for index, item in enumerate(claimed):
            if loop.time() >= renew_at:
                lost |= await self._renew(claimed[index:])
                renew_at = loop.time() + renew_every_s
            if item.reply.idempotency_key not in lost:
                await self._deliver(item, report)

    async def _renew(self, claimed: Sequence[ClaimedReply]) -> set[str]:
        """Renew ``claimed``; the keys of those another replica has taken since (not to send)."""
        until = utcnow() + timedelta(seconds=self._claim_ttl_s)
        kept = await renew_reply_claims(self._engine, claimed, until=until)
        lost = {item.reply.idempotency_key for item in claimed} - kept
        if lost:
            logger.warning(
                "%d outbox claims lapsed and were taken back; not sending them here",
                len(lost),
                extra={"stage": "outbox", "outbox_ids": sorted(lost)},
            )
        return lost

    async def _deliver(self, item: ClaimedReply, report: DeliveryReport) -> None:
        with source_context(item.source):
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
        self._metrics.reply_finished(item.source, result.outcome)
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
