"""Alerts for P1 items and SLA breaches: to a webhook (a real aiohttp server on loopback), by
e-mail (the aiosmtpd loopback server) and to Telegram (a loopback server answering as the
Bot API documents), each alert once, retried when the target fails; and a target that hangs
never holds up ingestion."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from inbox_daemon.alerts import AlertDispatcher
from inbox_daemon.config import AlertsSettings, settings_from_document
from inbox_daemon.interfaces import Classification, FeedbackRecord, Identity
from inbox_daemon.loopback.imap import LoopbackImapServer
from inbox_daemon.loopback.smtp import LoopbackSmtpServer
from inbox_daemon.scheduler import Daemon
from inbox_daemon.storage.batch import BatchPlan, SenderLimits, commit_batch
from inbox_daemon.storage.repository import acquire_lease, load_cursor, release_lease
from inbox_daemon.storage.schema import alerts, feedback_records
from tests.factories import message, record
from tests.peers import SilentPeer

pytestmark = pytest.mark.timeout(90)

SLA = {"P1": 900, "P2": 14400, "P3": 86400, "P4": 259200}
SECRET = "webhook-signing-key-0123456789"
BOT_TOKEN = "123456:test-bot-token-abcdefghij"
FAST_RETRY = {"retry_base_s": 1, "retry_cap_s": 1, "timeout_s": 5}


def feedback(n: int, *, priority: str, team: str = "risk_control") -> FeedbackRecord:
    msg = message(
        f"alert-{n}@example.net",
        thread_key=f"alert-thread-{n}",
        sender=Identity("email", f"a{n}@example.net", f"a{n}@example.net", f"Alert {n}"),
        subject=f"Problem {n}",
    )
    labels = Classification("account_security", priority, team, (f"rule {n}",))
    return replace(record(msg), classification=labels)


async def ingest(engine: AsyncEngine, *records: FeedbackRecord, now: datetime) -> list[str]:
    assert await acquire_lease(engine, "support-mail", "test", ttl_s=3600, now=now)
    _, version = await load_cursor(engine, "support-mail")
    plan = BatchPlan(
        "support-mail",
        "test",
        records,
        (),
        version,
        {"n": now.isoformat()},
        SLA,
        SenderLimits(99, 99),
    )
    await commit_batch(engine, plan, now=now)
    await release_lease(engine, "support-mail", "test")  # for a daemon that polls it later
    return [r.reference for r in records]


@pytest.fixture
async def items(engine: AsyncEngine) -> dict[str, str]:
    """A P1 item just in; a P2 item five hours old (overdue); a P3 item (neither)."""
    now = datetime.now(UTC)
    [p1] = await ingest(engine, feedback(1, priority="P1"), now=now)
    [late] = await ingest(
        engine, feedback(2, priority="P2", team="finance"), now=now - timedelta(hours=5)
    )
    [calm] = await ingest(engine, feedback(3, priority="P3"), now=now)
    return {"p1": p1, "late": late, "calm": calm}


def alert_settings(**values: Any) -> AlertsSettings:
    document = {
        "config_version": 1,
        "alerts": {"item_url": "https://queue.example/#{reference}", **values},
    }
    return settings_from_document(document, Path("inbox.toml")).alerts


@dataclass
class Receiver:
    """A webhook or Bot API endpoint on loopback: what it got, and what it answers next."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answers: list[tuple[int, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        self.arrived.set()
        status, body = self.answers.pop(0) if self.answers else (200, {"ok": True, "result": {}})
        return web.json_response(body, status=status)


Serve = Callable[[str], Awaitable[Receiver]]


@pytest.fixture
async def receiver() -> AsyncIterator[Serve]:
    async with AsyncExitStack() as stack:

        async def start(path: str) -> Receiver:
            got = Receiver()
            app = web.Application()
            app.router.add_post(path, got.handle)
            runner = web.AppRunner(app)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            got.url = f"http://{host}:{port}"
            return got

        yield start


