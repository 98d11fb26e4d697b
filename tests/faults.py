"""Faults injected against real servers on loopback, for the reliability tests.

- :class:`RestartableImapServer`: pymap, killed with SIGKILL and started again on the same
  port. Its mailboxes live in memory, so it comes back empty (the test delivers the mail
  again) and with a new UIDVALIDITY, which pymap draws from the clock and a random number.
- :class:`StallingProxy`: in front of a real server, stops passing the server's answer on at
  a marker (right after the greeting, inside a FETCH response) and keeps the connection open:
  a server that hangs. Every new connection hangs too until :meth:`StallingProxy.answer_again`.
- :class:`RelayProcess`: an aiosmtpd relay in a child process that writes each mail it accepts
  to a spool file before it answers ``250``, so what it received survives a SIGKILL; it can
  fall silent after the n-th mail, to be killed with a mail accepted but not acknowledged.
- :class:`PrivatePostgres`: a PostgreSQL cluster of its own (``initdb``, ``pg_ctl``) on a free
  port, for restarts; the machine's shared server is never touched.
- :class:`SmallDisk` (a tmpfs, a real ``ENOSPC``) and :class:`PageLimit` (SQLite's own
  ``SQLITE_FULL`` through ``PRAGMA max_page_count``): a database that runs out of space.

The daemon runs as ``inbox-daemon run`` in a child process (:class:`DaemonProcess`), its
JSON log read as it comes. The checks the tests share: :func:`assert_every_mail_is_one_record`
and :func:`assert_every_allowed_acknowledgment_delivered_once`.

``python -m tests.faults relay PORT SPOOL [--hold-after N]`` runs the relay's child process.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import email.utils
import errno
import inspect
import json
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from sqlalchemy import event, func, select, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from benchmarks.ingest_imap import corpus_templates, distinct_copy
from inbox_daemon.loopback.imap import LoopbackImapServer
from inbox_daemon.loopback.smtp import LoopbackSmtpServer, ReceivedMail
from inbox_daemon.storage.schema import dead_letters, feedback_records, outbox, sources
from inbox_email.adapter import to_message
from inbox_email.mime import normalise_message_id, parse_mail
from tests.peers import CuttingProxy

ROOT: Final = Path(__file__).resolve().parents[1]
HOST: Final = "127.0.0.1"
#: The environment variable the configs name for the IMAP password (pymap's demo password).
PASSWORD_ENV: Final = "FAULTS_IMAP_PASSWORD"
PASSWORD: Final = "demopass"
CORPUS_SEED: Final = 20261123


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


async def until(
    condition: Callable[[], Awaitable[bool] | bool],
    *,
    timeout_s: float = 30,
    every_s: float = 0.05,
) -> None:
    """Check ``condition`` (a function, or a coroutine function) every ``every_s`` until it
    holds; ``TimeoutError`` after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not await _holds(condition):
            await asyncio.sleep(every_s)


async def _holds(condition: Callable[[], Awaitable[bool] | bool]) -> bool:
    outcome = condition()
    return await outcome if inspect.isawaitable(outcome) else outcome


# --- mail ------------------------------------------------------------------------------------


def plain_mail(number: int, *, body: str = "", message_id: bool = True) -> bytes:
    """A support mail of its own sender and thread; without a Message-ID when asked."""
    date = email.utils.format_datetime(datetime.now(UTC))
    head = f"Message-ID: <fault-{number}@example.org>\r\n" if message_id else ""
    said = body or f"My deposit number {number} has not arrived after three hours."
    return (
        f"{head}Date: {date}\r\nFrom: Customer {number} <customer{number}@example.net>\r\n"
        f"To: support@example.com\r\nSubject: Deposit {number} missing\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{said}\r\n"
    ).encode()


def corpus_mails(count: int) -> list[bytes]:
    """``count`` distinct real-world mails: the benchmark's copies of the corpus (each with its
    own Message-ID, sender and text), taken round robin in a seeded order, dated up to now."""
    templates = [template.raw for template in corpus_templates()]
    random.Random(CORPUS_SEED).shuffle(templates)
    now = datetime.now(UTC)
    dates = [now - timedelta(seconds=30 * (count - copy)) for copy in range(count)]
    return [
        distinct_copy(templates[copy % len(templates)], copy, when)[0]
        for copy, when in enumerate(dates)
    ]


