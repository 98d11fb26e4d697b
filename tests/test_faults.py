"""Faults injected against real servers on loopback: no record lost, none stored twice, no
acknowledgment sent twice.

Each test runs the real daemon (``inbox-daemon run`` in a child process, or
:class:`~inbox_daemon.scheduler.Daemon` in this one where the test reaches into its database
connection) over real peers: pymap for IMAP, aiosmtpd for SMTP, SQLite or PostgreSQL for
storage. The peers fail the way production ones do: a process killed in the middle of an
answer, a database restarted in the middle of a batch, a disk that fills up, a burst of mail,
a server that stops answering. Afterwards every mail must be exactly one record, and every
acknowledgment the reply policy allows must have reached the relay once; DESIGN.md
("Decisions that guard correctness") says when one e-mail may arrive twice: when the outcome
of its delivery was unknown, it is sent again with the same Message-ID.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from inbox_daemon.config import load_settings
from inbox_daemon.ingest import PollReport
from inbox_daemon.loopback.imap import LoopbackImapServer
from inbox_daemon.loopback.smtp import LoopbackSmtpServer
from inbox_daemon.scheduler import Daemon
from inbox_daemon.storage.engine import describe_database
from inbox_daemon.storage.schema import (
    cursors,
    dead_letters,
    feedback_records,
    incidents,
    outbox,
    queue_items,
    reply_log,
)
from tests.daemon import migrated_engine
from tests.faults import (
    PASSWORD,
    PASSWORD_ENV,
    PageLimit,
    PrivatePostgres,
    RelayProcess,
    RestartableImapServer,
    SmallDisk,
    SourceSpec,
    StallingProxy,
    assert_every_allowed_acknowledgment_delivered_once,
    assert_every_mail_is_one_record,
    corpus_mails,
    failure_of,
    lock_waiter,
    memory_kib,
    plain_mail,
    postgres_bindir,
    record_count,
    reply_message_id,
    running_daemon,
    settled,
    source_error,
    until,
    write_config,
)

pytestmark = pytest.mark.timeout(120)

SOURCE = "support-mail"


@pytest.fixture(autouse=True)
def imap_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)


# --- IMAP: the server is killed in the middle of a FETCH, and restarted ------------------------

KILL_MARKER = b"KILL-THE-SERVER-HERE"
IMAP_BATCH = 10
#: Where the mail carrying the marker lies: in the middle of the fifth batch.
KILLED_AT = 4 * IMAP_BATCH + 5


async def test_imap_server_killed_mid_fetch_and_restarted_loses_and_repeats_nothing(
    tmp_path: Path, database: str
) -> None:
    corpus = corpus_mails(130)
    marked = plain_mail(9001, body=f"Deposit missing. {KILL_MARKER.decode()} Thanks.")
    # Two mails without a Message-ID: their key is a hash of their bytes, which must not
    # change when the server serves them again.
    unnamed = [plain_mail(9002, message_id=False), plain_mail(9003, message_id=False)]
    mailbox = [*corpus[:KILLED_AT], marked, *unnamed, *corpus[KILLED_AT:120]]
    arriving = corpus[120:]
    async with AsyncExitStack() as stack:
        imap = await stack.enter_async_context(RestartableImapServer())
        smtp = await stack.enter_async_context(LoopbackSmtpServer())
        # Only times the kill: pymap dies once the marker has passed, its answer half sent.
        proxy = await stack.enter_async_context(
            StallingProxy(imap.host, imap.port, marker=KILL_MARKER, stalls=1)
        )
        await imap.append_many("INBOX", mailbox)
        uids, old_uidvalidity = await imap.uids(), await imap.uidvalidity()
        config = write_config(
            tmp_path / "inbox.toml",
            database=database,
            sources_=[SourceSpec(SOURCE, proxy.port, batch_size=IMAP_BATCH)],
            relay_port=smtp.port,
        )
        engine = await stack.enter_async_context(migrated_engine(config))
        async with running_daemon(config) as daemon:
            await until(lambda: proxy.stalled == 1)
            await imap.kill()
            failure = await daemon.wait_for(failure_of(SOURCE), timeout_s=30)
            assert "connection closed during UID FETCH" in failure["error"]
            # Four batches are stored; the fifth never was, and the cursor stayed before it.
            assert await record_count(engine) == 4 * IMAP_BATCH
            assert await inbox_cursor(engine) == {
                "uidvalidity": old_uidvalidity,
                "last_uid": uids[4 * IMAP_BATCH - 1],
            }
            # On the same port, and empty: the mail is put back, numbered afresh (in another
            # order here), which is why a server says so with a new UIDVALIDITY.
            await imap.restart()
            await imap.append_many("INBOX", mailbox[::-1])
            await imap.append_many("INBOX", arriving)  # and new mail arrives
            await until(lambda: settled(engine, len(mailbox) + len(arriving)), timeout_s=60)
            new_uidvalidity = await imap.uidvalidity()

        # pymap held its mailbox in memory: UIDVALIDITY changed, so the folder was read again
        # from the start and the Message-ID (or the hash) absorbed what was already stored.
        assert new_uidvalidity != old_uidvalidity
        assert any("changed UIDVALIDITY" in line["message"] for line in daemon.lines)
        assert (await inbox_cursor(engine))["uidvalidity"] == new_uidvalidity
        await assert_every_mail_is_one_record(engine, mailbox + arriving)
        await assert_every_allowed_acknowledgment_delivered_once(engine, smtp.received)


async def inbox_cursor(engine: AsyncEngine) -> dict[str, int]:
    """The INBOX position in the one source's cursor."""
    async with engine.connect() as conn:
        value = await conn.scalar(select(cursors.c.value))
    assert value is not None
    folder: dict[str, int] = value["folders"]["INBOX"]
    return folder


