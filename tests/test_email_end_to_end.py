"""The e-mail path end to end: real IMAP (pymap) and SMTP (aiosmtpd) servers on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from inbox_daemon.cli import run_cli
from inbox_daemon.config import load_settings
from inbox_daemon.loopback.imap import LoopbackImapServer
from inbox_daemon.loopback.smtp import LoopbackSmtpServer
from inbox_daemon.scheduler import Daemon
from inbox_daemon.storage.schema import dead_letters, feedback_records, outbox, queue_items
from tests.conftest import CORPORA
from tests.daemon import migrated_engine, run_once
from tests.peers import CuttingProxy

pytestmark = pytest.mark.timeout(120)


def mail(
    message_id: str,
    *,
    sender: str = "Alice Tan <alice@example.net>",
    subject: str = "Withdrawal stuck",
    body: str = "My BTC withdrawal has been pending for two days.",
    extra: str = "",
) -> bytes:
    return (
        f"Message-ID: <{message_id}>\r\nDate: Mon, 23 Nov 2026 08:00:00 +0000\r\nFrom: {sender}\r\n"
        f"To: support@example.com\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n{extra}"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


@pytest.fixture
async def imap() -> AsyncIterator[LoopbackImapServer]:
    async with LoopbackImapServer() as server:
        async with server.client() as client:  # the support team's second folder
            await client.create("Escalations")
        yield server


@pytest.fixture
async def smtp() -> AsyncIterator[LoopbackSmtpServer]:
    async with LoopbackSmtpServer() as server:
        yield server


@pytest.fixture
def config_path(
    tmp_path: Path,
    database: str,
    imap: LoopbackImapServer,
    smtp: LoopbackSmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    monkeypatch.setenv("TEST_IMAP_PASSWORD", imap.password)
    path = tmp_path / "inbox.toml"
    path.write_text(
        f"""
config_version = 1
[storage]
url = "{database}"
[outbox]
retry_base_s = 0.001
retry_cap_s = 0.001
max_attempts = 3
[[sources]]
name = "support-mail"
kind = "imap"
host = "{imap.host}"
port = {imap.port}
security = "none"
username = "{imap.username}"
password_env = "TEST_IMAP_PASSWORD"
folders = ["INBOX", "Escalations"]
backfill_days = 36500
timeout_s = 10
batch_size = 25
max_message_bytes = 1048576
[sources.smtp]
host = "{smtp.host}"
port = {smtp.port}
security = "none"
from_address = "support@example.com"
timeout_s = 5
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
async def engine(config_path: Path) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(config_path) as engine:
        yield engine


async def rows(engine: AsyncEngine, table) -> int:
    async with engine.connect() as conn:
        return (await conn.scalar(select(func.count()).select_from(table))) or 0


async def test_mail_becomes_record_queue_item_and_threaded_acknowledgment(
    imap: LoopbackImapServer, smtp: LoopbackSmtpServer, config_path: Path, engine: AsyncEngine
) -> None:
    await imap.append(
        "INBOX",
        mail(
            "a1@example.net",
            extra="Reply-To: Alice <alice.tan@example.org>\r\nReferences: <root@example.net>\r\n",
        ),
    )
    await imap.append(
        "INBOX",
        mail(
            "ooo@example.net",
            sender="Bob Ray <bob@example.net>",
            subject="Out of office",
            body="I am away until Monday.",
            extra="Auto-Submitted: auto-replied\r\n",
        ),
    )
    await imap.append(
        "INBOX",
        mail(
            "list@example.org",
            sender="news@lists.example.org",
            body="This week in crypto: ten stories.",
            extra="List-Id: <news.lists.example.org>\r\nPrecedence: list\r\n",
        ),
    )
    report = await run_once(config_path)
    assert report.errors == {}
    assert report.polls["support-mail"].stored == 3
    assert report.delivery.sent == 1
    assert await rows(engine, queue_items) == 3
    [ack] = smtp.received
    assert ack.rcpt_tos == ("alice.tan@example.org",)
    assert ack.mail_from == "support@example.com"
    reply = message_from_bytes(ack.data, policy=policy.default)
    assert reply["In-Reply-To"] == "<a1@example.net>"
    assert reply["References"].split() == ["<root@example.net>", "<a1@example.net>"]
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["X-Auto-Response-Suppress"] == "All"
    assert reply["X-Loop"] == "inbox-daemon"
    assert reply["Message-ID"].endswith("@example.com>")
    async with engine.connect() as conn:
        records = {r.external_id: r for r in (await conn.execute(select(feedback_records))).all()}
    assert records["a1@example.net"].reference in reply["Subject"]
    assert records["a1@example.net"].reference in reply.get_content()
    assert records["a1@example.net"].thread_key == "root@example.net"
    assert records["ooo@example.net"].ack_code == "out-of-office"
    assert "list" in records["list@example.org"].ack_reason.lower()


