"""Several `inbox-daemon run` replicas on one database share the work safely.

The main test runs three replicas as real subprocesses on one PostgreSQL database, with the
same configuration: one pymap mailbox holding 2,000 distinct corpus mails (more arrive during
the run) and an aiosmtpd relay. The replica holding the source's lease is killed with SIGKILL
while it works through the mailbox. What must hold (DESIGN.md, "Running more than one
replica" and "Decisions that guard correctness"):

- every mail is exactly one feedback record: none lost, none stored twice;
- another replica takes the source over within ``lease_ttl_s`` and one poll interval;
- every acknowledgment is delivered once. An e-mail the killed replica was sending may go out
  again with the same Message-ID (``RESENDABLE_CHANNELS``), so deliveries are counted by
  distinct Message-ID, and a repeat must belong to an outbox row claimed again after the kill;
- per-sender limits hold across replicas.

The shorter tests pin what the main one found: a lease renewed while a slow poll runs, outbox
claims that lapse when their replica dies (and are renewed while it lives), and a per-sender
limit that two batches committing at once cannot both pass.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks.ingest_imap import corpus_templates, distinct_mails
from inbox_daemon.config import load_settings
from inbox_daemon.ingest import PollReport, utcnow
from inbox_daemon.interfaces import Identity
from inbox_daemon.loopback.imap import LoopbackImapServer
from inbox_daemon.loopback.smtp import LoopbackSmtpServer, ReceivedMail
from inbox_daemon.outbox import RESENDABLE_CHANNELS
from inbox_daemon.scheduler import Daemon
from inbox_daemon.storage.batch import BatchPlan, SenderLimits, commit_batch
from inbox_daemon.storage.repository import (
    ClaimedReply,
    acquire_lease,
    claim_due_replies,
    recover_interrupted_sends,
    renew_reply_claims,
)
from inbox_daemon.storage.schema import cursors, dead_letters, feedback_records, leases, outbox
from inbox_email.mime import normalise_message_id
from tests.conftest import PG_URL
from tests.factories import NOW, message, record
from tests.faults import record_count, settled, until
from tests.peers import SlowProxy

pytestmark = pytest.mark.timeout(60)

postgres_only = pytest.mark.skipif(
    not PG_URL,
    reason="replicas coordinate through PostgreSQL: set INBOX_TEST_PG_URL to run this test",
)

SOURCE = "support-mail"
PER_SENDER_PER_HOUR = 3
PASSWORD_ENV = "REPLICA_IMAP_PASSWORD"


def write_config(
    path: Path,
    *,
    database: str,
    imap: tuple[str, int],
    smtp: tuple[str, int],
    lease_ttl_s: float,
    extra: str = "",
    source_extra: str = "",
) -> Path:
    """One IMAP source with its SMTP relay, in the shape every replica of a test shares."""
    path.write_text(
        f"""
config_version = 1
[storage]
url = "{database}"
[replies]
max_ack_age_s = 315360000
per_sender_per_hour = {PER_SENDER_PER_HOUR}
[service]
lease_ttl_s = {lease_ttl_s}
shutdown_grace_s = 5
{extra}
[[sources]]
name = "{SOURCE}"
kind = "imap"
host = "{imap[0]}"
port = {imap[1]}
security = "none"
username = "demouser"
password_env = "{PASSWORD_ENV}"
timeout_s = 10
{source_extra}
[sources.smtp]
host = "{smtp[0]}"
port = {smtp[1]}
security = "none"
from_address = "support@example.com"
timeout_s = 10
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def imap_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "demopass")


def simple_mail(number: int, sender: str, subject: str, text: str) -> bytes:
    date = email.utils.format_datetime(datetime.now(UTC))
    return (
        f"Message-ID: <replica-{number}@example.org>\r\nDate: {date}\r\n"
        f"From: {sender}\r\nTo: support@example.com\r\n"
        f"Subject: {subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
    ).encode()


def message_id(mail: ReceivedMail) -> str | None:
    return normalise_message_id(message_from_bytes(mail.data)["Message-ID"])


# --- a lease renewed while its source is polled ----------------------------------------------