def external_id(raw: bytes) -> str:
    """The record key the e-mail adapter gives ``raw``: its Message-ID, else a hash of it."""
    return to_message(parse_mail(raw), raw, "").external_id


def reply_message_id(mail: ReceivedMail) -> str | None:
    """The Message-ID of an acknowledgment the relay received."""
    return normalise_message_id(message_from_bytes(mail.data)["Message-ID"])


# --- the configuration -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One ``kind = "imap"`` source of a test's configuration."""

    name: str
    port: int
    folders: tuple[str, ...] = ("INBOX",)
    timeout_s: float = 10
    batch_size: int = 25
    poll_interval_s: float = 0.3


def write_config(
    path: Path,
    *,
    database: str,
    sources_: Sequence[SourceSpec],
    relay_port: int,
) -> Path:
    """A configuration of ``sources_``, all answering through the relay on ``relay_port``.

    Failing sources and replies are retried quickly and long enough to outlast the faults;
    every acknowledgment the policy allows is sent, however old the mail.
    """
    parts = [
        f"""
config_version = 1
[storage]
url = "{database}"
[replies]
max_ack_age_s = 315360000
[outbox]
poll_interval_s = 0.2
retry_base_s = 0.2
retry_cap_s = 1
max_attempts = 50
[service]
lease_ttl_s = 10
backoff_base_s = 0.3
backoff_cap_s = 1
shutdown_grace_s = 5
"""
    ]
    for source in sources_:
        parts.append(
            f"""
[[sources]]
name = "{source.name}"
kind = "imap"
host = "{HOST}"
port = {source.port}
security = "none"
username = "demouser"
password_env = "{PASSWORD_ENV}"
folders = {json.dumps(list(source.folders))}
timeout_s = {source.timeout_s}
batch_size = {source.batch_size}
poll_interval_s = {source.poll_interval_s}
[sources.smtp]
host = "{HOST}"
port = {relay_port}
security = "none"
from_address = "support@example.com"
timeout_s = 10
"""
        )
    path.write_text("".join(parts), encoding="utf-8")
    return path


# --- the daemon --------------------------------------------------------------------------------


class DaemonProcess:
    """``inbox-daemon run`` on one configuration in a child process, its JSON log read as it
    comes (and kept beside the configuration as ``daemon.log``, to read after a failure).

    Attributes:
        lines: the log lines so far, each a JSON object.
    """

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log_path = config.parent / "daemon.log"
        self.lines: list[dict[str, Any]] = []
        self._logged = asyncio.Condition()
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        """The child's process id."""
        assert self._process is not None
        return self._process.pid

    async def start(self) -> None:
        """Start the daemon; the IMAP password comes from the environment, as in production."""
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "inbox_daemon.cli",
            "run",
            "--config",
            str(self.config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, PASSWORD_ENV: PASSWORD},
        )
        self._reader = asyncio.create_task(self._read(self._process))

    async def wait_for(
        self, wanted: Callable[[dict[str, Any]], bool], *, timeout_s: float, after: int = 0
    ) -> dict[str, Any]:
        """The first log line, from index ``after`` on, for which ``wanted`` is true."""

        def found() -> dict[str, Any] | None:
            return next((line for line in self.lines[after:] if wanted(line)), None)

        async with asyncio.timeout(timeout_s), self._logged:
            await self._logged.wait_for(lambda: found() is not None)
        line = found()
        assert line is not None
        return line

    async def stop(self) -> int | None:
        """SIGTERM the daemon and wait for it (SIGKILL after 20 s); its exit status."""
        process = self._process
        assert process is not None and self._reader is not None
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=20)
        except TimeoutError:
            process.kill()
            await process.wait()
        await self._reader
        return process.returncode

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        # Read all along: an unread pipe fills up and blocks the daemon.
        assert process.stderr is not None
        with self.log_path.open("wb") as kept:
            async for raw in process.stderr:
                kept.write(raw)
                async with self._logged:
                    self.lines.append(_log_fields(raw))
                    self._logged.notify_all()


def _log_fields(raw: bytes) -> dict[str, Any]:
    try:
        fields: dict[str, Any] = json.loads(raw)
    except json.JSONDecodeError:  # a traceback before logging is set up
        return {"message": raw.decode("utf-8", "replace").rstrip()}
    return fields


