"""The running service: one APScheduler job per source, the outbox sender, and their lifetime."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import signal
import socket
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from . import audit
from .alerts import AlertDispatcher, AlertReport
from .config import ServiceSettings, Settings, SourceSettings, load_settings
from .errors import ConfigError, InboxError, PermanentError, RetryableError
from .ingest import PollReport, SourceRunner, utcnow
from .logs import source_context
from .metrics import ServiceMetrics
from .outbox import DeliveryReport, OutboxSender
from .pipeline.dedupe import DedupeIndex, DedupeSettings, restore_index
from .pipeline.triage import Triage, load_triage
from .registry import adapter_plugin
from .retention import run_retention_job
from .storage.engine import create_engine, database_url, describe_database
from .storage.migrate import ensure_migrated
from .storage.repository import recent_records, record_poll, register_sources

logger = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_ERROR_CHARS = 500


def backoff_delay_s(failures: int, settings: ServiceSettings, error: BaseException) -> float:
    """How long a source rests after its ``failures``-th consecutive failure."""
    if isinstance(error, PermanentError):
        return settings.backoff_cap_s
    base = min(settings.backoff_cap_s, settings.backoff_base_s * 2.0 ** max(failures - 1, 0))
    delay = base * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security
    defer_s = error.defer_s if isinstance(error, RetryableError) else None
    return max(delay, defer_s or 0.0)


def describe_error(error: BaseException, *, database: str | None = None) -> str:
    """A one-line description of ``error`` fit for logs and ``status``.

    A database error's own text carries the statement's parameters (customer text); only the
    driver's message is kept, followed by ``database`` (which one failed: an operator with
    several daemons must know which disk is full).
    """
    if isinstance(error, SQLAlchemyError):
        cause = getattr(error, "orig", None) or error.__cause__ or error
        first_line = str(cause).splitlines()[0] if str(cause) else ""
        where = f" ({database})" if database else ""
        text = f"database error: {type(cause).__name__}: {first_line}{where}"
    else:
        text = f"{type(error).__name__}: {error}"
    return text[:_MAX_ERROR_CHARS]


def _check_reloadable(running: Settings, new: Settings) -> None:
    """Refuse changes that only a restart can make.

    Raises:
        ConfigError: naming the setting.
    """
    if new.storage != running.storage:
        raise ConfigError(
            "storage cannot change while running; restart the daemon to use the new database",
            path=str(new.config_path),
            key="storage",
        )
    # The servers listen where they started; what they serve follows the reload.
    for section, old, wanted in (
        ("web", running.web, new.web),
        ("metrics", running.metrics, new.metrics),
    ):
        if (old.enabled, old.host, old.port) != (wanted.enabled, wanted.host, wanted.port):
            raise ConfigError(
                f"whether and where the {section} server listens cannot change while running;"
                " restart the daemon to apply it",
                path=str(new.config_path),
                key=section,
            )


async def _dedupe_index(engine: AsyncEngine, settings: DedupeSettings) -> DedupeIndex:
    horizon_s = max(settings.duplicate_window_s, settings.incident_window_s)
    rows = await recent_records(engine, since=utcnow() - timedelta(seconds=horizon_s))
    return restore_index(settings, rows)


@dataclass(slots=True)
class RunReport:
    """What ``run --once`` did: each source's poll or error, and the deliveries."""

    polls: dict[str, PollReport] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)
    alerts: AlertReport = field(default_factory=AlertReport)