@pytest.mark.usefixtures("imap_password")
async def test_a_poll_slower_than_the_lease_ttl_keeps_its_lease_and_commits(
    tmp_path: Path, database: str, engine: AsyncEngine
) -> None:
    lease_ttl_s = 1.0
    async with LoopbackImapServer() as imap, LoopbackSmtpServer() as smtp:
        for number in range(3):
            await imap.append("INBOX", simple_mail(number, "ana@example.net", "Login", "No 2FA"))
        # Each answer of the server takes 0.4 s: one poll (greeting, LOGIN, SELECT, SEARCH,
        # two FETCHes, LOGOUT) takes several times the lease's 1 s.
        async with SlowProxy(imap.host, imap.port, delay_s=0.4) as slow, AsyncExitStack() as stack:
            path = write_config(
                tmp_path / "inbox.toml",
                database=database,
                imap=(slow.host, slow.port),
                smtp=(smtp.host, smtp.port),
                lease_ttl_s=lease_ttl_s,
            )
            daemon = await Daemon.open(load_settings(path), stack)
            poll = asyncio.create_task(daemon.poll_source(SOURCE))
            await until(lambda: lease_held(engine))
            taken_by_another = []
            while not poll.done():  # another replica tries to take the source meanwhile
                now = utcnow()
                taken_by_another.append(
                    await acquire_lease(engine, SOURCE, "replica-b", ttl_s=lease_ttl_s, now=now)
                )
                await asyncio.sleep(0.05)
            report = await poll
    assert isinstance(report, PollReport), report
    assert report.stored == 3
    assert len(taken_by_another) > 20  # the poll outlived the lease several times over
    assert not any(taken_by_another)


async def lease_held(engine: AsyncEngine) -> bool:
    return await lease_owner(engine) is not None


# --- outbox claims: lapsed when their replica died, renewed while it lives -------------------


def plan(source: str, records: Sequence[Any], *, version: int | None = None) -> BatchPlan:
    return BatchPlan(
        source=source,
        owner="replica-a",
        records=records,
        failures=(),
        cursor_version=version,
        next_cursor={"folders": {"INBOX": {"uidvalidity": 1, "last_uid": len(records)}}},
        sla_s={"P1": 900, "P2": 14400, "P3": 86400, "P4": 259200},
        limits=SenderLimits(per_hour=PER_SENDER_PER_HOUR, per_day=10),
    )


def from_sender(number: int, address: str, *, source: str = SOURCE) -> Any:
    """A record of its own thread from ``address``, to be acknowledged."""
    sender = Identity("email", address, address, "")
    mail = message(f"r{number}.{address}", sender=sender, thread_key=f"t{number}")
    return record(mail, source=source)


async def queue_acknowledgments(engine: AsyncEngine, count: int, *, now: datetime) -> None:
    """Store ``count`` records from distinct senders, each with an acknowledgment to send."""
    assert await acquire_lease(engine, SOURCE, "replica-a", ttl_s=60, now=now)
    records = [from_sender(number, f"c{number}@example.net") for number in range(count)]
    await commit_batch(engine, plan(SOURCE, records), now=now)


async def claim(engine: AsyncEngine, now: datetime) -> list[ClaimedReply]:
    return await claim_due_replies(
        engine, now=now, limit=10, sources_served=[SOURCE], claim_ttl_s=60
    )


async def test_a_live_replicas_claim_is_left_alone_and_a_dead_ones_is_taken_back(
    engine: AsyncEngine,
) -> None:
    await queue_acknowledgments(engine, 1, now=NOW)
    [first] = await claim(engine, NOW)
    # Another replica starts, and passes over the outbox, while the first one sends.
    later = NOW + timedelta(seconds=30)
    assert await recover_interrupted_sends(engine, resend_channels=["email"], now=later) == 0
    assert await claim(engine, later) == []
    # The first replica renews its claim as it works through its batch; then it dies.
    kept = await renew_reply_claims(engine, [first], until=NOW + timedelta(seconds=90))
    assert kept == {first.reply.idempotency_key}
    assert await recover_interrupted_sends(engine, resend_channels=["email"], now=later) == 0
    # Once the claim has lapsed, the e-mail is sent again (same row, same Message-ID) ...
    lapsed = NOW + timedelta(seconds=91)
    assert await recover_interrupted_sends(engine, resend_channels=["email"], now=lapsed) == 1
    [again] = await claim(engine, lapsed)
    assert (again.reply.idempotency_key, again.attempt) == (first.reply.idempotency_key, 2)
    # ... and the first claim, were its replica only slow, is no longer its own to send.
    assert await renew_reply_claims(engine, [first], until=lapsed + timedelta(seconds=60)) == set()
    assert await renew_reply_claims(engine, [again], until=lapsed + timedelta(seconds=60)) == {
        again.reply.idempotency_key
    }