# --- SMTP: the relay is killed with a reply accepted but not answered ------------------------

#: The relay takes this reply in, writes it to its spool and is killed before it answers.
HELD_REPLY = 5


async def test_relay_killed_mid_delivery_and_restarted_loses_no_reply_and_resends_one_once(
    tmp_path: Path, database: str
) -> None:
    mails = [plain_mail(number) for number in range(12)]
    relay = RelayProcess(tmp_path)
    async with AsyncExitStack() as stack:
        imap = await stack.enter_async_context(LoopbackImapServer())
        await imap.append_many("INBOX", mails)
        await relay.start(hold_after=HELD_REPLY)
        stack.push_async_callback(relay.stop)
        config = write_config(
            tmp_path / "inbox.toml",
            database=database,
            sources_=[SourceSpec(SOURCE, imap.port)],
            relay_port=relay.port,
        )
        engine = await stack.enter_async_context(migrated_engine(config))
        async with running_daemon(config):
            await until(lambda: len(relay.received()) == HELD_REPLY)
            held = relay.received()[-1]
            await relay.kill()
            # The daemon cannot know whether the relay took that reply: it keeps it to retry,
            # with the others it cannot deliver while the relay is down.
            await until(lambda: reply_state(engine, held.rcpt_tos[0], "retry"))
            await relay.start()  # on the same port
            await until(lambda: settled(engine, len(mails)), timeout_s=60)

        repeated = await assert_every_allowed_acknowledgment_delivered_once(
            engine, relay.received(), resends=True
        )
        # Only the reply whose outcome was unknown arrived twice, with one Message-ID.
        assert repeated == {reply_message_id(held): 2}


async def reply_state(engine: AsyncEngine, recipient: str, state: str) -> bool:
    """Whether the outbox row of the reply to ``recipient`` is in ``state``."""
    async with engine.connect() as conn:
        found = await conn.scalar(select(outbox.c.state).where(outbox.c.recipient == recipient))
    return found == state


# --- PostgreSQL: the server restarts while a batch is being written ----------------------------

PG_BATCH = 10


@pytest.fixture
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL's initdb and pg_ctl are missing (/usr/lib/postgresql/*/bin)")
    async with PrivatePostgres(bindir) as server:
        yield server


