"""/metrics and `status`: what a real daemon run counted, as a scraper reads it, is what was stored.

The daemon runs against pymap and aiosmtpd on loopback; the exposition is fetched over HTTP
and parsed with prometheus_client's own parser; every figure is checked against SQL counts
of the database the run wrote (SQLite, and PostgreSQL when INBOX_TEST_PG_URL is set).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from inbox_daemon.cli import run_cli
from inbox_daemon.config import load_settings
from inbox_daemon.loopback.imap import LoopbackImapServer
from inbox_daemon.loopback.smtp import LoopbackSmtpServer
from inbox_daemon.metrics import ServiceMetrics, cursor_summary
from inbox_daemon.scheduler import Daemon, RunReport
from inbox_daemon.storage.engine import create_engine, database_url
from inbox_daemon.storage.schema import (
    dead_letters,
    feedback_records,
    incidents,
    outbox,
    queue_items,
    sources,
)
from inbox_daemon.web.metrics import metrics_app
from inbox_daemon.web.server import listen, start_metrics_server, start_web
from tests.daemon import migrated_engine
from tests.peers import SilentPeer

pytestmark = pytest.mark.timeout(120)

ALICE = "Alice Tan <alice@example.net>"
#: Customer text that must never reach the exposition.
ALICE_TEXT = "My BTC withdrawal has been pending for two days. My UID 52019374, please help."


def mail(message_id: str, *, sender: str, subject: str, body: str) -> bytes:
    return (
        f"Message-ID: <{message_id}>\r\nDate: Mon, 23 Nov 2026 08:00:00 +0000\r\nFrom: {sender}\r\n"
        f"To: support@example.com\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


#: Each dedupe level once or twice, a dead letter, and an incident (folder, raw mail).
SCENARIO = (
    ("INBOX", mail("a1@example.net", sender=ALICE, subject="Withdrawal stuck", body=ALICE_TEXT)),
    # Level 1: the same mail in a second folder of the same source.
    ("Archive", mail("a1@example.net", sender=ALICE, subject="Withdrawal stuck", body=ALICE_TEXT)),
    # Level 2: the same mail through another source.
    (
        "Escalations",
        mail("a1@example.net", sender=ALICE, subject="Withdrawal stuck", body=ALICE_TEXT),
    ),
    # Level 3: the same sender about the same problem.
    (
        "INBOX",
        mail(
            "a2@example.net",
            sender=ALICE,
            subject="Re: withdrawal",
            body="Still waiting, my BTC withdrawal is pending.",
        ),
    ),
    # Level 5: another address quoting the same UID.
    (
        "INBOX",
        mail(
            "b1@example.net",
            sender="Alice at work <alice.tan@corp.example>",
            subject="Withdrawal",
            body="Writing from work: the BTC withdrawal of UID 52019374 is still pending.",
        ),
    ),
    # Level 4: two people, one problem.
    (
        "INBOX",
        mail(
            "c1@example.net",
            sender="Carol <carol@example.org>",
            subject="Deposit missing",
            body="My USDT deposit on TRC20 is not credited yet.",
        ),
    ),
    (
        "INBOX",
        mail(
            "d1@example.net",
            sender="Dave <dave@example.com>",
            subject="USDT deposit",
            body="USDT TRC20 deposit not credited after three hours.",
        ),
    ),
    # A mail without content: a dead letter.
    ("INBOX", b"\r\n"),
)


@pytest.fixture
async def imap() -> AsyncIterator[LoopbackImapServer]:
    async with LoopbackImapServer() as server:
        async with server.client() as client:
            for folder in ("Archive", "Escalations"):
                await client.create(folder)
        yield server


@pytest.fixture
async def smtp() -> AsyncIterator[LoopbackSmtpServer]:
    async with LoopbackSmtpServer() as server:
        yield server


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def imap_source(name: str, imap: LoopbackImapServer, folders: str, *, port: int) -> str:
    return f"""
[[sources]]
name = "{name}"
kind = "imap"
host = "{imap.host}"
port = {port}
security = "none"
username = "{imap.username}"
password_env = "METRICS_IMAP_PASSWORD"
folders = {folders}
backfill_days = 36500
timeout_s = 10
batch_size = 25
"""


def smtp_relay(smtp: LoopbackSmtpServer) -> str:
    return f"""