@pytest.mark.usefixtures("imap_password")
async def test_a_slow_senders_claims_are_renewed_and_each_reply_goes_once(
    tmp_path: Path, database: str, engine: AsyncEngine
) -> None:
    replies = 6
    await queue_acknowledgments(engine, replies, now=utcnow())
    async with LoopbackSmtpServer() as smtp, AsyncExitStack() as stack:
        # Replica A's relay answers every command 0.1 s late: each reply takes about 0.7 s, its
        # claim batch about 4 s, longer than the 3 s its claims last without renewal.
        slow = await stack.enter_async_context(SlowProxy(smtp.host, smtp.port, delay_s=0.1))
        daemons = []
        for name, relay in (("a", (slow.host, slow.port)), ("b", (smtp.host, smtp.port))):
            path = write_config(
                tmp_path / f"{name}.toml",
                database=database,
                imap=("127.0.0.1", 9),  # never polled here
                smtp=relay,
                lease_ttl_s=3,
            )
            daemons.append(await Daemon.open(load_settings(path), stack))
        replica_a, replica_b = daemons
        sending = asyncio.create_task(replica_a.outbox.deliver_due())
        await until(lambda: nothing_pending(engine))  # A has claimed every row
        while not sending.done():  # B passes over the outbox again and again meanwhile
            await replica_b.outbox.deliver_due()
            await asyncio.sleep(0.1)
        report = await sending
    assert report.sent == replies
    deliveries = Counter(message_id(mail) for mail in smtp.received)
    assert len(deliveries) == replies
    assert set(deliveries.values()) == {1}


async def nothing_pending(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        pending = select(func.count()).where(outbox.c.state == "pending")
        return not await conn.scalar(pending)


# --- per-sender limits, with two batches committing at once ----------------------------------


async def waiting_for_locks(engine: AsyncEngine, sessions: int) -> bool:
    """Whether at least ``sessions`` sessions on this database wait for a lock."""
    async with engine.connect() as conn:
        waiting = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return int(waiting or 0) >= sessions


@postgres_only
@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_two_batches_of_one_sender_committing_at_once_keep_to_the_sender_limit(
    engine: AsyncEngine,
) -> None:
    # Two mailboxes, each polled by its replica; the same person writes to both.
    for source in (SOURCE, "sales-mail"):
        assert await acquire_lease(engine, source, "replica-a", ttl_s=60, now=NOW)
    other = from_sender(0, "other@example.net", source="sales-mail")
    await commit_batch(engine, plan("sales-mail", [other]), now=NOW)
    person = "frequent@example.net"
    sales = [from_sender(number, person, source="sales-mail") for number in (1, 2)]
    support = [from_sender(number, person) for number in (3, 4)]
    async with engine.connect() as blocker:
        # Hold the sales cursor: that batch decides its acknowledgments, then waits to commit.
        await blocker.execute(
            select(cursors.c.version).where(cursors.c.source == "sales-mail").with_for_update()
        )
        committing = asyncio.create_task(
            commit_batch(engine, plan("sales-mail", sales, version=1), now=NOW)
        )
        await until(lambda: waiting_for_locks(engine, 1))
        racing = asyncio.create_task(commit_batch(engine, plan(SOURCE, support), now=NOW))
        # Unchecked, this batch counts no acknowledgment of the other yet and commits.
        await until(lambda: finished_or_waiting(racing, engine))
        await blocker.rollback()
    outcomes = await asyncio.gather(committing, racing)
    assert sum(outcome.replies_queued for outcome in outcomes) == PER_SENDER_PER_HOUR
    async with engine.connect() as conn:
        queued = await conn.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.recipient == person)
        )
    assert queued == PER_SENDER_PER_HOUR


async def finished_or_waiting(task: asyncio.Task[Any], engine: AsyncEngine) -> bool:
    return task.done() or await waiting_for_locks(engine, 2)


# --- three replicas, one SIGKILL -------------------------------------------------------------