async def test_postgres_restarted_mid_batch_the_next_poll_stores_everything_once(
    tmp_path: Path, private_postgres: PrivatePostgres
) -> None:
    first = [plain_mail(number) for number in range(PG_BATCH)]
    later = [plain_mail(number) for number in range(PG_BATCH, 4 * PG_BATCH)]
    async with AsyncExitStack() as stack:
        imap = await stack.enter_async_context(LoopbackImapServer())
        smtp = await stack.enter_async_context(LoopbackSmtpServer())
        await imap.append_many("INBOX", first)
        config = write_config(
            tmp_path / "inbox.toml",
            database=private_postgres.url,
            sources_=[SourceSpec(SOURCE, imap.port, batch_size=PG_BATCH)],
            relay_port=smtp.port,
        )
        engine = await stack.enter_async_context(migrated_engine(config))
        async with running_daemon(config) as daemon:
            await until(lambda: settled(engine, len(first)))
            async with engine.connect() as blocker:
                # Hold the cursor row: the next batch writes its records, queue items and
                # replies, then waits to move the cursor with its transaction open.
                await blocker.execute(select(cursors.c.version).with_for_update())
                await imap.append_many("INBOX", later)
                await until(lambda: waiting_to_move_the_cursor(engine))
                restarted = len(daemon.lines)
                await private_postgres.restart_immediately()
                await blocker.invalidate()
            await until(lambda: settled(engine, len(first) + len(later)), timeout_s=60)

        after = daemon.lines[restarted:]
        failures = [line["error"] for line in after if failure_of(SOURCE)(line)]
        print(f"polls failed while PostgreSQL restarted: {failures}")
        # The batch in hand failed, and the daemon said so (in words, no traceback), even
        # though the server that failed it could not record the source's state either.
        assert failures, "the batch in hand must have failed"
        where = f"PostgreSQL database postgres on 127.0.0.1:{private_postgres.port}"
        assert where in failures[0]
        # No job (a poll, the outbox's or the alerts' pass) died with a traceback either.
        assert not [line for line in after if "raised an exception" in line["message"]]
        # Once a poll got through, none failed again (no dead pooled connection came back),
        # and the source shows healthy without anyone restarting anything.
        recovered = next(index for index, line in enumerate(after) if stored_some(line))
        assert not [line for line in after[recovered:] if failure_of(SOURCE)(line)]
        assert await source_error(engine, SOURCE) == ("ok", None)
        await assert_every_mail_is_one_record(engine, first + later)
        # A reply whose delivery ended as the server went down stays "sending" until its
        # claim lapses, then goes again with the same Message-ID: the allowed repeat.
        await assert_every_allowed_acknowledgment_delivered_once(
            engine, smtp.received, resends=True
        )


def stored_some(line: dict[str, Any]) -> bool:
    """Whether a log line reports a batch that stored records."""
    return bool(line["message"] == "batch stored" and line["stored"] > 0)


async def waiting_to_move_the_cursor(engine: AsyncEngine) -> bool:
    waiting = await lock_waiter(engine)
    return waiting is not None and waiting.lstrip().upper().startswith("UPDATE CURSORS")


# --- SQLite: the disk fills up mid-batch --------------------------------------------------------

DISK_BYTES = 8 << 20


async def stored_state(engine: AsyncEngine) -> dict[str, Any]:
    """Every row count a batch writes to, and the cursor."""
    counted = (feedback_records, queue_items, outbox, reply_log, dead_letters, incidents)
    async with engine.connect() as conn:
        state: dict[str, Any] = {
            table.name: await conn.scalar(select(func.count()).select_from(table))
            for table in counted
        }
        state["cursor"] = (await conn.execute(select(cursors.c.value, cursors.c.version))).all()
    return state