@contextlib.asynccontextmanager
async def running_daemon(config: Path) -> AsyncIterator[DaemonProcess]:
    """:class:`DaemonProcess` on ``config``; it must exit 0 on SIGTERM, whatever its peers
    went through."""
    daemon = DaemonProcess(config)
    await daemon.start()
    try:
        yield daemon
    finally:
        status = await daemon.stop()
    assert status == 0, daemon.log_path.read_text(errors="replace")[-5000:]


def failure_of(source: str) -> Callable[[dict[str, Any]], bool]:
    """Whether a log line reports a failed poll of ``source``."""
    return lambda line: (
        line.get("source") == source and str(line.get("message", "")).startswith("source failed")
    )


# --- IMAP: a server killed, a server that hangs -----------------------------------------------


class RestartableImapServer(LoopbackImapServer):
    """pymap that can be killed with SIGKILL and started again on the same port.

    It builds on :class:`LoopbackImapServer`'s own start and stop; a restarted pymap holds
    no mail (its mailboxes lived in the killed process) and gives INBOX a new UIDVALIDITY.
    """

    async def kill(self) -> None:
        """SIGKILL pymap and reap it."""
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)
        await self._stop()  # waits for the process and the end of its stderr

    async def restart(self) -> None:
        """Start pymap again on the port it had."""
        await self._start(self.port)

    async def uids(self, folder: str = "INBOX") -> list[int]:
        """The folder's UIDs, ascending."""
        async with self.client() as client:
            await client.select(folder)
            response = await client.uid_search("ALL")
        return sorted(int(uid) for uid in bytes(response.lines[0]).split())

    async def uidvalidity(self, folder: str = "INBOX") -> int:
        """The folder's UIDVALIDITY, as SELECT reports it."""
        async with self.client() as client:
            response = await client.select(folder)
        for line in response.lines:
            found = bytes(line).partition(b"[UIDVALIDITY ")[2]
            if found:
                return int(found.split(b"]")[0])
        raise AssertionError(f"SELECT {folder} reported no UIDVALIDITY: {response.lines}")


class StallingProxy(CuttingProxy):
    """Forwards to a real server, but stops passing its answer on right after ``marker``.

    The connection stays open and the server's further answers are swallowed: to the
    client, a server that accepted and then never says another word (should the server die
    meanwhile, the connection closes as the server's does). Each new connection stalls the
    same way (at most ``stalls`` of them) until :meth:`answer_again`.

    Attributes:
        stalled: how many connections have stalled.
    """

    def __init__(
        self, upstream_host: str, upstream_port: int, *, marker: bytes, stalls: int | None = None
    ) -> None:
        super().__init__(upstream_host, upstream_port, cut_after_marker=marker, stall=True)
        self._stalls_left = stalls
        self.stalled = 0

    def answer_again(self) -> None:
        """Let new connections through untouched (those already stalled stay so)."""
        self._stalls_left = 0

    def _cut_point(self, forwarded: int, tail: bytes, chunk: bytes) -> int | None:
        if self._stalls_left == 0:
            return None
        point = super()._cut_point(forwarded, tail, chunk)
        if point is not None:
            self.stalled += 1
            if self._stalls_left is not None:
                self._stalls_left -= 1
        return point


# --- SMTP: a relay killed with a mail accepted but not acknowledged ---------------------------


class SpoolingRelay(LoopbackSmtpServer):
    """The loopback relay, writing each mail it accepts to ``spool`` before it answers
    (in :class:`LoopbackSmtpServer`'s own hook for an accepted mail).

    After the ``hold_after``-th mail it never answers again: the mail is accepted (spooled)
    but the client has no ``250`` for it, the outcome it cannot know.
    """

    def __init__(self, *, port: int, spool: Path, hold_after: int | None) -> None:
        super().__init__(port=port)
        self._spool = spool
        self._hold_after = hold_after

    async def _record(self, mail: ReceivedMail) -> None:
        await super()._record(mail)
        entry = {
            "mail_from": mail.mail_from,
            "rcpt_tos": list(mail.rcpt_tos),
            "data": base64.b64encode(mail.data).decode("ascii"),
        }
        # One write of one line, in the kernel before the answer: a SIGKILL cannot lose it.
        descriptor = os.open(self._spool, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, (json.dumps(entry) + "\n").encode())
        finally:
            os.close(descriptor)
        if self._hold_after is not None and len(self.received) >= self._hold_after:
            await asyncio.Event().wait()  # the answer never comes


