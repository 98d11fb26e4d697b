"""Alerts: P1 items and SLA breaches pushed to e-mail, webhook and Telegram targets.

A job of its own (every ``alerts.poll_interval_s``, at most a minute) first records what is
to be alerted, then delivers what is due; ingestion never waits for it, and a target that
hangs costs that job ``alerts.timeout_s`` per attempt, nothing else.

- **One row per alert and target** (``alerts``, unique on item, event and target), made by
  ``INSERT … SELECT … ON CONFLICT DO NOTHING``: every replica may look, only one row is made.
- **Claimed before sent.** A due row is marked ``sending`` (``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL) in its own transaction, so two replicas never send one alert. A replica that
  dies mid-send leaves the row ``sending`` until its claim lapses; it is then sent again,
  with the same alert id (the webhook's ``X-Inbox-Alert-Id``, the mail's Message-ID) for the
  receiver to recognise: a P1 alert lost is worse than one seen twice.
- **Retried with backoff** (``retry_base_s`` doubling up to ``retry_cap_s``, jittered, or
  the target's own delay), then ``failed`` after ``max_attempts`` or a permanent refusal.
- Items due longer than ``max_age_s`` ago are never alerted: a first start, or a long
  outage, does not flood the targets with old news.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import aiohttp
from sqlalchemy import Integer, Row, Select, String, and_, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from .alert_targets import Alert, AlertSender, EmailSender, TelegramSender, WebhookSender
from .config import AlertsSettings, AlertTarget, EmailAlertTarget, WebhookAlertTarget
from .errors import PermanentError, RetryableError
from .storage.batch import upsert
from .storage.schema import UtcDateTime, alerts, feedback_records, queue_items

logger = logging.getLogger(__name__)

#: What is alerted: an item of priority P1, an item past its due time unresolved.
EVENTS: Final = ("p1", "sla_breach")
#: A claim lasts the attempt's timeout and this much more before another replica may resend.
_CLAIM_MARGIN_S: Final = 60.0
_MAX_ERROR_CHARS: Final = 500


@dataclass(slots=True)
class AlertReport:
    """What one run did: alerts recorded, and deliveries sent, to retry, failed."""

    queued: int = 0
    sent: int = 0
    retry: int = 0
    failed: int = 0


class AlertDispatcher:
    """Records and delivers the alerts ``settings`` ask for, over ``engine``."""

    def __init__(self, engine: AsyncEngine, settings: AlertsSettings) -> None:
        self.engine = engine
        self.settings = settings

    @property
    def enabled(self) -> bool:
        """Whether any target is configured."""
        return bool(self.settings.targets)

    async def run(self, now: datetime | None = None) -> AlertReport:
        """Record new alerts, then deliver the due ones (each attempt bounded in time)."""
        report = AlertReport()
        if not self.enabled:
            return report
        at = now or datetime.now(UTC)
        report.queued = await queue_alerts(self.engine, self.settings, now=at)
        claimed = await claim_due_alerts(self.engine, self.settings, now=at)
        if not claimed:
            return report
        async with AsyncExitStack() as stack:
            senders = await self._senders(stack)
            outcomes = await asyncio.gather(*(self._attempt(senders, alert) for alert in claimed))
        for alert, error in zip(claimed, outcomes, strict=True):
            state = await finish_alert(self.engine, self.settings, alert, error)
            setattr(report, state, getattr(report, state) + 1)
        return report

    async def _senders(self, stack: AsyncExitStack) -> dict[str, AlertSender]:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        session = await stack.enter_async_context(aiohttp.ClientSession(timeout=timeout))
        return {
            target.name: _sender(target, session, self.settings) for target in self.settings.targets
        }

    async def _attempt(
        self, senders: Mapping[str, AlertSender], alert: Alert
    ) -> RetryableError | PermanentError | None:
        """Deliver ``alert`` once; the error it met, ``None`` when delivered."""
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                await senders[alert.target].send(alert)
        except TimeoutError:
            return RetryableError(f"no answer within {self.settings.timeout_s:g} s")
        except (RetryableError, PermanentError) as exc:
            return exc
        except (OSError, ValueError) as exc:  # a secret file gone or emptied since the load
            return RetryableError(f"{type(exc).__name__}: {exc}")
        return None


def _sender(
    target: AlertTarget, session: aiohttp.ClientSession, settings: AlertsSettings
) -> AlertSender:
    if isinstance(target, EmailAlertTarget):
        return EmailSender(target, settings.timeout_s)
    if isinstance(target, WebhookAlertTarget):
        return WebhookSender(target, session)
    return TelegramSender(target, session)


# --- recording -------------------------------------------------------------------------------


async def queue_alerts(engine: AsyncEngine, settings: AlertsSettings, *, now: datetime) -> int:
    """Make a ``pending`` row for each alert not recorded yet; how many were made."""
    made = 0
    async with engine.begin() as conn:
        for target in settings.targets:
            for event in target.events:
                made += await _record(conn, target, event, settings, now)
    return made


async def _record(
    conn: AsyncConnection, target: AlertTarget, event: str, settings: AlertsSettings, now: datetime
) -> int:
    item = queue_items.c
    recorded = (
        select(alerts.c.id)
        .where(alerts.c.item_id == item.id, alerts.c.event == event, alerts.c.target == target.name)
        .exists()
    )
    conditions: list[ColumnElement[bool]] = [
        item.state != "resolved",
        item.due_at > now - timedelta(seconds=settings.max_age_s),
        ~recorded,
        item.priority == "P1" if event == "p1" else item.due_at <= now,
    ]
    if target.teams:
        conditions.append(item.team.in_(target.teams))
    rows = select(
        item.id,
        literal(event, String()),
        literal(target.name, String()),
        literal("pending", String()),
        literal(0, Integer()),
        literal(now, UtcDateTime()),
        literal(now, UtcDateTime()),
    ).where(*conditions)
    columns = ["item_id", "event", "target", "state", "attempts", "next_attempt_at", "created_at"]
    statement = upsert(conn, alerts).from_select(columns, rows).on_conflict_do_nothing()
    result = await conn.execute(statement)
    return max(int(result.rowcount), 0)


# --- delivery --------------------------------------------------------------------------------


async def claim_due_alerts(
    engine: AsyncEngine, settings: AlertsSettings, *, now: datetime
) -> list[Alert]:
    """Mark up to ``batch_size`` due alerts ``sending`` and return them, with their items."""
    names = [target.name for target in settings.targets]
    due = and_(
        alerts.c.target.in_(names),
        alerts.c.next_attempt_at <= now,
        or_(alerts.c.state.in_(("pending", "retry")), alerts.c.state == "sending"),
    )
    lapse = now + timedelta(seconds=settings.timeout_s + _CLAIM_MARGIN_S)
    async with engine.begin() as conn:
        ids = select(alerts.c.id).where(due).order_by(alerts.c.next_attempt_at, alerts.c.id)
        ids = ids.limit(settings.batch_size)
        if conn.dialect.name == "postgresql":
            ids = ids.with_for_update(skip_locked=True)
        claimed = await conn.execute(
            update(alerts)
            .where(alerts.c.id.in_(ids.scalar_subquery()), due)
            .values(state="sending", attempts=alerts.c.attempts + 1, next_attempt_at=lapse)
            .returning(alerts.c.id)
        )
        alert_ids = list(claimed.scalars())
        rows = (await conn.execute(_alert_query(alert_ids))).all() if alert_ids else []
    return [_alert(row, settings) for row in rows]


def _alert_query(alert_ids: Sequence[int]) -> Select[Any]:
    item, record = queue_items.c, feedback_records.c
    return (
        select(
            alerts.c.id,
            alerts.c.event,
            alerts.c.target,
            alerts.c.attempts,
            record.reference,
            item.priority,
            item.team,
            record.category,
            record.channel,
            item.state,
            item.due_at,
        )
        .join(queue_items, item.id == alerts.c.item_id)
        .join(feedback_records, record.id == item.record_id)
        .where(alerts.c.id.in_(alert_ids))
        .order_by(alerts.c.id)
    )


def _alert(row: Row[Any], settings: AlertsSettings) -> Alert:
    return Alert(
        id=row.id,
        event=row.event,
        target=row.target,
        attempt=row.attempts,
        reference=row.reference,
        priority=row.priority,
        team=row.team,
        category=row.category,
        channel=row.channel,
        status=row.state,
        due_at=row.due_at,
        url=settings.item_url.replace("{reference}", row.reference),
    )


async def finish_alert(
    engine: AsyncEngine,
    settings: AlertsSettings,
    alert: Alert,
    error: RetryableError | PermanentError | None,
    *,
    now: datetime | None = None,
) -> str:
    """Record how ``alert``'s attempt ended: ``sent``, ``retry`` or ``failed``.

    Only the claim of this attempt is finished: a row another replica claimed again after
    this claim lapsed is left to it.
    """
    at = now or datetime.now(UTC)
    state, values = _outcome(settings, alert, error, at)
    ours = and_(
        alerts.c.id == alert.id, alerts.c.state == "sending", alerts.c.attempts == alert.attempt
    )
    async with engine.begin() as conn:
        await conn.execute(update(alerts).where(ours).values(state=state, **values))
    _log(alert, state, error)
    return state


def _outcome(
    settings: AlertsSettings,
    alert: Alert,
    error: RetryableError | PermanentError | None,
    now: datetime,
) -> tuple[str, dict[str, object]]:
    if error is None:
        return "sent", {"sent_at": now, "last_error": None, "next_attempt_at": now}
    text = str(error)[:_MAX_ERROR_CHARS]
    if isinstance(error, PermanentError) or alert.attempt >= settings.max_attempts:
        return "failed", {"last_error": text, "next_attempt_at": now}
    delay_s = retry_delay_s(alert.attempt, settings, error.defer_s)
    return "retry", {"last_error": text, "next_attempt_at": now + timedelta(seconds=delay_s)}


def retry_delay_s(attempt: int, settings: AlertsSettings, defer_s: float | None) -> float:
    """The wait after the ``attempt``-th failure: doubling from ``retry_base_s``, capped,
    jittered, never shorter than the target asked for."""
    base = min(settings.retry_cap_s, settings.retry_base_s * 2.0 ** max(attempt - 1, 0))
    delay = base * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security
    return max(delay, defer_s or 0.0)


def _log(alert: Alert, state: str, error: Exception | None) -> None:
    extra = {"stage": "alert", "reference": alert.reference, "target": alert.target}
    if state == "sent":
        logger.info("alert %s sent", alert.event, extra=extra)
    elif state == "retry":
        logger.warning("alert %s not delivered, retrying: %s", alert.event, error, extra=extra)
    else:
        logger.error("alert %s failed for good: %s", alert.event, error, extra=extra)