REPLICAS = 3
MAILS = 2000
TRICKLE = 40
TRICKLE_EVERY_S = 0.25
LEASE_TTL_S = 3.0
POLL_INTERVAL_S = 0.5
BATCH_SIZE = 25
OUTBOX_BATCH_SIZE = 20
#: The holder is killed after this many of its batches stored mail (an eighth of the mailbox).
KILL_AFTER_BATCHES = 10
#: On top of ``lease_ttl_s`` and one poll interval, until another replica logs "lease
#: taken": its scheduler and event loop, busy sending acknowledgments, and reading its log.
LEASE_SLACK_S = 1.5
#: Until its first "batch stored": also its connection to the server and a first batch of
#: ``BATCH_SIZE`` mails, which took up to 4.7 s on two loaded cores shared with pymap,
#: PostgreSQL, the relay and the rest of the suite (parsing and triage hold the event loop).
TAKEOVER_SLACK_S = 5.0
DONE_WITHIN_S = 110.0

FREQUENT_SENDER = "frequent.writer@example.org"
#: One sender, five problems of five categories (none a repeat of another), placed so that
#: the replica killed stores the first two and another replica the last three.
FREQUENT_MAILS = {
    40: ("Withdrawal pending", "My BTC withdrawal has been pending for two days."),
    120: ("KYC stuck", "My identity verification (KYC) was rejected again, passport sent twice."),
    900: ("App crashes", "The Android app crashes every time I open the markets screen."),
    1400: ("Feature idea", "Please add a dark mode and price alerts to the web platform."),
    1900: ("API", "Your REST API returns 500 errors on the order endpoint since this morning."),
}


def mailbox() -> tuple[list[bytes], list[bytes]]:
    """The mails loaded before the replicas start, and those delivered while they run."""
    corpus = distinct_mails(corpus_templates(), MAILS + TRICKLE, now=datetime.now(UTC)).raws
    preloaded = list(corpus[: MAILS - len(FREQUENT_MAILS)])
    for position, (subject, body) in sorted(FREQUENT_MAILS.items()):
        sender = f"Frequent Writer <{FREQUENT_SENDER}>"
        preloaded.insert(position, simple_mail(position, sender, subject, body))
    return preloaded, list(corpus[MAILS:])


@dataclass(frozen=True, slots=True)
class LogLine:
    """One JSON log line of a replica, stamped with the test's clock when it was read."""

    at: float
    replica: int
    fields: dict[str, Any]


@dataclass(slots=True)
class Replicas:
    """``inbox-daemon run`` subprocesses on one configuration, their logs read as they come.

    Each replica's log is also written beside the configuration, to read after a failure.
    """

    config: Path
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)
    lines: list[LogLine] = field(default_factory=list)
    _readers: list[asyncio.Task[None]] = field(default_factory=list)
    _logged: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def start(self, count: int) -> None:
        for number in range(count):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "inbox_daemon.cli",
                "run",
                "--config",
                str(self.config),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, PASSWORD_ENV: "demopass"},
            )
            self.processes.append(process)
            self._readers.append(asyncio.create_task(self._read(number, process)))

    async def wait_for(
        self, wanted: Callable[[LogLine], bool], *, timeout_s: float, after: int = 0
    ) -> LogLine:
        """The first line, from index ``after`` on, for which ``wanted`` is true."""

        def found() -> LogLine | None:
            return next((line for line in self.lines[after:] if wanted(line)), None)

        async with asyncio.timeout(timeout_s), self._logged:
            await self._logged.wait_for(lambda: found() is not None)
        line = found()
        assert line is not None
        return line

    async def stop(self) -> list[int | None]:
        """SIGTERM every replica still running, then wait for all; their exit statuses."""
        for process in self.processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), timeout=20)
            except TimeoutError:
                process.kill()
                await process.wait()
        await asyncio.gather(*self._readers)
        return [process.returncode for process in self.processes]

    async def _read(self, number: int, process: asyncio.subprocess.Process) -> None:
        # Read all along: an unread pipe fills up and blocks the replica.
        assert process.stderr is not None
        loop = asyncio.get_running_loop()
        with (self.config.parent / f"replica-{number}.log").open("wb") as kept:
            async for raw in process.stderr:
                kept.write(raw)
                async with self._logged:
                    self.lines.append(LogLine(loop.time(), number, _fields(raw)))
                    self._logged.notify_all()