@pytest.mark.parametrize("limit", ["tmpfs", "max_page_count"])
async def test_a_full_disk_rolls_the_batch_back_and_it_is_stored_once_there_is_room(
    limit: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with AsyncExitStack() as stack:
        folder = tmp_path
        disk: SmallDisk | None = None
        if limit == "tmpfs":
            try:
                disk = await SmallDisk.mount(DISK_BYTES)
            except OSError as exc:
                pytest.skip(f"a real ENOSPC needs a tmpfs: {exc}")
            stack.push_async_callback(disk.unmount)
            folder = disk.folder
        imap = await stack.enter_async_context(LoopbackImapServer())
        smtp = await stack.enter_async_context(LoopbackSmtpServer())
        database = folder / "inbox.db"
        config = write_config(
            tmp_path / "inbox.toml",
            database=f"sqlite:///{database}",
            sources_=[SourceSpec(SOURCE, imap.port, batch_size=100)],
            relay_port=smtp.port,
        )
        first = [plain_mail(number) for number in range(10)]
        later = [plain_mail(number) for number in range(10, 160)]  # far more than the room left
        await imap.append_many("INBOX", first)
        engine = await stack.enter_async_context(migrated_engine(config))
        daemon = await Daemon.open(load_settings(config), stack)
        assert isinstance(await daemon.poll_source(SOURCE), PollReport)
        full = disk or PageLimit(daemon.engine)

        await imap.append_many("INBOX", later)
        before = await stored_state(engine)
        full.fill()
        caplog.clear()
        with caplog.at_level(logging.INFO):
            failed = await daemon.poll_source(SOURCE)
        # One clear error that names the database and the cause, and nothing else to alarm.
        assert isinstance(failed, str), failed
        assert str(database) in failed
        assert "database or disk is full" in failed
        [logged] = [record for record in caplog.records if record.levelno >= logging.WARNING]
        assert logged.levelno == logging.ERROR
        assert str(database) in logged.getMessage()
        assert "database or disk is full" in logged.getMessage()
        # The batch rolled back whole: no record, queue item, reply or cursor move of it.
        assert await stored_state(engine) == before
        assert await source_error(engine, SOURCE) == ("backoff", failed)

        full.make_room()
        report = await daemon.poll_source(SOURCE)
        assert isinstance(report, PollReport), report
        assert report.stored == len(later)
        delivery = await daemon.outbox.deliver_due()
        assert delivery.sent == len(first) + len(later)
        await assert_every_mail_is_one_record(engine, first + later)
        await assert_every_allowed_acknowledgment_delivered_once(engine, smtp.received)


async def test_a_failing_outbox_pass_is_logged_in_a_line_and_the_next_pass_tries_again(
    tmp_path: Path,
) -> None:
    async with AsyncExitStack() as stack:
        imap = await stack.enter_async_context(LoopbackImapServer())
        smtp = await stack.enter_async_context(LoopbackSmtpServer())
        config = write_config(
            tmp_path / "inbox.toml",
            database=f"sqlite:///{tmp_path / 'inbox.db'}",
            sources_=[SourceSpec(SOURCE, imap.port)],
            relay_port=smtp.port,
        )
        engine = await stack.enter_async_context(migrated_engine(config))
        async with running_daemon(config) as daemon:
            async with engine.begin() as conn:  # every outbox pass now fails at its first read
                await conn.execute(text("ALTER TABLE outbox RENAME TO outbox_away"))
            failed = daemon.wait_for(lambda line: line.get("stage") == "outbox", timeout_s=20)
            line = await failed
            await daemon.wait_for(
                lambda later: later.get("stage") == "outbox",
                timeout_s=20,
                after=daemon.lines.index(line) + 1,
            )
    assert line["level"] == "ERROR" and "exception" not in line
    assert line["message"].startswith("outbox pass failed, the next one will try again")
    assert "no such table: outbox" in line["message"]
    assert not [line for line in daemon.lines if "raised an exception" in line["message"]]


def test_a_database_is_named_in_errors_by_its_place_never_its_password() -> None:
    server = make_url("postgresql+asyncpg://inbox:s3cret@db.internal:6432/inbox")
    assert describe_database(server) == "PostgreSQL database inbox on db.internal:6432"
    file = make_url("sqlite+aiosqlite:////var/lib/inbox/inbox.db")
    assert describe_database(file) == "SQLite database /var/lib/inbox/inbox.db"


# --- a burst of 10,000 mails at once on one source --------------------------------------------

BURST = 10_000
BURST_BATCH = 100


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_a_burst_of_ten_thousand_mails_is_stored_once_in_bounded_memory(
    tmp_path: Path,
) -> None:
    mails = corpus_mails(BURST)
    async with AsyncExitStack() as stack:
        imap = await stack.enter_async_context(LoopbackImapServer())
        smtp = await stack.enter_async_context(LoopbackSmtpServer())
        await imap.append_many("INBOX", mails)
        config = write_config(
            tmp_path / "inbox.toml",
            database=f"sqlite:///{tmp_path / 'inbox.db'}",
            sources_=[SourceSpec(SOURCE, imap.port, batch_size=BURST_BATCH, timeout_s=30)],
            relay_port=smtp.port,
        )
        engine = await stack.enter_async_context(migrated_engine(config))
        samples: list[tuple[int, int]] = []  # (records stored, the daemon's memory in KiB)
        async with running_daemon(config) as daemon:

            async def done() -> bool:
                samples.append((await record_count(engine), memory_kib(daemon.pid)[0]))
                return await settled(engine, BURST)

            await until(done, timeout_s=540, every_s=1)
            peak_kib = memory_kib(daemon.pid)[1]
        print(f"load average {os.getloadavg()}; peak {peak_kib >> 10} MiB; (records, MiB):")
        print([(records, kib >> 10) for records, kib in samples[:: max(len(samples) // 30, 1)]])
        stored = [line["stored"] for line in daemon.lines if line["message"] == "batch stored"]
        assert max(stored) <= BURST_BATCH
        # Memory follows the batch, not the burst. Once a tenth is stored (language profiles,
        # caches and the parsing worker loaded), the peak grows by the deduplication index,
        # which keeps each recent record's text by design, and by the allocator's slack
        # (together about the size of the mailbox, and at most twice that, here). The burst
        # held at once would add the mails, aioimaplib's copies of them, their parsed forms
        # and records: several times the mailbox, on top.
        warm_kib = next(kib for records, kib in samples if records >= BURST // 10)
        mailbox_kib = sum(map(len, mails)) >> 10
        print(f"grew {(peak_kib - warm_kib) >> 10} MiB; the mailbox is {mailbox_kib >> 10} MiB")
        assert peak_kib - warm_kib < 4 * mailbox_kib
        await assert_every_mail_is_one_record(engine, mails)
        await assert_every_allowed_acknowledgment_delivered_once(engine, smtp.received)


# --- a source that hangs ------------------------------------------------------------------------

HANG_TIMEOUT_S = 5.0
HANG_MARKER = b"THE-SERVER-FREEZES-HERE"


@pytest.mark.parametrize(
    ("marker", "unanswered"),
    [
        # aioimaplib asks for CAPABILITY after the greeting, as part of "connect".
        pytest.param(b"\r\n", "connect", id="after-the-greeting"),
        pytest.param(HANG_MARKER, "UID FETCH", id="in-a-fetch-response"),
    ],
)
async def test_a_hung_server_times_out_the_others_poll_on_and_it_is_read_once_it_answers(
    marker: bytes, unanswered: str, tmp_path: Path, database: str
) -> None:
    hung = [plain_mail(number) for number in range(10)]
    hung[4] = plain_mail(4, body=f"Withdrawal stuck. {HANG_MARKER.decode()} Please help.")
    live = [plain_mail(number) for number in range(100, 106)]
    async with AsyncExitStack() as stack:
        imap = await stack.enter_async_context(LoopbackImapServer())
        smtp = await stack.enter_async_context(LoopbackSmtpServer())
        await imap.append_many("Hung", hung)
        await imap.append_many("INBOX", live[:3])
        # The server answers, but nothing gets past the marker: a hang of any length.
        proxy = await stack.enter_async_context(StallingProxy(imap.host, imap.port, marker=marker))
        config = write_config(
            tmp_path / "inbox.toml",
            database=database,
            sources_=[
                SourceSpec("hung-mail", proxy.port, folders=("Hung",), timeout_s=HANG_TIMEOUT_S),
                SourceSpec("live-mail", imap.port),
            ],
            relay_port=smtp.port,
        )
        engine = await stack.enter_async_context(migrated_engine(config))
        async with running_daemon(config) as daemon:
            await until(lambda: proxy.stalled >= 1)
            await imap.append_many("INBOX", live[3:])
            await until(lambda: records_of(engine, "live-mail", len(live)))
            # The other source stored mail that arrived while this one's poll hung.
            assert await source_error(engine, "hung-mail") == ("idle", None)
            failure = await daemon.wait_for(failure_of("hung-mail"), timeout_s=4 * HANG_TIMEOUT_S)
            await until(lambda: backed_off(engine, "hung-mail"))  # shown so by ``status``
            _, error = await source_error(engine, "hung-mail")
            proxy.answer_again()
            await until(lambda: settled(engine, len(hung) + len(live)), timeout_s=60)

        expected = f"no answer to {unanswered} within {HANG_TIMEOUT_S}s"
        assert expected in failure["error"]
        assert error is not None and expected in error
        await assert_every_mail_is_one_record(engine, hung + live)
        await assert_every_allowed_acknowledgment_delivered_once(engine, smtp.received)


async def records_of(engine: AsyncEngine, source: str, count: int) -> bool:
    """Whether ``source`` has ``count`` records stored."""
    async with engine.connect() as conn:
        stored = await conn.scalar(select(func.count()).where(feedback_records.c.source == source))
    return stored == count


async def backed_off(engine: AsyncEngine, source: str) -> bool:
    """Whether ``source`` is in backoff after a failure."""
    state, _ = await source_error(engine, source)
    return state == "backoff"