[sources.smtp]
host = "{smtp.host}"
port = {smtp.port}
security = "none"
from_address = "support@example.com"
timeout_s = 5
"""


@pytest.fixture
def config_path(
    tmp_path: Path,
    database: str,
    imap: LoopbackImapServer,
    smtp: LoopbackSmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    monkeypatch.setenv("METRICS_IMAP_PASSWORD", imap.password)
    path = tmp_path / "inbox.toml"
    path.write_text(
        f'config_version = 1\n[storage]\nurl = "{database}"\n'
        "[replies]\nmax_ack_age_s = 315360000\n"
        "[metrics]\nenabled = true\nport = 0\n"
        + imap_source("support-mail", imap, '["INBOX", "Archive"]', port=imap.port)
        + smtp_relay(smtp)
        + imap_source("escalations", imap, '["Escalations"]', port=imap.port)
        + smtp_relay(smtp)
        + imap_source("broken", imap, '["INBOX"]', port=closed_port()),
        encoding="utf-8",
    )
    return path


@pytest.fixture
async def engine(config_path: Path) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(config_path) as engine:
        yield engine


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(exposition: str) -> Samples:
    """Every sample of a text exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def named(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: number for (sample, labels), number in samples.items() if sample == name}


async def scalar(engine: AsyncEngine, query) -> int:
    async with engine.connect() as conn:
        return int((await conn.scalar(query)) or 0)


def count(table, *where) -> object:
    return select(func.count()).select_from(table).where(*where)