def _fields(raw: bytes) -> dict[str, Any]:
    try:
        fields: dict[str, Any] = json.loads(raw)
    except json.JSONDecodeError:  # a traceback before logging is set up
        return {"message": raw.decode("utf-8", "replace").rstrip()}
    return fields


def stored_mail(line: LogLine) -> bool:
    return line.fields["message"] == "batch stored" and line.fields["stored"] > 0


def from_another(replica: int, message: str) -> Callable[[LogLine], bool]:
    """Whether a log line is ``message``, logged by a replica other than ``replica``."""
    return lambda line: line.replica != replica and line.fields["message"] == message


def replica_pid(owner: str) -> int:
    """The process id in a lease owner (``host:pid:token``)."""
    return int(owner.split(":")[-2])


async def lease_owner(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        owner: str | None = await conn.scalar(
            select(leases.c.owner).where(leases.c.source == SOURCE)
        )
        return owner


async def wait_until_done(engine: AsyncEngine, mails: int) -> None:
    """Every mail stored and every acknowledgment finished (sent, or failed for good)."""
    await until(lambda: settled(engine, mails), timeout_s=DONE_WITHIN_S, every_s=0.5)


@postgres_only
@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(170)
@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_three_replicas_share_one_mailbox_through_a_sigkill(
    tmp_path: Path, database: str, engine: AsyncEngine
) -> None:
    preloaded, trickle = mailbox()
    async with LoopbackImapServer() as imap, LoopbackSmtpServer() as smtp:
        await imap.append_many("INBOX", preloaded)
        config = write_config(
            tmp_path / "inbox.toml",
            database=database,
            imap=(imap.host, imap.port),
            smtp=(smtp.host, smtp.port),
            lease_ttl_s=LEASE_TTL_S,
            extra=f"[outbox]\npoll_interval_s = 0.2\nbatch_size = {OUTBOX_BATCH_SIZE}",
            source_extra=f"poll_interval_s = {POLL_INTERVAL_S}\nbatch_size = {BATCH_SIZE}",
        )
        replicas = Replicas(config)
        delivering = asyncio.create_task(deliver_slowly(imap, trickle))
        try:
            await replicas.start(REPLICAS)
            killed, killed_at, logged = await kill_the_holder_mid_batch(replicas, engine)
            taken = await replicas.wait_for(
                from_another(killed, "lease taken"), after=logged, timeout_s=60
            )
            takeover = await replicas.wait_for(
                from_another(killed, "batch stored"), after=logged, timeout_s=60
            )
            new_owner = await lease_owner(engine)
            await delivering
            await wait_until_done(engine, len(preloaded) + len(trickle))
        finally:
            delivering.cancel()  # nothing to cancel once it is done
            statuses = await replicas.stop()
        uids = await mailbox_uids(imap)

    taken_s, takeover_s = taken.at - killed_at, takeover.at - killed_at
    print(f"lease taken over after {taken_s:.2f} s, first batch stored after {takeover_s:.2f} s")
    assert taken_s <= LEASE_TTL_S + POLL_INTERVAL_S + LEASE_SLACK_S
    assert takeover_s <= LEASE_TTL_S + POLL_INTERVAL_S + TAKEOVER_SLACK_S
    assert new_owner is not None
    assert replica_pid(new_owner) != replicas.processes[killed].pid
    assert statuses[killed] == -signal.SIGKILL
    assert [s for n, s in enumerate(statuses) if n != killed] == [0] * (REPLICAS - 1)

    assert len(uids) == len(preloaded) + len(trickle)
    await assert_every_mail_is_one_record(engine, uids)
    await assert_every_acknowledgment_delivered_once(engine, smtp.received)
    await assert_sender_limit_held_across_replicas(engine, smtp.received)


async def deliver_slowly(imap: LoopbackImapServer, mails: list[bytes]) -> None:
    """New mail arriving while the replicas run, before and after the kill."""
    for raw in mails:
        await imap.append("INBOX", raw)
        await asyncio.sleep(TRICKLE_EVERY_S)


async def kill_the_holder_mid_batch(
    replicas: Replicas, engine: AsyncEngine
) -> tuple[int, float, int]:
    """SIGKILL the replica polling the source right after one of its commits, as it fetches
    and triages the next batch; its number, the time of the kill and the lines read by then."""
    line = await replicas.wait_for(stored_mail, timeout_s=60)
    holder = line.replica
    for _ in range(KILL_AFTER_BATCHES - 1):
        line = await replicas.wait_for(
            lambda candidate: stored_mail(candidate) and candidate.replica == holder,
            after=replicas.lines.index(line) + 1,
            timeout_s=30,
        )
    owner = await lease_owner(engine)
    assert owner is not None
    assert replica_pid(owner) == replicas.processes[holder].pid
    replicas.processes[holder].send_signal(signal.SIGKILL)
    killed_at, logged = asyncio.get_running_loop().time(), len(replicas.lines)
    assert await record_count(engine) < MAILS  # the mailbox was far from done
    return holder, killed_at, logged


async def mailbox_uids(imap: LoopbackImapServer) -> set[int]:
    """The UID of every mail in the mailbox."""
    async with imap.client() as client:
        assert (await client.select("INBOX")).result == "OK"
        found = await client.uid_search("ALL")
    assert found.result == "OK"
    return {int(uid) for uid in found.lines[0].split()}


async def assert_every_mail_is_one_record(engine: AsyncEngine, uids: set[int]) -> None:
    async with engine.connect() as conn:
        refs = (await conn.execute(select(feedback_records.c.raw_ref))).scalars().all()
        dead = await conn.scalar(select(func.count()).select_from(dead_letters))
    stored = [int(ref.rpartition(";uid=")[2]) for ref in refs]
    assert dead == 0
    assert set(stored) == uids  # no mail lost
    assert len(refs) == len(uids)  # and none stored twice


async def assert_every_acknowledgment_delivered_once(
    engine: AsyncEngine, received: list[ReceivedMail]
) -> None:
    query = select(
        outbox.c.state,
        outbox.c.external_id,
        outbox.c.attempts,
        outbox.c.channel,
        feedback_records.c.external_id.label("answered"),
    ).join(feedback_records, feedback_records.c.id == outbox.c.record_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    assert {row.state for row in rows} <= {"sent", "failed"}  # nothing left sending, nor due
    sent = {row.external_id: row for row in rows if row.state == "sent"}
    deliveries = Counter(message_id(mail) for mail in received)
    assert set(deliveries) == set(sent)
    # Counted by distinct Message-ID: an e-mail the killed replica was sending may have gone
    # out twice, with the same Message-ID, and only if its row was claimed again afterwards.
    repeated = {key: count for key, count in deliveries.items() if count > 1}
    assert all(sent[key].attempts > 1 for key in repeated)
    assert all(sent[key].channel in RESENDABLE_CHANNELS for key in repeated)
    assert sum(repeated.values()) - len(repeated) <= OUTBOX_BATCH_SIZE
    retaken = sum(row.attempts > 1 for row in sent.values())
    print(f"{retaken} replies claimed more than once, {len(repeated)} delivered twice")
    # Counted by In-Reply-To too: each acknowledgment answers its own record's mail, and no
    # mail got two. (A mail without a well-formed Message-ID gets no In-Reply-To.)
    answers = {
        message_id(mail): normalise_message_id(message_from_bytes(mail.data)["In-Reply-To"])
        for mail in received
    }
    for key, row in sent.items():
        assert answers[key] in (row.answered, None)
    answered = Counter(parent for parent in answers.values() if parent is not None)
    assert set(answered.values()) == {1}


async def assert_sender_limit_held_across_replicas(
    engine: AsyncEngine, received: list[ReceivedMail]
) -> None:
    acknowledged = {message_id(mail) for mail in received if mail.rcpt_tos == (FREQUENT_SENDER,)}
    assert len(acknowledged) == PER_SENDER_PER_HOUR
    async with engine.connect() as conn:
        reasons = (
            (
                await conn.execute(
                    select(feedback_records.c.ack_reason)
                    .where(feedback_records.c.sender_id == FREQUENT_SENDER)
                    .order_by(feedback_records.c.id)
                )
            )
            .scalars()
            .all()
        )
    limit = f"sender limit reached: {PER_SENDER_PER_HOUR} acknowledgments per hour"
    assert reasons[PER_SENDER_PER_HOUR:] == [limit] * (len(FREQUENT_MAILS) - PER_SENDER_PER_HOUR)