async def states(engine: AsyncEngine) -> list[tuple[str, str, str, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(feedback_records.c.reference, alerts.c.event, alerts.c.state, alerts.c.attempts)
            .select_from(alerts)
            .join_from(alerts, feedback_records, feedback_records.c.id == alerts.c.item_id)
            .order_by(alerts.c.id)
        )
        return [tuple(row) for row in rows.all()]  # type: ignore[misc]


# --- webhook ----------------------------------------------------------------------------------


async def test_p1_and_sla_breach_alerts_reach_the_webhook_once_signed(
    engine: AsyncEngine, items: dict[str, str], receiver: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_SECRET", SECRET)
    hook = await receiver("/hooks/inbox")
    target = {
        "name": "pager",
        "kind": "webhook",
        "url": f"{hook.url}/hooks/inbox",
        "secret_env": "ALERT_SECRET",
    }
    settings = alert_settings(targets=[target])
    # Two replicas look at once: each alert is recorded once and sent once.
    reports = await asyncio.gather(
        AlertDispatcher(engine, settings).run(), AlertDispatcher(engine, settings).run()
    )
    assert sum(report.queued for report in reports) == 2
    assert sum(report.sent for report in reports) == 2
    assert (await AlertDispatcher(engine, settings).run()).queued == 0
    assert len(hook.received) == 2
    bodies = {}
    for headers, body in hook.received:
        expected = hmac.new(
            SECRET.encode(), headers["X-Inbox-Timestamp"].encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        assert hmac.compare_digest(headers["X-Inbox-Signature"], f"sha256={expected}")
        document = json.loads(body)
        assert headers["X-Inbox-Alert-Id"] == str(document["id"])
        bodies[document["event"]] = document
    assert bodies["p1"]["reference"] == items["p1"]
    assert bodies["p1"]["url"] == f"https://queue.example/#{items['p1']}"
    assert (bodies["sla_breach"]["reference"], bodies["sla_breach"]["team"]) == (
        items["late"],
        "finance",
    )
    # An alert names the item and never what the customer wrote or who they are.
    for _, body in hook.received:
        assert b"example.net" not in body and b"Problem" not in body
    assert sorted(await states(engine)) == sorted(
        [(items["p1"], "p1", "sent", 1), (items["late"], "sla_breach", "sent", 1)]
    )


async def test_a_failing_webhook_is_retried_with_backoff_until_it_answers(
    engine: AsyncEngine, items: dict[str, str], receiver: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_SECRET", SECRET)
    hook = await receiver("/hook")
    hook.answers = [(503, {"busy": True}), (500, {})]
    target = {
        "name": "pager",
        "kind": "webhook",
        "url": f"{hook.url}/hook",
        "secret_env": "ALERT_SECRET",
        "events": ["p1"],
    }
    settings = alert_settings(targets=[target], **FAST_RETRY)
    dispatcher = AlertDispatcher(engine, settings)
    first = await dispatcher.run()
    assert (first.queued, first.sent, first.retry) == (1, 0, 1)
    # Not due again before its backoff has passed.
    assert (await dispatcher.run()).retry == 0 and len(hook.received) == 1
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert (await dispatcher.run(now=later)).retry == 1
    assert (await dispatcher.run(now=later + timedelta(seconds=5))).sent == 1
    assert (await dispatcher.run(now=later + timedelta(seconds=10))).sent == 0
    ids = {headers["X-Inbox-Alert-Id"] for headers, _ in hook.received}
    assert len(hook.received) == 3 and len(ids) == 1  # one alert, three attempts
    assert await states(engine) == [(items["p1"], "p1", "sent", 3)]


async def test_a_refusing_webhook_fails_the_alert_for_good(
    engine: AsyncEngine, items: dict[str, str], receiver: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_SECRET", SECRET)
    hook = await receiver("/hook")
    hook.answers = [(404, {})]
    target = {
        "name": "pager",
        "kind": "webhook",
        "url": f"{hook.url}/hook",
        "secret_env": "ALERT_SECRET",
        "events": ["p1"],
    }
    dispatcher = AlertDispatcher(engine, alert_settings(targets=[target], **FAST_RETRY))
    assert (await dispatcher.run()).failed == 1
    assert (await dispatcher.run(now=datetime.now(UTC) + timedelta(hours=1))).failed == 0
    assert len(hook.received) == 1


async def test_targets_take_only_their_events_and_teams_and_nothing_stale(
    engine: AsyncEngine, items: dict[str, str], receiver: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_SECRET", SECRET)
    hook = await receiver("/hook")
    common = {"kind": "webhook", "url": f"{hook.url}/hook", "secret_env": "ALERT_SECRET"}
    settings = alert_settings(
        targets=[
            {"name": "risk", "teams": ["risk_control"], **common},
            {"name": "breaches", "events": ["sla_breach"], **common},
        ],
        max_age_s=3600,  # the P2 item fell due an hour after it came in: 4 hours ago
    )
    report = await AlertDispatcher(engine, settings).run()
    assert (report.queued, report.sent) == (1, 1)
    assert await states(engine) == [(items["p1"], "p1", "sent", 1)]


# --- e-mail -----------------------------------------------------------------------------------


async def test_an_email_alert_goes_through_the_relay_and_is_retried_on_a_4xx(
    engine: AsyncEngine, items: dict[str, str]
) -> None:
    async with LoopbackSmtpServer() as smtp:
        smtp.refuse_next(1, 451, "try again later")  # one of the two recipients, for now
        target = {
            "name": "oncall",
            "kind": "email",
            "to": ["oncall@example.com", "risk-lead@example.com"],
            "events": ["p1"],
            "smtp": {
                "host": smtp.host,
                "port": smtp.port,
                "security": "none",
                "from_address": "alerts@example.com",
            },
        }
        dispatcher = AlertDispatcher(engine, alert_settings(targets=[target], **FAST_RETRY))
        assert (await dispatcher.run()).retry == 1
        # The other recipient has it already; the retry sends to both, under one Message-ID.
        [partial] = smtp.received
        assert partial.rcpt_tos == ("risk-lead@example.com",)
        assert (await dispatcher.run(now=datetime.now(UTC) + timedelta(seconds=5))).sent == 1
        first, mail = await smtp.wait_for(2, timeout_s=10)
        assert (await dispatcher.run(now=datetime.now(UTC) + timedelta(seconds=10))).sent == 0
    assert mail.rcpt_tos == ("oncall@example.com", "risk-lead@example.com")
    assert _message_id(first) == _message_id(mail)
    parsed = message_from_bytes(mail.data, policy=policy.default)
    assert parsed["Subject"] == f"[P1] {items['p1']}: a P1 item for risk_control"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["Message-ID"].startswith("<alert-") and parsed["Message-ID"].endswith(
        "@example.com>"
    )
    assert f"https://queue.example/#{items['p1']}" in parsed.get_content()
    assert await states(engine) == [(items["p1"], "p1", "sent", 2)]


def _message_id(mail: Any) -> str:
    return str(message_from_bytes(mail.data, policy=policy.default)["Message-ID"])


# --- Telegram ---------------------------------------------------------------------------------


async def test_a_telegram_alert_is_sent_by_the_bot_and_waits_out_a_flood_limit(
    engine: AsyncEngine, items: dict[str, str], receiver: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_BOT_TOKEN", BOT_TOKEN)
    api = await receiver(f"/bot{BOT_TOKEN}/sendMessage")
    api.answers = [
        (
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 7",
                "parameters": {"retry_after": 7},
            },
        ),
    ]
    target = {
        "name": "risk-chat",
        "kind": "telegram",
        "chat_id": "-1001234567890",
        "bot_token_env": "ALERT_BOT_TOKEN",
        "api_base_url": api.url,
        "events": ["p1"],
    }
    dispatcher = AlertDispatcher(engine, alert_settings(targets=[target], **FAST_RETRY))
    before = datetime.now(UTC)
    assert (await dispatcher.run()).retry == 1
    async with engine.connect() as conn:
        due, error = (
            await conn.execute(select(alerts.c.next_attempt_at, alerts.c.last_error))
        ).one()
    assert due >= before + timedelta(seconds=7)  # the flood limit's delay, not the 1 s backoff
    assert "429" in error and BOT_TOKEN not in error
    assert (await dispatcher.run(now=due - timedelta(seconds=1))).sent == 0
    assert (await dispatcher.run(now=due)).sent == 1
    assert len(api.received) == 2
    sent = json.loads(api.received[-1][1])
    assert sent["chat_id"] == -1001234567890
    assert sent["text"].startswith(f"[P1] {items['p1']}") and items["p1"] in sent["text"]


async def test_an_unknown_telegram_chat_fails_the_alert_without_the_token_in_the_log(
    engine: AsyncEngine, items: dict[str, str], receiver: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_BOT_TOKEN", BOT_TOKEN)
    api = await receiver(f"/bot{BOT_TOKEN}/sendMessage")
    api.answers = [
        (400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"})
    ]
    target = {
        "name": "chat",
        "kind": "telegram",
        "chat_id": "@risk_alerts",
        "bot_token_env": "ALERT_BOT_TOKEN",
        "api_base_url": api.url,
        "events": ["p1"],
    }
    assert (await AlertDispatcher(engine, alert_settings(targets=[target])).run()).failed == 1
    assert json.loads(api.received[0][1])["chat_id"] == "@risk_alerts"
    async with engine.connect() as conn:
        error = await conn.scalar(select(alerts.c.last_error))
    assert "chat not found" in error and BOT_TOKEN not in error


# --- a target that hangs ----------------------------------------------------------------------


URGENT_MAIL = (
    b"Message-ID: <hacked-1@example.net>\r\nDate: Mon, 23 Nov 2026 08:00:00 +0000\r\n"
    b"From: Dana Wu <dana@example.net>\r\nTo: support@example.com\r\n"
    b"Subject: Someone logged into my account and is withdrawing funds now\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    b"My account was hacked, an unknown device logged in and withdrawals are going out!\r\n"
)


async def test_a_webhook_that_hangs_does_not_delay_ingestion(
    tmp_path: Path,
    database: str,
    engine: AsyncEngine,
    items: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALERT_SECRET", SECRET)
    async with AsyncExitStack() as stack:
        imap = await stack.enter_async_context(LoopbackImapServer())
        silent = await stack.enter_async_context(SilentPeer())
        monkeypatch.setenv("TEST_IMAP_PASSWORD", imap.password)
        path = tmp_path / "inbox.toml"
        path.write_text(
            f"""
config_version = 1
[storage]
url = "{database}"
[service]
shutdown_grace_s = 1
[alerts]
poll_interval_s = 1
timeout_s = 60
[[alerts.targets]]
name = "hanging"
kind = "webhook"
url = "http://{silent.host}:{silent.port}/hook"
secret_env = "ALERT_SECRET"
[[sources]]
name = "support-mail"
kind = "imap"
host = "{imap.host}"
port = {imap.port}
security = "none"
username = "{imap.username}"
password_env = "TEST_IMAP_PASSWORD"
backfill_days = 36500
poll_interval_s = 1
timeout_s = 10
[sources.smtp]
host = "127.0.0.1"
port = 9
security = "none"
from_address = "support@example.com"
""",
            encoding="utf-8",
        )
        from inbox_daemon.config import load_settings

        daemon = await Daemon.open(load_settings(path), stack)
        stop = asyncio.Event()
        serving = asyncio.ensure_future(daemon.serve(stop))
        try:
            # The alerts of the items already stored go to a peer that never answers...
            await _until(lambda: _sending(engine), "an alert delivery hanging")
            assert silent.accepted >= 1
            # ...while mail that arrives now is fetched and stored, each poll on time.
            await imap.append("INBOX", URGENT_MAIL)
            await _until(lambda: _stored(engine, "hacked-1@example.net"), "the new mail stored")
            assert await _sending(engine)  # the delivery still hangs
        finally:
            stop.set()
            await serving


async def _sending(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return bool(await conn.scalar(select(func.count()).where(alerts.c.state == "sending")))


async def _stored(engine: AsyncEngine, external_id: str) -> bool:
    async with engine.connect() as conn:
        found = await conn.scalar(
            select(func.count()).where(feedback_records.c.external_id == external_id)
        )
    return bool(found)


async def _until(check: Callable[[], Awaitable[bool]], what: str, deadline_s: float = 30) -> None:
    """Poll ``check`` until it holds, failing after ``deadline_s`` (a deadline, not a sleep)."""
    try:
        async with asyncio.timeout(deadline_s):
            while not await check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not seen within {deadline_s} s: {what}") from None