async def serve_relay(port: int, spool: Path, hold_after: int | None) -> None:
    """Run :class:`SpoolingRelay` until killed."""
    async with SpoolingRelay(port=port, spool=spool, hold_after=hold_after):
        await asyncio.Event().wait()


class RelayProcess:
    """:class:`SpoolingRelay` in a child process on one port, to be killed and restarted.

    What every incarnation accepted is read back from the spool file.
    """

    def __init__(self, folder: Path) -> None:
        self.host = HOST
        self.port = free_port()
        self.spool = folder / "relay-spool.jsonl"
        self._log = folder / "relay.log"
        self._process: asyncio.subprocess.Process | None = None

    async def start(self, *, hold_after: int | None = None) -> None:
        """Start the relay on its port; return once it accepts connections."""
        command = [sys.executable, "-m", "tests.faults", "relay", str(self.port), str(self.spool)]
        if hold_after is not None:
            command += ["--hold-after", str(hold_after)]
        with self._log.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                *command, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
            )
        self._process = process
        async with asyncio.timeout(30):
            while not await accepts(self.host, self.port):
                assert process.returncode is None, self._log.read_text(errors="replace")
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL the relay and reap it."""
        process, self._process = self._process, None
        assert process is not None
        process.kill()
        await process.wait()

    async def stop(self) -> None:
        """Terminate the relay if it runs."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            await process.wait()

    def received(self) -> list[ReceivedMail]:
        """Every mail the relay accepted, in every incarnation, in order."""
        if not self.spool.exists():
            return []
        lines = self.spool.read_text(encoding="ascii").splitlines()
        return [
            ReceivedMail(
                entry["mail_from"], tuple(entry["rcpt_tos"]), base64.b64decode(entry["data"])
            )
            for entry in map(json.loads, lines)
        ]


async def accepts(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


# --- PostgreSQL: a cluster of our own, to restart ----------------------------------------------


def postgres_bindir() -> Path | None:
    """The newest Debian PostgreSQL with ``initdb`` and ``pg_ctl``, if one is installed."""
    found = [
        path
        for path in Path("/usr/lib/postgresql").glob("*/bin")
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file()
    ]
    return max(found, key=lambda path: int(path.parent.name), default=None)


class PrivatePostgres:
    """A PostgreSQL cluster in a temporary folder on a free port (an async context manager).

    PostgreSQL refuses to run as root, so as root its commands run as the ``postgres`` user,
    in a folder that user owns.
    """

    def __init__(self, bindir: Path) -> None:
        self._bindir = bindir
        self.port = free_port()
        self._folder = Path()

    @property
    def url(self) -> str:
        """The storage URL of its ``postgres`` database."""
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    async def __aenter__(self) -> Self:
        self._folder = Path(tempfile.mkdtemp(prefix="inbox-faults-pg-"))
        try:
            if os.geteuid() == 0:
                shutil.chown(self._folder, "postgres", "postgres")
            data = str(self._folder / "data")
            await self._run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync")
            options = f"-p {self.port} -k {self._folder} -c listen_addresses={HOST} -c fsync=off"
            await self._pg_ctl("start", "-o", options)
        except BaseException:
            await self._remove()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._remove()

    async def restart_immediately(self) -> None:
        """``pg_ctl restart -m immediate``: every backend dies at once, uncommitted work is
        lost, the server recovers from its WAL; returns once it accepts connections again."""
        await self._pg_ctl("restart", "-m", "immediate")

    async def _remove(self) -> None:
        try:
            if (self._folder / "data" / "postmaster.pid").exists():
                await self._pg_ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)

    async def _pg_ctl(self, action: str, *options: str) -> None:
        # The server writes to a file: had it our pipe, reading that to its end would wait
        # for the server to exit. ``restart`` takes the server's options again, not this one.
        log = str(self._folder / "server.log")
        data = str(self._folder / "data")
        await self._run("pg_ctl", action, "-D", data, "-w", "-l", log, *options)

    async def _run(self, program: str, *arguments: str) -> None:
        command = [str(self._bindir / program), *arguments]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=self._folder,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        assert process.returncode == 0, f"{program} {arguments}: {output.decode(errors='replace')}"