async def get(url: str, **headers: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def ingest(imap: LoopbackImapServer, smtp: LoopbackSmtpServer, daemon: Daemon) -> RunReport:
    for folder, raw in SCENARIO:
        await imap.append(folder, raw)
    report = await daemon.run_once()
    await smtp.wait_for(report.delivery.sent, timeout_s=30)
    return report


async def test_scrape_after_a_run_equals_what_the_database_holds(
    imap: LoopbackImapServer, smtp: LoopbackSmtpServer, config_path: Path, engine: AsyncEngine
) -> None:
    settings = load_settings(config_path)
    async with AsyncExitStack() as stack:
        daemon = await Daemon.open(settings, stack)
        report = await ingest(imap, smtp, daemon)
        server = await start_metrics_server(stack, daemon.engine, settings, daemon.metrics)
        status, content_type, body = await get(f"{server.url}metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    samples = parse(body)

    # Per source: fetched = stored + dead letters + absorbed re-fetches (level 1).
    for name in ("support-mail", "escalations"):
        stored = await scalar(engine, count(feedback_records, feedback_records.c.source == name))
        dead = await scalar(engine, count(dead_letters, dead_letters.c.source == name))
        absorbed = value(samples, "inbox_duplicates_total", source=name, level="1")
        assert value(samples, "inbox_messages_stored_total", source=name) == stored
        assert value(samples, "inbox_dead_letters_total", source=name) == dead
        assert (
            value(samples, "inbox_messages_fetched_total", source=name) == stored + dead + absorbed
        )
        batches = report.polls[name].batches
        assert value(samples, "inbox_fetch_duration_seconds_count", source=name) == batches
        assert value(samples, "inbox_pipeline_batch_duration_seconds_count", source=name) == batches
        assert value(samples, "inbox_source_up", source=name) == 1
        assert value(samples, "inbox_source_backoff", source=name) == 0
        async with engine.connect() as conn:
            success = await conn.scalar(
                select(sources.c.last_success_at).where(sources.c.name == name)
            )
        assert value(
            samples, "inbox_source_last_success_timestamp_seconds", source=name
        ) == pytest.approx(success.timestamp())

    # The scenario's figures, each also what SQL finds.
    assert value(samples, "inbox_messages_stored_total", source="support-mail") == 5
    assert value(samples, "inbox_messages_stored_total", source="escalations") == 1
    assert value(samples, "inbox_dead_letters_total", source="support-mail") == 1

    def level(number: str) -> float:
        return sum(
            value(samples, "inbox_duplicates_total", source=name, level=number)
            for name in ("support-mail", "escalations", "broken")
        )

    assert [level(n) for n in "12345"] == [1, 1, 1, 2, 1]
    repeats = count(feedback_records, feedback_records.c.duplicate_of.is_not(None))
    assert level("2") + level("3") + level("5") == await scalar(engine, repeats)
    joined = count(feedback_records, feedback_records.c.incident_id.is_not(None))
    assert level("4") == await scalar(engine, joined)
    opened = sum(named(samples, "inbox_incidents_opened_total").values())
    assert opened == await scalar(engine, count(incidents)) == 1

    # Replies: sent as the SMTP server received them, withheld as the records say.
    replies = named(samples, "inbox_replies_total")

    def outcome(name: str) -> float:
        return sum(number for labels, number in replies.items() if ("outcome", name) in labels)

    assert outcome("sent") == len(smtp.received) == report.delivery.sent > 0
    assert outcome("sent") == await scalar(engine, count(outbox, outbox.c.state == "sent"))
    assert outcome("withheld") == await scalar(
        engine, count(feedback_records, feedback_records.c.ack_decision != "send")
    )
    assert outcome("retry") == outcome("failed") == 0

    # The failing source is down and backs off; the others are untouched by it.
    assert value(samples, "inbox_source_up", source="broken") == 0
    assert value(samples, "inbox_source_backoff", source="broken") == 1
    assert ("inbox_source_last_success_timestamp_seconds", (("source", "broken"),)) not in samples

    # Read from the database at scrape time: the open queue and the outbox backlog.
    assert value(samples, "inbox_database_up") == 1
    async with engine.connect() as conn:
        depth = (
            await conn.execute(
                select(
                    queue_items.c.team, queue_items.c.priority, queue_items.c.state, func.count()
                )
                .where(queue_items.c.state != "resolved")
                .group_by(queue_items.c.team, queue_items.c.priority, queue_items.c.state)
            )
        ).all()
    expected = {
        (("priority", priority), ("status", state), ("team", team)): float(items)
        for team, priority, state, items in depth
    }
    assert named(samples, "inbox_queue_items") == expected
    assert sum(expected.values()) == await scalar(engine, count(queue_items)) > 0
    backlog = named(samples, "inbox_outbox_replies")
    assert set(backlog) == {
        (("state", state),) for state in ("pending", "sending", "retry", "failed", "unknown")
    }
    assert sum(backlog.values()) == await scalar(engine, count(outbox, outbox.c.state != "sent"))

    # Nothing a customer wrote, no sender, no secret.
    for text in ("alice", "Withdrawal stuck", "pending for two days", "52019374", "demopass"):
        assert text not in body


async def test_metrics_need_no_token_on_the_web_server_while_the_api_does(
    imap: LoopbackImapServer,
    smtp: LoopbackSmtpServer,
    config_path: Path,
    engine: AsyncEngine,
) -> None:
    settings = load_settings(config_path)
    async with AsyncExitStack() as stack:
        daemon = await Daemon.open(settings, stack)
        await ingest(imap, smtp, daemon)
        server = await start_web(stack, daemon.engine, settings, port=0, metrics=daemon.metrics)
        status, _, body = await get(f"{server.url}metrics")
        api_status, _, _ = await get(f"{server.url}api/v1/items")
    assert (status, api_status) == (200, 401)
    samples = parse(body)
    stored = await scalar(engine, count(feedback_records))
    assert sum(named(samples, "inbox_messages_stored_total").values()) == stored == 6


async def test_scrape_answers_openmetrics_when_the_scraper_asks(engine: AsyncEngine) -> None:
    metrics = ServiceMetrics()
    accept = "application/openmetrics-text; version=1.0.0"
    body, content_type = await metrics.exposition(engine, accept)
    assert content_type.startswith("application/openmetrics-text")
    assert body.decode().rstrip().endswith("# EOF")


async def scrape_without_database(url: str, *, timeout_s: float = 5.0) -> Samples:
    """Scrape a metrics server over a database at ``url`` that cannot answer."""
    engine = create_engine(database_url(url, Path.cwd()))
    metrics = ServiceMetrics(database_timeout_s=timeout_s)
    metrics.source_failed("support-mail")
    try:
        async with AsyncExitStack() as stack:
            app = metrics_app(engine, metrics)
            server = await listen(stack, app, "127.0.0.1", 0, grace_s=1, key="metrics.port")
            status, _, body = await get(f"{server.url}metrics")
            ready, _, _ = await get(f"{server.url}readyz")
    finally:
        await engine.dispose()
    assert (status, ready) == (200, 503)
    return parse(body)


@pytest.mark.parametrize("down", ["sqlite-unopenable", "postgresql-refused"])
async def test_scrape_with_the_database_down_answers_without_its_figures(down: str) -> None:
    url = (
        "sqlite:////nonexistent-folder/inbox.db"
        if down == "sqlite-unopenable"
        else f"postgresql://postgres@127.0.0.1:{closed_port()}/inbox"
    )
    samples = await scrape_without_database(url)
    assert value(samples, "inbox_database_up") == 0
    assert not named(samples, "inbox_queue_items")
    assert not named(samples, "inbox_outbox_replies")
    # The process's own figures are still there.
    assert value(samples, "inbox_source_up", source="support-mail") == 0
    assert value(samples, "inbox_source_backoff", source="support-mail") == 1
    assert any(name.startswith("process_") for name, _ in samples)


async def test_scrape_with_a_database_that_never_answers_gives_up_in_time() -> None:
    async with SilentPeer() as silent:
        samples = await scrape_without_database(
            f"postgresql://postgres@127.0.0.1:{silent.port}/inbox", timeout_s=0.5
        )
    assert value(samples, "inbox_database_up") == 0
    assert not named(samples, "inbox_queue_items")


async def test_status_shows_cursors_backoff_and_open_items_by_team_and_priority(
    imap: LoopbackImapServer,
    smtp: LoopbackSmtpServer,
    config_path: Path,
    engine: AsyncEngine,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with AsyncExitStack() as stack:
        await ingest(imap, smtp, await Daemon.open(load_settings(config_path), stack))
    capsys.readouterr()
    assert await run_cli(["status", "--json", "--config", str(config_path)]) == 0
    document = json.loads(capsys.readouterr().out)
    by_name = {source["name"]: source for source in document["sources"]}
    mail_cursor = by_name["support-mail"]["cursor"]
    assert mail_cursor["summary"].startswith("INBOX: uidvalidity=")
    assert "; Archive: uidvalidity=" in mail_cursor["summary"]
    assert mail_cursor["version"] >= 1
    assert by_name["broken"]["cursor"] is None
    assert by_name["broken"]["in_backoff"] is True
    assert by_name["support-mail"]["in_backoff"] is False
    assert by_name["support-mail"]["fetched_total"] == 7  # the existing fields stay
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(queue_items.c.team, queue_items.c.priority, func.count())
                .where(queue_items.c.state != "resolved")
                .group_by(queue_items.c.team, queue_items.c.priority)
            )
        ).all()
    assert {(r["team"], r["priority"]): r["items"] for r in document["queue_open"]} == {
        (team, priority): items for team, priority, items in rows
    }

    assert await run_cli(["status", "--config", str(config_path)]) == 0
    text = capsys.readouterr().out
    assert "  cursor: INBOX: uidvalidity=" in text
    assert "  cursor: none yet" in text
    lines = text.splitlines()
    broken = lines.index(next(line for line in lines if line.startswith("broken (imap)")))
    assert lines[broken + 1] == "  cursor: none yet (nothing committed)"
    until = datetime.fromisoformat(by_name["broken"]["backoff_until"])
    assert lines[broken + 2] == f"  backoff: until {until}"
    assert "open queue items:" in text
    header = next(line for line in text.splitlines() if line.strip().startswith("team"))
    assert header.split() == ["team", "P1", "P2", "P3", "P4"]
    for team, priority, items in rows:
        row = next(line.split() for line in text.splitlines() if line.split()[:1] == [team])
        assert int(row[1 + ["P1", "P2", "P3", "P4"].index(priority)]) == items


def test_cursor_summary_is_short_and_leaves_out_peer_addresses_and_page_tokens() -> None:
    imap = {"folders": {"INBOX": {"uidvalidity": 7, "last_uid": 42}}}
    assert cursor_summary(imap) == "INBOX: uidvalidity=7 last_uid=42"
    telegram = {
        "mode": "user",
        "chats": {"@support": {"kind": "channel", "peer_id": 9, "access_hash": 123, "min_id": 5}},
    }
    assert cursor_summary(telegram) == "mode=user; chats.@support: kind=channel peer_id=9 min_id=5"
    x = {"streams": {"mentions": {"since_id": "17", "token": "next-page"}}}
    assert cursor_summary(x) == "mentions: since_id=17"
    long = {"folders": {f"Folder{n}": {"last_uid": n} for n in range(40)}}
    summary = cursor_summary(long)
    assert len(summary) == 120
    assert summary.endswith("…")


async def test_run_without_the_web_server_serves_metrics_on_their_own_port(
    tmp_path: Path, imap: LoopbackImapServer, smtp: LoopbackSmtpServer
) -> None:
    path = tmp_path / "inbox.toml"
    path.write_text(
        'config_version = 1\n[storage]\nurl = "sqlite:///./inbox.db"\n'
        "[web]\nenabled = false\n[metrics]\nenabled = true\nport = 0\n"
        + imap_source("support-mail", imap, '["INBOX"]', port=imap.port).replace(
            "timeout_s = 10", "timeout_s = 10\npoll_interval_s = 0.2"
        )
        + smtp_relay(smtp),
        encoding="utf-8",
    )
    env = {**os.environ, "METRICS_IMAP_PASSWORD": imap.password}
    command = [sys.executable, "-m", "inbox_daemon.cli"]
    migrate = await asyncio.create_subprocess_exec(
        *command, "migrate", "--config", str(path), env=env
    )
    assert await migrate.wait() == 0
    service = await asyncio.create_subprocess_exec(
        *command, "run", "--config", str(path), env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        url = (await next_log_line(service, "metrics served on"))["url"]
        await imap.append("INBOX", SCENARIO[0][1])
        samples = await scrape_until(url, "inbox_messages_stored_total", 1)
        assert value(samples, "inbox_source_up", source="support-mail") == 1
        assert (await get(url.replace("/metrics", "/healthz")))[0] == 200
        assert (await get(url.replace("/metrics", "/api/v1/items")))[0] == 404
    finally:
        service.send_signal(signal.SIGTERM)
        await asyncio.wait_for(service.communicate(), timeout=30)
    assert service.returncode == 0


async def next_log_line(service: asyncio.subprocess.Process, message: str) -> dict:
    assert service.stderr is not None
    while True:
        raw = await asyncio.wait_for(service.stderr.readline(), timeout=30)
        assert raw, f"the service ended before logging {message!r}"
        line = json.loads(raw)
        if line["message"].startswith(message):
            return line


async def scrape_until(url: str, name: str, at_least: float) -> Samples:
    """Scrape ``url`` until the samples of ``name`` add up to ``at_least`` (30 s at most)."""
    async with asyncio.timeout(30):
        while True:
            samples = parse((await get(url))[2])
            if sum(named(samples, name).values()) >= at_least:
                return samples
            await asyncio.sleep(0.1)


async def test_only_the_replica_holding_a_source_reports_its_gauges(
    imap: LoopbackImapServer, smtp: LoopbackSmtpServer, config_path: Path, engine: AsyncEngine
) -> None:
    await imap.append(*SCENARIO[0])
    settings = load_settings(config_path)
    async with AsyncExitStack() as stack:
        holder = await Daemon.open(settings, stack)
        other = await Daemon.open(settings, stack)
        assert (await holder.poll_source("support-mail")).lease_held
        assert not (await other.poll_source("support-mail")).lease_held
        held = parse((await holder.metrics.exposition(holder.engine))[0].decode())
        not_held = parse((await other.metrics.exposition(other.engine))[0].decode())
    assert value(held, "inbox_source_up", source="support-mail") == 1
    assert not named(not_held, "inbox_source_up")
    assert not named(not_held, "inbox_source_last_success_timestamp_seconds")
    # The database's figures are the same from every replica.
    assert sum(named(held, "inbox_queue_items").values()) == 1
    assert named(held, "inbox_queue_items") == named(not_held, "inbox_queue_items")