class Daemon:
    """Sources, their runners and the outbox sender over one database, for one process."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        *,
        triage: Triage,
        index: DedupeIndex,
        owner: str,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self._triage = triage
        self._index = index
        self._owner = owner
        self.metrics = ServiceMetrics(database_timeout_s=settings.metrics.database_timeout_s)
        self.runners = {
            source.name: self._runner(source) for source in settings.sources if source.enabled
        }
        self.outbox = self._outbox()
        self.alerts = AlertDispatcher(engine, settings.alerts)
        self._failures: dict[str, int] = dict.fromkeys(self.runners, 0)
        self._resume_at: dict[str, datetime] = {}
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._polling: dict[str, asyncio.Task[Any]] = {}
        self._scheduler: AsyncIOScheduler | None = None
        self._reloading = asyncio.Lock()

    @classmethod
    async def open(cls, settings: Settings, stack: AsyncExitStack) -> Daemon:
        """Build the daemon from ``settings``; everything it opens is closed by ``stack``.

        Raises:
            ConfigError: rules or templates are invalid.
            NotMigratedError: the database needs ``inbox-daemon migrate``.
        """
        triage = load_triage(settings)
        engine = create_engine(database_url(settings.storage.url, settings.config_dir))
        stack.push_async_callback(engine.dispose)
        await ensure_migrated(engine)
        owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        index = await _dedupe_index(engine, triage.dedupe)
        daemon = cls(settings, engine, triage=triage, index=index, owner=owner)
        stack.push_async_callback(daemon.close)
        await register_sources(
            engine, [(name, r.source.kind) for name, r in daemon.runners.items()]
        )
        return daemon

    def _runner(self, source: SourceSettings) -> SourceRunner:
        adapter = adapter_plugin(source.kind).create(source)
        return SourceRunner(
            source,
            adapter,
            engine=self.engine,
            triage=self._triage,
            index=self._index,
            settings=self.settings,
            owner=self._owner,
            metrics=self.metrics,
        )

    def _outbox(self) -> OutboxSender:
        adapters = {name: runner.adapter for name, runner in self.runners.items()}
        return OutboxSender(
            self.engine,
            adapters,
            self.settings.outbox,
            claim_ttl_s=self.settings.service.lease_ttl_s,
            metrics=self.metrics,
        )

    async def close(self) -> None:
        """Close every source and give up its lease."""
        for runner in self.runners.values():
            await runner.release()

    async def run_once(self) -> RunReport:
        """Poll every source once (one failing never stops another), then deliver due replies."""
        report = RunReport()
        for name in self.runners:
            poll = await self.poll_source(name)
            if isinstance(poll, PollReport):
                report.polls[name] = poll
            else:
                report.errors[name] = poll
        report.delivery = await self.outbox.deliver_due()
        report.alerts = await self.alerts.run()
        return report

    async def poll_source(self, name: str) -> PollReport | str:
        """Poll one source and record its state; returns the report, or the error as text."""
        with source_context(name):
            return await self._poll_source(name)

    async def _poll_source(self, name: str) -> PollReport | str:
        try:
            poll = await self.runners[name].poll()
        except InboxError as exc:
            return await self._failed(name, exc)
        except (OSError, SQLAlchemyError) as exc:  # the database, or a socket outside an adapter
            return await self._failed(name, exc)
        self._failures[name] = 0
        now = utcnow()
        self.metrics.source_polled(name, lease_held=poll.lease_held, at=now)
        await self._record_state(name, now=now, fetched=poll.fetched)
        return poll

    async def _failed(self, name: str, error: BaseException) -> str:
        self._failures[name] += 1
        delay_s = backoff_delay_s(self._failures[name], self.settings.service, error)
        until = self._resume_at[name] = utcnow() + timedelta(seconds=delay_s)
        text = describe_error(error, database=describe_database(self.engine.url))
        self.metrics.source_failed(name)
        # A source may fail for a while; a database that fails (full, gone) needs an operator.
        level = logging.ERROR if isinstance(error, SQLAlchemyError) else logging.WARNING
        logger.log(
            level,
            "source failed: %s; backing off %.0f s",
            text,
            delay_s,
            extra={"source": name, "stage": "fetch", "error": text},
        )
        await self._record_state(name, now=utcnow(), error=text, backoff_until=until)
        return text

    async def _record_state(
        self,
        name: str,
        *,
        now: datetime,
        fetched: int = 0,
        error: str | None = None,
        backoff_until: datetime | None = None,
    ) -> None:
        """Record a poll's outcome for ``status``.

        The database may refuse it (often the very failure being recorded: a server that went
        away); that is logged and the poll's outcome and backoff stand, so the job never dies
        with a traceback that would carry the failed statement's customer text.
        """
        try:
            await record_poll(
                self.engine,
                name,
                now=now,
                fetched=fetched,
                error=error,
                backoff_until=backoff_until,
            )
        except (OSError, SQLAlchemyError) as exc:
            logger.warning(
                "state of source %s not recorded: %s",
                name,
                describe_error(exc, database=describe_database(self.engine.url)),
                extra={"source": name, "stage": "status"},
            )

    async def serve(self, stop: asyncio.Event) -> None:
        """Run the scheduled jobs until ``stop`` is set, then drain in-flight work.

        SIGHUP re-reads the configuration file (see :meth:`reload`).
        """
        scheduler = self._scheduler = AsyncIOScheduler(timezone="UTC")
        for name in self.runners:
            self._schedule(name)
        scheduler.add_job(
            self._deliver_job,
            IntervalTrigger(seconds=self.settings.outbox.poll_interval_s),
            id="outbox",
            max_instances=1,
            coalesce=True,
            next_run_time=utcnow(),
        )
        self._schedule_upkeep()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._on_hangup)
        scheduler.start()
        try:
            await stop.wait()
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            scheduler.pause()
            await self._drain()
            scheduler.shutdown(wait=False)
            self._scheduler = None

    def _schedule(self, name: str) -> None:
        if self._scheduler is None:
            return
        self._scheduler.add_job(
            self._job,
            IntervalTrigger(seconds=self.runners[name].source.poll_interval_s),
            args=(self._scheduler, name),
            id=f"source:{name}",
            max_instances=1,
            coalesce=True,
            next_run_time=utcnow(),
        )

    def _schedule_upkeep(self) -> None:
        """(Re)schedule the alerts job and the daily retention job, as configured now.

        Both are jobs of their own: a target that hangs or a long retention run never
        delays a source's batch.
        """
        if self._scheduler is None:
            return
        for job_id in ("alerts", "retention"):
            if self._scheduler.get_job(job_id):
                self._scheduler.remove_job(job_id)
        if self.alerts.enabled:
            self._scheduler.add_job(
                self._alerts_job,
                IntervalTrigger(seconds=self.settings.alerts.poll_interval_s),
                id="alerts",
                max_instances=1,
                coalesce=True,
                next_run_time=utcnow(),
            )
        if self.settings.retention.retention_days:
            hour, minute = self.settings.retention.run_at.split(":")
            self._scheduler.add_job(
                self._retention_job,
                CronTrigger(hour=int(hour), minute=int(minute), timezone="UTC"),
                id="retention",
                max_instances=1,
                coalesce=True,
            )

    def _on_hangup(self) -> None:
        logger.info("SIGHUP: reloading the configuration", extra={"stage": "reload"})
        task = asyncio.ensure_future(self.reload())
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def reload(self) -> bool:
        """Re-read the configuration file and its rules, and apply them.

        Sources added are started, sources removed are stopped (their lease given up), and
        sources whose settings changed are restarted; the others go on untouched, with the
        new rules, templates and reply settings from their next batch. An invalid file, or a
        change only a restart can make (the database), is logged and the running
        configuration stays. Returns whether the new configuration was applied.
        """
        async with self._reloading:
            try:
                settings = load_settings(self.settings.config_path)
                triage = load_triage(settings)
                _check_reloadable(self.settings, settings)
            except ConfigError as exc:
                logger.error(
                    "configuration reload refused; the running configuration stays",
                    extra={"stage": "reload", "error": str(exc)},
                )
                await audit.record_reload(self.engine, self.settings.config_path, error=str(exc))
                return False
            # A reload that cannot be written to the audit log is not applied.
            if not await audit.record_reload(self.engine, settings.config_path, error=None):
                return False
            await self._apply(settings, triage)
            return True

    async def _apply(self, settings: Settings, triage: Triage) -> None:
        old = {name: runner.source for name, runner in self.runners.items()}
        new = {source.name: source for source in settings.sources if source.enabled}
        stopped = [name for name in old if new.get(name) != old[name]]
        started = [name for name in new if old.get(name) != new[name]]
        for name in stopped:
            await self._stop_source(name)
        if triage.dedupe != self._triage.dedupe:
            self._index = await _dedupe_index(self.engine, triage.dedupe)
        self.settings, self._triage = settings, triage
        for runner in self.runners.values():
            runner.use(triage, self._index, settings)
        for name in started:
            self.runners[name] = self._runner(new[name])
            self._failures[name] = 0
            self._schedule(name)
        self.outbox = self._outbox()
        self.alerts = AlertDispatcher(self.engine, settings.alerts)
        self._schedule_upkeep()
        await register_sources(self.engine, [(name, s.kind) for name, s in new.items()])
        logger.info(
            "configuration reloaded",
            extra={"stage": "reload", "started": started, "stopped": stopped},
        )

    async def _stop_source(self, name: str) -> None:
        if self._scheduler is not None and self._scheduler.get_job(f"source:{name}"):
            self._scheduler.remove_job(f"source:{name}")
        polling = self._polling.get(name)
        if polling is not None:  # the batch in hand is committed or rolled back whole
            await asyncio.wait([polling], timeout=self.settings.service.shutdown_grace_s)
        runner = self.runners.pop(name)
        self._failures.pop(name, None)
        self._resume_at.pop(name, None)
        self.metrics.forget_source(name)
        await runner.release()

    async def _job(self, scheduler: AsyncIOScheduler, name: str) -> None:
        task = asyncio.ensure_future(self.poll_source(name))
        self._polling[name] = task
        try:
            result = await self._tracked(task)
        finally:
            if self._polling.get(name) is task:
                del self._polling[name]
        if isinstance(result, str) and scheduler.get_job(f"source:{name}"):
            scheduler.modify_job(f"source:{name}", next_run_time=self._resume_at[name])

    async def _deliver_job(self) -> None:
        await self._unless_database_fails("outbox", self.outbox.deliver_due())

    async def _alerts_job(self) -> None:
        await self._unless_database_fails("alerts", self.alerts.run())

    async def _unless_database_fails(self, stage: str, work: Coroutine[Any, Any, Any]) -> None:
        """Run a periodic job's pass; a database or network failure is logged in a line and
        the next pass tries again. Left to the scheduler, it would log a traceback carrying
        the failed statement, and so the customer text of a reply."""
        try:
            await self._tracked(work)
        except (OSError, SQLAlchemyError) as exc:
            logger.error(
                "%s pass failed, the next one will try again: %s",
                stage,
                describe_error(exc, database=describe_database(self.engine.url)),
                extra={"stage": stage},
            )

    async def _retention_job(self) -> None:
        # One replica runs it: the others find the lease taken and skip this day's run.
        await self._tracked(
            run_retention_job(self.engine, self.settings.retention, owner=self._owner)
        )

    async def _tracked(self, work: Coroutine[Any, Any, T] | asyncio.Future[T]) -> T:
        # APScheduler 3 cancels running jobs when it shuts down; the daemon awaits its own
        # tasks within the grace period first, so a batch is committed or rolled back whole.
        task = asyncio.ensure_future(work)
        self._in_flight.add(task)
        try:
            return await asyncio.shield(task)
        finally:
            self._in_flight.discard(task)

    async def _drain(self) -> None:
        if not self._in_flight:
            return
        grace_s = self.settings.service.shutdown_grace_s
        _done, pending = await asyncio.wait(self._in_flight, timeout=grace_s)
        for task in pending:
            task.cancel()
        if pending:
            logger.warning("abandoned %d in-flight jobs after %.0f s", len(pending), grace_s)
            await asyncio.wait(pending)