async def test_second_run_stores_nothing_again_and_sends_nothing_twice(
    imap: LoopbackImapServer, smtp: LoopbackSmtpServer, config_path: Path, engine: AsyncEngine
) -> None:
    await imap.append("INBOX", mail("b1@example.net"))
    await run_once(config_path)
    again = await run_once(config_path)
    assert again.polls["support-mail"].fetched == 0
    await imap.append("INBOX", mail("b2@example.net", sender="bob@example.net"))
    third = await run_once(config_path)
    assert third.polls["support-mail"].stored == 1
    assert await rows(engine, feedback_records) == 2
    assert sorted(m.rcpt_tos[0] for m in smtp.received) == ["alice@example.net", "bob@example.net"]


async def test_one_mail_in_two_folders_is_one_record_and_one_acknowledgment(
    imap: LoopbackImapServer, smtp: LoopbackSmtpServer, config_path: Path, engine: AsyncEngine
) -> None:
    raw = mail("twice@example.net")
    await imap.append("INBOX", raw)
    await imap.append("Escalations", raw)
    report = await run_once(config_path)
    assert report.polls["support-mail"].fetched == 2
    assert await rows(engine, feedback_records) == 1
    assert len(smtp.received) == 1


async def test_refused_reply_stays_in_outbox_is_retried_and_shown_in_status(
    imap: LoopbackImapServer,
    smtp: LoopbackSmtpServer,
    config_path: Path,
    engine: AsyncEngine,
    capsys: pytest.CaptureFixture[str],
) -> None:
    smtp.refuse_next(1, code=451, text="greylisted, try again later")
    await imap.append("INBOX", mail("c1@example.net"))
    first = await run_once(config_path)
    assert (first.delivery.sent, first.delivery.retry) == (0, 1)
    assert await run_cli(["status", "--config", str(config_path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["outbox"] == {"retry": 1}
    assert "451" in status["outbox_errors"][0]["last_error"]
    second = await run_once(config_path)
    assert second.delivery.sent == 1
    assert len(smtp.received) == 1


async def test_permanently_refused_reply_is_kept_as_failed(
    imap: LoopbackImapServer, smtp: LoopbackSmtpServer, config_path: Path, engine: AsyncEngine
) -> None:
    smtp.refuse_next(1, code=550, text="no such user")
    await imap.append("INBOX", mail("d1@example.net"))
    report = await run_once(config_path)
    assert report.delivery.failed == 1
    async with engine.connect() as conn:
        state, error = (await conn.execute(select(outbox.c.state, outbox.c.last_error))).one()
    assert state == "failed"
    assert "550" in error


async def test_crash_between_fetch_and_commit_refetches_without_duplicates(
    imap: LoopbackImapServer, smtp: LoopbackSmtpServer, config_path: Path, engine: AsyncEngine
) -> None:
    for index in range(5):
        await imap.append("INBOX", mail(f"e{index}@example.net", sender=f"user{index}@example.net"))
    await _fail_cursor_writes(engine)
    crashed = await run_once(config_path)
    assert "simulated crash" in crashed.errors["support-mail"]
    assert await rows(engine, feedback_records) == 0
    assert smtp.received == []
    await _restore_cursor_writes(engine)
    recovered = await run_once(config_path)
    assert recovered.polls["support-mail"].stored == 5
    await run_once(config_path)
    assert await rows(engine, feedback_records) == 5
    assert sorted(m.rcpt_tos[0] for m in smtp.received) == [
        f"user{i}@example.net" for i in range(5)
    ]


async def _fail_cursor_writes(engine: AsyncEngine) -> None:
    # The last statement of the batch transaction fails, as a crash or a full disk would.
    async with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            await conn.execute(
                text(
                    "CREATE TRIGGER crash BEFORE INSERT ON cursors "
                    "BEGIN SELECT RAISE(ABORT, 'simulated crash'); END"
                )
            )
            return
        await conn.execute(
            text(
                "CREATE FUNCTION crash() RETURNS trigger AS "
                "$$ BEGIN RAISE EXCEPTION 'simulated crash'; END $$ LANGUAGE plpgsql"
            )
        )
        await conn.execute(
            text(
                "CREATE TRIGGER crash BEFORE INSERT ON cursors "
                "FOR EACH ROW EXECUTE FUNCTION crash()"
            )
        )


async def _restore_cursor_writes(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "DROP TRIGGER crash"
                if conn.dialect.name == "sqlite"
                else "DROP TRIGGER crash ON cursors"
            )
        )


async def test_every_corpus_mail_is_stored_or_dead_lettered(
    imap: LoopbackImapServer, config_path: Path, engine: AsyncEngine
) -> None:
    raws = [
        path.read_bytes() for path in sorted((CORPORA / "email-imap_tools" / "raw").rglob("*.eml"))
    ]
    assert len(raws) == 113
    await imap.append_many("INBOX", raws)
    report = await run_once(config_path)
    assert report.errors == {}
    poll = report.polls["support-mail"]
    assert poll.fetched == 113
    assert poll.stored + poll.absorbed + poll.dead_letters == 113
    assert (
        await rows(engine, feedback_records) + await rows(engine, dead_letters)
        == poll.stored + poll.dead_letters
    )


async def test_oversized_mail_is_stored_truncated_with_a_note(
    imap: LoopbackImapServer, config_path: Path, engine: AsyncEngine
) -> None:
    body = ("Please help, my deposit is missing.\r\n" + "x" * 76 + "\r\n") * 400_000
    await imap.append("INBOX", mail("huge@example.net", body=body))
    report = await run_once(config_path)
    assert report.polls["support-mail"].stored == 1
    async with engine.connect() as conn:
        notes, text_ = (
            await conn.execute(select(feedback_records.c.notes, feedback_records.c.text))
        ).one()
    assert any("truncated" in note for note in notes)
    assert text_.startswith("Please help, my deposit is missing.")


async def test_run_once_and_queue_list_from_the_command_line(
    imap: LoopbackImapServer,
    smtp: LoopbackSmtpServer,
    config_path: Path,
    engine: AsyncEngine,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await imap.append(
        "INBOX",
        mail(
            "f1@example.net",
            subject="=?utf-8?B?5o+Q5biB5rKh5Yiw6LSm?=",
            body="我的提币三天了还没到账，请帮忙处理",
        ),
    )
    assert await run_cli(["run", "--once", "--config", str(config_path)]) == 0
    capsys.readouterr()
    assert await run_cli(["queue", "list", "--json", "--config", str(config_path)]) == 0
    [item] = json.loads(capsys.readouterr().out)
    expected = {
        "reference",
        "channel",
        "source",
        "external_id",
        "sender",
        "subject",
        "text",
        "language",
        "category",
        "priority",
        "team",
        "status",
        "received_at",
        "duplicate_of",
        "incident_id",
    }
    assert expected <= set(item)
    assert (item["channel"], item["source"], item["subject"]) == (
        "email",
        "support-mail",
        "提币没到账",
    )
    assert item["language"] == "zh-cn"
    assert item["status"] == "new"


async def test_database_failure_is_reported_without_customer_text(
    imap: LoopbackImapServer, config_path: Path, engine: AsyncEngine
) -> None:
    await imap.append("INBOX", mail("g1@example.net", body="my secret phrase is in here somewhere"))
    await _fail_cursor_writes(engine)
    report = await run_once(config_path)
    error = report.errors["support-mail"]
    assert error.startswith("database error:")
    assert "simulated crash" in error
    assert "secret phrase" not in error
    assert "INSERT" not in error


async def test_poison_mail_is_dead_lettered_and_its_folder_moves_on(
    imap: LoopbackImapServer, config_path: Path, engine: AsyncEngine
) -> None:
    await imap.append("INBOX", mail("ok1@example.net", sender="one@example.net"))
    await imap.append("INBOX", mail("poison@example.net", body="POISON-MARKER breaks every read"))
    await imap.append("INBOX", mail("ok2@example.net", sender="two@example.net"))
    # Every connection through the proxy drops as soon as the poison mail's body passes.
    async with CuttingProxy(imap.host, imap.port, cut_after_marker=b"POISON-MARKER") as proxy:
        text_ = config_path.read_text(encoding="utf-8")
        text_ = text_.replace(f"port = {imap.port}", f"port = {proxy.port}")
        config_path.write_text(
            text_.replace("batch_size = 25", "batch_size = 25\nmax_attempts = 2")
        )
        async with AsyncExitStack() as stack:
            daemon = await Daemon.open(load_settings(config_path), stack)
            for _ in range(8):
                await daemon.run_once()
                if await rows(engine, dead_letters) and await rows(engine, feedback_records) == 2:
                    break
    async with engine.connect() as conn:
        stored_rows = (
            await conn.execute(select(feedback_records.c.external_id, feedback_records.c.raw_ref))
        ).all()
        stored = sorted(external_id for external_id, _ in stored_rows)
        [(raw_ref, error)] = (
            await conn.execute(select(dead_letters.c.raw_ref, dead_letters.c.error))
        ).all()
    assert stored == ["ok1@example.net", "ok2@example.net"]
    uids = sorted(int(ref.rpartition("uid=")[2]) for _, ref in stored_rows)
    assert raw_ref.startswith("INBOX;")
    assert uids[0] < int(raw_ref.rpartition("uid=")[2]) < uids[1]
    assert "fetch failed 3 times" in error


async def test_refused_login_fails_one_source_only_and_shows_in_status(
    imap: LoopbackImapServer,
    config_path: Path,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("WRONG_PASSWORD", "not-the-password")
    text_ = config_path.read_text(encoding="utf-8")
    broken = text_[text_.index("[[sources]]") : text_.index("[sources.smtp]")]
    broken = broken.replace('name = "support-mail"', 'name = "sales-mail"')
    broken = broken.replace("TEST_IMAP_PASSWORD", "WRONG_PASSWORD")
    config_path.write_text(text_ + "\n" + broken, encoding="utf-8")
    await imap.append("INBOX", mail("h1@example.net"))
    report = await run_once(config_path)
    assert report.polls["support-mail"].stored == 1
    assert "PermanentError" in report.errors["sales-mail"]
    assert "not-the-password" not in report.errors["sales-mail"]
    assert await run_cli(["status", "--config", str(config_path)]) == 0
    status = capsys.readouterr().out
    assert "sales-mail (imap): backoff" in status
    assert "support-mail (imap): ok" in status