async def lock_waiter(engine: AsyncEngine) -> str | None:
    """The statement of a session of this database that waits for a lock, if any."""
    async with engine.connect() as conn:
        query: str | None = await conn.scalar(
            text(
                "SELECT query FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' LIMIT 1"
            )
        )
    return query


# --- SQLite: a disk that fills up --------------------------------------------------------------


class SmallDisk:
    """A tmpfs of ``size_bytes`` on a fresh folder: a disk that can really fill up (ENOSPC).

    Mounting needs privileges a container may lack: :meth:`mount` raises ``OSError`` then.
    """

    #: What :meth:`fill` leaves free by default: room for a lease's or a source state's few
    #: pages, not for a batch of mail.
    LEFT_FREE_BYTES: Final = 64 << 10

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._filler = folder / "filler"

    @classmethod
    async def mount(cls, size_bytes: int) -> SmallDisk:
        """Mount a tmpfs of ``size_bytes`` on a new temporary folder."""
        folder = Path(tempfile.mkdtemp(prefix="inbox-faults-disk-"))
        process = await asyncio.create_subprocess_exec(
            "mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(folder),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await process.communicate()
        if process.returncode != 0:
            folder.rmdir()
            raise OSError(f"mount -t tmpfs refused: {output.decode(errors='replace').strip()}")
        return cls(folder)

    async def unmount(self) -> None:
        """Unmount and remove the folder."""
        process = await asyncio.create_subprocess_exec("umount", str(self.folder))
        await process.wait()
        self.folder.rmdir()

    def fill(self, *, leave_bytes: int = LEFT_FREE_BYTES) -> None:
        """Take all the free space but ``leave_bytes``."""
        with self._filler.open("ab") as filler:
            while (free := self.free_bytes()) > leave_bytes:
                try:
                    filler.write(b"\0" * min(free - leave_bytes, 1 << 20))
                    filler.flush()
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    return

    def make_room(self) -> None:
        """Give the space back."""
        self._filler.unlink(missing_ok=True)

    def free_bytes(self) -> int:
        """The bytes still free."""
        stat = os.statvfs(self.folder)
        return stat.f_bavail * stat.f_frsize


class PageLimit:
    """``PRAGMA max_page_count`` on every connection ``engine`` hands out: SQLite answers
    ``SQLITE_FULL`` ("database or disk is full") once the file would grow past it."""

    #: SQLite's own ceiling, the default of the pragma.
    NO_LIMIT: Final = 4294967294

    def __init__(self, engine: AsyncEngine) -> None:
        self._pages = self.NO_LIMIT
        event.listen(engine.sync_engine, "checkout", self._apply)

    def fill(self) -> None:
        """Let the file grow no more (SQLite never sets the limit below its size)."""
        self._pages = 1

    def make_room(self) -> None:
        """Lift the limit."""
        self._pages = self.NO_LIMIT

    def _apply(
        self,
        connection: DBAPIConnection,
        _entry: ConnectionPoolEntry,
        _proxy: PoolProxiedConnection,
    ) -> None:
        cursor = connection.cursor()
        cursor.execute(f"PRAGMA max_page_count = {self._pages}")
        cursor.close()


# --- what must hold after every fault ----------------------------------------------------------


async def assert_every_mail_is_one_record(engine: AsyncEngine, raws: Sequence[bytes]) -> None:
    """Each mail delivered is stored as exactly one record: none lost, none stored twice."""
    expected = Counter(external_id(raw) for raw in raws)
    assert set(expected.values()) == {1}, "the test's mails must be distinct"
    async with engine.connect() as conn:
        stored = Counter((await conn.execute(select(feedback_records.c.external_id))).scalars())
        dead = await conn.scalar(select(func.count()).select_from(dead_letters))
    assert dead == 0
    assert not expected - stored, f"{len(expected - stored)} mails were not stored"
    assert not stored - expected, f"{len(stored - expected)} records too many"


async def assert_every_allowed_acknowledgment_delivered_once(
    engine: AsyncEngine, received: Sequence[ReceivedMail], *, resends: bool = False
) -> dict[str, int]:
    """Every record the reply policy acknowledges has one outbox row, sent, and the relay
    received that reply once; it received nothing else.

    A reply the adapter cannot build at all (the sender's address is none it can write to)
    fails at its first attempt with or without faults: it may be ``failed``, never sent.
    With ``resends``, a reply whose delivery had an unknown outcome (DESIGN.md: an e-mail row
    may be sent again with the same Message-ID) may have arrived twice, and only if its row
    was attempted again. Returns the Message-IDs that arrived more than once, with counts.
    """
    query = select(
        feedback_records.c.external_id.label("answered"),
        feedback_records.c.ack_decision,
        outbox.c.record_id,
        outbox.c.state,
        outbox.c.attempts,
        outbox.c.last_error,
        outbox.c.external_id.label("message_id"),
    ).outerjoin(outbox, outbox.c.record_id == feedback_records.c.id)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    allowed = [row for row in rows if row.ack_decision == "send" and not _unbuildable(row)]
    assert allowed, "the test's mail must call for acknowledgments"
    assert all(row.record_id is None for row in rows if row.ack_decision != "send")
    states = Counter((row.state, row.last_error) for row in allowed)
    assert set(states) == {("sent", None)}, f"replies not sent: {states}"
    sent = {row.message_id: row for row in allowed}
    assert len(sent) == len(allowed)  # one row per record, one Message-ID per row
    deliveries = Counter(reply_message_id(mail) for mail in received)
    assert set(deliveries) == set(sent)  # every reply arrived, and nothing else did
    repeated = {key: count for key, count in deliveries.items() if key and count > 1}
    if not resends:
        assert not repeated, f"replies delivered more than once: {repeated}"
    assert all(count == 2 and sent[key].attempts > 1 for key, count in repeated.items())
    for mail in received:  # each reply answers its own record's mail
        parent = normalise_message_id(message_from_bytes(mail.data)["In-Reply-To"])
        assert parent in (sent[reply_message_id(mail)].answered, None)
    return repeated


def _unbuildable(row: Any) -> bool:
    return bool(
        row.state == "failed"
        and row.attempts == 1
        and str(row.last_error).startswith("cannot build the reply")
    )


async def record_count(engine: AsyncEngine) -> int:
    """How many feedback records are stored."""
    async with engine.connect() as conn:
        return await conn.scalar(select(func.count()).select_from(feedback_records)) or 0


async def settled(engine: AsyncEngine, records: int) -> bool:
    """Whether ``records`` records are stored and no acknowledgment is left to send.

    Both are counted in one statement, so in one snapshot: counted apart, a batch committed
    between the two counts would look settled with its replies still pending.
    """
    unfinished = select(func.count()).where(outbox.c.state.in_(("pending", "retry", "sending")))
    stored = select(func.count()).select_from(feedback_records)
    async with engine.connect() as conn:
        counts = select(stored.scalar_subquery(), unfinished.scalar_subquery())
        stored_now, left = (await conn.execute(counts)).one()
    return stored_now == records and not left


async def source_error(engine: AsyncEngine, name: str) -> tuple[str, str | None]:
    """A source's state and last error, as ``status`` shows them."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(sources.c.state, sources.c.last_error).where(sources.c.name == name)
            )
        ).one()
    return row.state, row.last_error


def memory_kib(pid: int) -> tuple[int, int]:
    """The resident memory of process ``pid`` and its descendants (a parsing worker, say)
    now, and the sum of their peaks so far, in KiB: at least their peak together."""
    now = peak = 0
    for member in _process_tree(pid):
        with contextlib.suppress(OSError):  # a process that has just exited
            status = Path(f"/proc/{member}/status").read_text()
            fields = dict(line.split(":", 1) for line in status.splitlines())
            now += int(fields["VmRSS"].split()[0])
            peak += int(fields["VmHWM"].split()[0])
    return now, peak


def _process_tree(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                # The fields after the command's closing parenthesis: state, then parent.
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    tree, index = [pid], 0
    while index < len(tree):
        tree += [child for child, parent in parents.items() if parent == tree[index]]
        index += 1
    return tree


def main(argv: Sequence[str] | None = None) -> None:
    """The relay's child process: ``relay PORT SPOOL [--hold-after N]``."""
    parser = argparse.ArgumentParser(prog="python -m tests.faults")
    parser.add_argument("role", choices=["relay"])
    parser.add_argument("port", type=int)
    parser.add_argument("spool", type=Path)
    parser.add_argument("--hold-after", type=int)
    args = parser.parse_args(argv)
    asyncio.run(serve_relay(args.port, args.spool, args.hold_after))


if __name__ == "__main__":
    main()
