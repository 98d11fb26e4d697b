"""Retention (anonymise or delete past each category's days) and erasure of one person's
data: on SQLite and PostgreSQL, through the library, the command line and a daemon run over
real IMAP and SMTP servers on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from inbox_daemon.alerts import queue_alerts
from inbox_daemon.audit import Actor, list_entries
from inbox_daemon.cli import run_cli
from inbox_daemon.config import RetentionSettings, settings_from_document
from inbox_daemon.interfaces import (
    Attachment,
    Classification,
    FailedMessage,
    FeedbackRecord,
    Identity,
)
from inbox_daemon.loopback.imap import LoopbackImapServer
from inbox_daemon.loopback.smtp import LoopbackSmtpServer
from inbox_daemon.queue import resolve, show_item
from inbox_daemon.retention import apply_retention, erase_sender, run_retention_job
from inbox_daemon.storage.batch import BatchPlan, SenderLimits, commit_batch
from inbox_daemon.storage.repository import acquire_lease, load_cursor, release_lease
from inbox_daemon.storage.schema import (
    dead_letters,
    feedback_records,
    metadata,
    outbox,
    queue_events,
    queue_items,
    reply_log,
)
from tests.daemon import migrated_engine, run_once
from tests.factories import message, record

pytestmark = pytest.mark.timeout(120)

SLA = {"P1": 900, "P2": 14400, "P3": 86400, "P4": 259200}
OPERATOR = Actor("cli:test", "cli test@localhost")
NOW = datetime.now(UTC)


def feedback(n: int, *, category: str, days_old: float, sender: str = "") -> FeedbackRecord:
    address = sender or f"person{n}@example.net"
    msg = message(
        f"keep-{n}@example.net",
        thread_key=f"keep-thread-{n}",
        sender=Identity("email", address, address, f"Person {n}"),
        subject=f"Subject of person {n}",
        text=f"Text written by person {n}",
        full_text=f"Text written by person {n}\n> quoted",
        received_at=NOW - timedelta(days=days_old),
        attachments=(Attachment(f"scan-{n}.png", "image/png", 9, "0" * 64),),
    )
    labels = Classification(category, "P3", "customer_service", (f"{category}: matched {n}",))
    return replace(record(msg), classification=labels)


async def ingest(
    engine: AsyncEngine, *records: FeedbackRecord, failures=(), now: datetime = NOW
) -> list[str]:
    assert await acquire_lease(engine, "support-mail", "test", ttl_s=3600, now=now)
    _, version = await load_cursor(engine, "support-mail")
    plan = BatchPlan(
        "support-mail",
        "test",
        records,
        failures,
        version,
        {"at": now.isoformat()},
        SLA,
        SenderLimits(99, 99),
    )
    await commit_batch(engine, plan, now=now)
    await release_lease(engine, "support-mail", "test")
    return [r.reference for r in records]


async def rows_of(engine: AsyncEngine, table: Any) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in (await conn.execute(select(table))).all()]


async def count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


def retention(**values: Any) -> RetentionSettings:
    return RetentionSettings.model_validate(values)


# --- retention ---------------------------------------------------------------------------------


async def test_retention_anonymises_what_is_past_its_category_and_keeps_the_rest(
    engine: AsyncEngine,
) -> None:
    old_a, old_b, kyc, recent = await ingest(
        engine,
        feedback(1, category="general", days_old=400),
        feedback(2, category="deposit", days_old=366),
        feedback(3, category="kyc", days_old=400),
        feedback(4, category="general", days_old=10),
    )
    await resolve(engine, old_a, "ana", note="told person1@example.net to retry")
    progress: list[tuple[int, int]] = []
    settings = retention(retention_days={"default": 365, "kyc": 1825}, batch_size=1)
    done = await apply_retention(
        engine, settings, actor=OPERATOR, progress=lambda *step: progress.append(step)
    )
    assert (done.records, sorted(done.references)) == (2, sorted([old_a, old_b]))
    assert progress == [(1, 2), (2, 2)]
    records = {row["reference"]: row for row in await rows_of(engine, feedback_records)}
    for ref in (old_a, old_b):
        kept = records[ref]
        assert kept["anonymised_at"] is not None
        assert (kept["sender_id"], kept["sender_handle"]) == (
            f"anonymised:{kept['id']}",
            "anonymised",
        )
        assert kept["text"] == kept["full_text"] == kept["subject"] == kept["sender_name"] == ""
        assert kept["attachments"] == [] and kept["reasons"] == [] and kept["headers"] == {}
        assert (kept["priority"], kept["team"]) == ("P3", "customer_service")  # statistics stay
    assert records[kyc]["anonymised_at"] is None and records[kyc]["text"]
    assert records[recent]["anonymised_at"] is None
    # The acknowledgment sent and the agent's note quoted the person: gone too.
    assert {row["record_id"] for row in await rows_of(engine, outbox)} == {
        records[kyc]["id"],
        records[recent]["id"],
    }
    assert len(await rows_of(engine, reply_log)) == 2
    [item] = [
        i for i in await rows_of(engine, queue_items) if i["record_id"] == records[old_a]["id"]
    ]
    assert item["state"] == "resolved" and item["resolution_note"] is None
    assert all(row["detail"] == "" for row in await rows_of(engine, queue_events))
    entries = [e for e in await list_entries(engine) if e.action == "retention"]
    assert [entry.detail["feedback_records"] for entry in entries] == [1, 1]
    assert sorted(ref for entry in entries for ref in entry.detail["references"]) == sorted(
        [old_a, old_b]
    )
    # Done is done: a second run finds nothing.
    assert (await apply_retention(engine, settings, actor=OPERATOR)).records == 0


async def test_retention_by_deletion_removes_records_and_old_dead_letters(
    engine: AsyncEngine,
) -> None:
    [old, recent] = await ingest(
        engine,
        feedback(1, category="general", days_old=40),
        feedback(2, category="general", days_old=1),
    )
    broken = FailedMessage("broken-1@example.net", "INBOX;uid=9", "unparseable MIME", 120)
    await ingest(engine, failures=(broken,), now=NOW - timedelta(days=40))
    fresh = FailedMessage("broken-2@example.net", "INBOX;uid=10", "unparseable MIME", 120)
    await ingest(engine, failures=(fresh,))
    done = await apply_retention(
        engine, retention(retention_days={"default": 30}, action="delete"), actor=OPERATOR
    )
    assert done.references == [old]
    assert done.counts["feedback_records"] == 1 and done.counts["dead_letters"] == 1
    assert [row["reference"] for row in await rows_of(engine, feedback_records)] == [recent]
    assert await count(engine, queue_items) == 1 and await count(engine, outbox) == 1
    assert [row["external_id"] for row in await rows_of(engine, dead_letters)] == [
        "broken-2@example.net"
    ]


async def test_no_retention_configured_keeps_everything(engine: AsyncEngine) -> None:
    await ingest(engine, feedback(1, category="general", days_old=4000))
    assert (await apply_retention(engine, retention(), actor=OPERATOR)).records == 0
    assert await count(engine, feedback_records) == 1


async def test_the_daily_job_runs_on_one_replica_at_a_time(engine: AsyncEngine) -> None:
    await ingest(engine, *(feedback(n, category="general", days_old=400) for n in range(3)))
    settings = retention(retention_days={"default": 365})
    await asyncio.gather(
        run_retention_job(engine, settings, owner="replica-a"),
        run_retention_job(engine, settings, owner="replica-b"),
    )
    entries = [e for e in await list_entries(engine) if e.action == "retention"]
    assert sum(entry.detail["feedback_records"] for entry in entries) == 3
    assert {entry.actor for entry in entries} == {"inbox-daemon"}


# --- erasure -----------------------------------------------------------------------------------


async def test_erasing_a_handle_removes_the_person_and_only_them(engine: AsyncEngine) -> None:
    x_post = replace(
        feedback(1, category="general", days_old=1),
        message=replace(
            feedback(1, category="general", days_old=1).message,
            channel="twitter",
            sender=Identity("twitter", "4411", "@Alice_Trades", "Alice"),
        ),
    )
    [alices, others] = await ingest(engine, x_post, feedback(2, category="general", days_old=1))
    done = await erase_sender(engine, "alice_trades", actor=OPERATOR)
    assert done.references == [alices]
    assert [row["reference"] for row in await rows_of(engine, feedback_records)] == [others]
    with pytest.raises(ValueError, match="whole address or handle"):
        await erase_sender(engine, "@a", actor=OPERATOR)


def mail(message_id: str, sender: str, subject: str, body: str, extra: str = "") -> bytes:
    return (
        f"Message-ID: <{message_id}>\r\nDate: Mon, 23 Nov 2026 08:00:00 +0000\r\n"
        f"From: {sender}\r\nTo: support@example.com\r\nSubject: {subject}\r\n{extra}"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


#: What identifies Alice or is hers, in any table, in any case.
ALICE = ("alice@example.net", "alice tan", "alicetanuniquebody", "my account alicetan")


@pytest.fixture
async def mail_servers() -> AsyncIterator[tuple[LoopbackImapServer, LoopbackSmtpServer]]:
    async with LoopbackImapServer() as imap, LoopbackSmtpServer() as smtp:
        yield imap, smtp


async def test_erase_removes_everything_of_the_sender_from_every_table(
    tmp_path: Path,
    database: str,
    mail_servers: tuple[LoopbackImapServer, LoopbackSmtpServer],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    imap, smtp = mail_servers
    monkeypatch.setenv("TEST_IMAP_PASSWORD", imap.password)
    monkeypatch.setenv("TEST_ALERT_SECRET", "alert-key")
    path = tmp_path / "inbox.toml"
    path.write_text(
        f"""config_version = 1
[storage]
url = "{database}"
[[sources]]
name = "support-mail"
kind = "imap"
host = "{imap.host}"
port = {imap.port}
security = "none"
username = "{imap.username}"
password_env = "TEST_IMAP_PASSWORD"
backfill_days = 36500
timeout_s = 10
[sources.smtp]
host = "{smtp.host}"
port = {smtp.port}
security = "none"
from_address = "support@example.com"
""",
        encoding="utf-8",
    )
    alice = "Alice Tan <Alice@Example.net>"
    hacked = "Someone logged into my account alicetan and is withdrawing everything"
    await imap.append(
        "INBOX", mail("a1@example.net", alice, hacked, "AliceTanUniqueBody: account hacked!")
    )
    await imap.append(
        "INBOX",
        mail("b1@example.net", "Bob Ray <bob@example.net>", "Deposit late", "BobUniqueBody"),
    )
    async with migrated_engine(path) as engine:
        assert (await run_once(path)).errors == {}
        [alices] = [
            r["reference"]
            for r in await rows_of(engine, feedback_records)
            if r["sender_id"] == "alice@example.net"
        ]
        # Staff work her item: a view, a note naming her, and she writes again (reopened).
        viewer = Actor("maya", "http 127.0.0.1")
        await show_item(engine, alices, viewer=viewer)
        await resolve(engine, alices, "maya", note="called alice@example.net back")
        await imap.append(
            "INBOX",
            mail(
                "a2@example.net",
                alice,
                f"Re: {hacked}",
                "AliceTanUniqueBody again: still not fixed",
                extra="In-Reply-To: <a1@example.net>\r\nReferences: <a1@example.net>\r\n",
            ),
        )
        assert (await run_once(path)).errors == {}
        alerts = settings_from_document(
            {
                "config_version": 1,
                "alerts": {
                    "targets": [
                        {
                            "name": "pager",
                            "kind": "webhook",
                            "url": "http://127.0.0.1:9/hook",
                            "secret_env": "TEST_ALERT_SECRET",
                        }
                    ]
                },
            },
            path,
        ).alerts
        assert await queue_alerts(engine, alerts, now=datetime.now(UTC)) >= 1
        async with engine.begin() as conn:  # a message that failed to parse, naming her
            await conn.execute(
                insert(dead_letters).values(
                    source="support-mail",
                    external_id="a3@example.net",
                    raw_ref="INBOX;uidvalidity=1;uid=77",
                    error="MIME error in mail from alice@example.net",
                    size_bytes=100,
                    replayed=False,
                    created_at=datetime.now(UTC),
                )
            )
        assert _found(await _every_table(engine), ALICE) == set(ALICE)  # before: all there

        capsys.readouterr()
        code = await run_cli(
            ["erase", "--sender", "ALICE@example.net", "--batch-size", "1", "--config", str(path)]
        )
        out, err = capsys.readouterr()
        assert code == 0, err
        assert err.splitlines() == ["erased 1/2 records", "erased 2/2 records"]
        assert out.startswith("erased 2 records of ALICE@example.net: ")
        everything = await _every_table(engine)
        assert _found(everything, ALICE) == set()
        assert _found(everything, ("bob@example.net", "bobuniquebody")) == {
            "bob@example.net",
            "bobuniquebody",
        }
        erasures = [entry for entry in await list_entries(engine) if entry.action == "erase"]
    assert len(erasures) == 3  # one per batch, and the closing row
    assert sum(entry.detail.get("feedback_records", 0) for entry in erasures[:2]) == 2
    assert alices in erasures[0].detail["references"] + erasures[1].detail["references"]
    assert erasures[2].detail["dead_letters"] == 1
    assert erasures[0].detail["outbox"] == 1 and erasures[0].detail["alerts"] >= 1


async def _every_table(engine: AsyncEngine) -> dict[str, str]:
    """Each table's rows as one lower-case text."""
    dumps = {}
    async with engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = (await conn.execute(select(table))).all()
            dumps[table.name] = json.dumps(
                [list(row) for row in rows], default=str, ensure_ascii=False
            ).lower()
    return dumps


def _found(dumps: dict[str, str], needles: tuple[str, ...]) -> set[str]:
    return {needle for needle in needles if any(needle in dump for dump in dumps.values())}
