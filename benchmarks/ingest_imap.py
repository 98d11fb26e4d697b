"""IMAP ingest: the raw fetch rate against inbox-daemon's end-to-end rate, on real mail.

Run from the repository root::

    python3 benchmarks/ingest_imap.py --messages 10000 [--batch-size 100]
        [--server dovecot|pymap] [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--profile] [--no-delivery] [--sample 2000]

What it does, in one run:

1. builds N distinct mails from the corpora (``email-imap_tools/raw/**/*.eml`` and
   ``config/demo/*.eml``, round robin in a seeded order), one at a time as they are loaded:
   nothing holds all N. Every copy gets its own Message-ID (In-Reply-To and References
   follow it), sender (``@`` becomes ``@c<N>.`` in every header but To, Cc and Subject),
   Date (one mail every 30 s up to now) and, in each text part, a first line with a
   reference of its own; numbers of five digits or more and addresses in the text are
   renumbered per copy, so no copy quotes another's UID and none is a duplicate of another:
   nothing is cached or deduplicated away (DESIGN.md, "Where the time goes"). Mails without
   a text part (attachments only, empty bodies) differ in headers only;
2. loads them (timed apart, not counted) into Dovecot when its binary is found (Debian's
   ``dovecot-imapd``), else into pymap (``--server`` chooses). Dovecot runs as a child
   process (``dovecot -F -c``) in a private configuration in a temporary directory (its own
   dovecot.conf on a free loopback port, plain-text LOGIN, a passwd-file user, no SSL,
   base_dir, state_dir and log in the directory), on a Maildir written file by file before
   it starts; one pass reading every size then builds its index. pymap
   (``LoopbackImapServer``, a child process) is loaded with APPEND. An aiosmtpd relay runs
   in another child process (this script with ``--serve-smtp``);
3. measures the raw fetch: aioimaplib ``UID FETCH BODY.PEEK[]<0.n>`` of the whole folder,
   100 UIDs a command (``ImapSession.fetch_bodies``), nothing parsed or kept; and the
   adapter's fetch path (``fetch_folder`` as one poll reads: one SELECT and UID SEARCH,
   then RFC822.SIZE and BODY.PEEK per batch);
4. measures parsing and triage in-process on the first ``--sample`` mails, without I/O
   (``parse_mail`` + ``to_message``, then ``Triage.record``), to show where the CPU goes;
5. runs the daemon end to end, each time in a child process of its own (this script with
   ``--end-to-end``), whose peak RSS is the daemon's alone: on a fresh SQLite database, and
   on a fresh PostgreSQL database with ``--pg-url`` (created and dropped here):
   ``Daemon.open``, then the two halves of ``run_once`` timed apart: ``poll_source``
   (ingest: fetch, parse, triage, one transaction per batch with records, queue items,
   outbox rows and the cursor) and ``outbox.deliver_due`` (claim, render as MIME, SMTP to the
   relay over one connection, mark sent; skipped with ``--no-delivery``);
6. prints the ingest / raw-fetch ratio and the peak RSS of each process; with ``--profile``,
   reruns the SQLite case under cProfile and prints, for ingest and for delivery, the own
   time by component and the top 15 functions by cumulative time, then the top 15 by own
   time (the parsing worker's time is not in it: it runs in another process).

benchmarks/README.md has the figures of a run and what they show.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import cProfile
import dataclasses
import email.utils
import importlib.metadata
import io
import json
import logging
import os
import platform
import pstats
import pwd
import quopri
import random
import re
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from typing import Any, Final, TypeVar

ROOT = Path(__file__).resolve().parents[1]
# The package may not be installed: import it and its e-mail adapter from the tree.
sys.path[:0] = [str(ROOT), str(ROOT / "adapters")]

from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from inbox_daemon.config import Settings, load_settings  # noqa: E402
from inbox_daemon.errors import MessageError  # noqa: E402
from inbox_daemon.ingest import PollReport  # noqa: E402
from inbox_daemon.interfaces import InboundMessage  # noqa: E402
from inbox_daemon.loopback.imap import LoopbackImapServer  # noqa: E402
from inbox_daemon.loopback.smtp import LoopbackSmtpServer  # noqa: E402
from inbox_daemon.outbox import DeliveryReport  # noqa: E402
from inbox_daemon.pipeline.dedupe import DedupeIndex  # noqa: E402
from inbox_daemon.pipeline.reply_policy import ReplyContext  # noqa: E402
from inbox_daemon.pipeline.triage import load_triage  # noqa: E402
from inbox_daemon.scheduler import Daemon  # noqa: E402
from inbox_daemon.storage.engine import create_engine, database_url  # noqa: E402
from inbox_daemon.storage.migrate import upgrade  # noqa: E402
from inbox_email.adapter import to_message  # noqa: E402
from inbox_email.imap import ImapSession  # noqa: E402
from inbox_email.mailbox import FolderCursor, fetch_folder  # noqa: E402
from inbox_email.mime import parse_mail  # noqa: E402
from inbox_email.settings import ImapSourceSettings  # noqa: E402

CORPUS: Final = ROOT.parent / "shared" / "corpora" / "email-imap_tools" / "raw"
DEMO: Final = ROOT / "config" / "demo"
SOURCE: Final = "bench-mail"
FOLDER: Final = "INBOX"
PASSWORD_ENV: Final = "BENCH_IMAP_PASSWORD"  # noqa: S105 - the variable's name, not a secret
MAX_MESSAGE_BYTES: Final = 25 * 1024 * 1024
MAIL_SPACING_S: Final = 30
SEED: Final = 20261123
PROFILE_ROWS: Final = 15
#: UIDs per command of the raw fetch: the adapter's own bound (``_UIDS_PER_BODY_FETCH``).
RAW_FETCH_UIDS: Final = 100
#: How the end-to-end child marks the line that carries its figures.
RESULT_MARK: Final = "RESULT "
#: Acknowledge whatever the Date says: the benchmark must queue a reply for every mail that
#: the reply policy allows, however old the corpus message is.
MAX_ACK_AGE_S: Final = 100 * 365 * 24 * 3600

T = TypeVar("T")


# --- building distinct mails ---------------------------------------------------------------

_ADDRESS: Final = re.compile(r"([\w.+=-]+)@([\w-]+(?:\.[\w-]+)+)")
_MSG_ID: Final = re.compile(rb"<([^<>]+)>")
# Not after "&#": a numeric character reference in HTML is a character, not a number.
_LONG_NUMBER: Final = re.compile(r"(?<!&#)[0-9]{5,}")
_BODY_TAG: Final = re.compile(r"<body[^>]*>", re.IGNORECASE)
_ID_FIELDS: Final = frozenset({b"message-id", b"in-reply-to", b"references", b"resent-message-id"})
#: Fields left as they are: the mail must still be addressed to us, and a raw 8-bit Subject
#: may hold "@" as the second byte of a Big5 character.
_KEPT_FIELDS: Final = frozenset(
    {b"to", b"cc", b"bcc", b"delivered-to", b"x-original-to", b"envelope-to", b"resent-to"}
    | {b"subject"}
)
_WORDS: Final = ("ref", "case", "ticket", "note", "batch", "desk", "queue", "lot")


@dataclass(frozen=True, slots=True)
class Template:
    """One corpus mail the copies are made from."""

    name: str
    raw: bytes


@dataclass(slots=True)
class MailStream:
    """The distinct mails, built one at a time as they are loaded, never all held.

    Iterating yields each mail once; the counters tell what was built so far, and the
    first ``sample_size`` mails are kept for the in-process stages.
    """

    templates: Sequence[Template]
    count: int
    now: datetime
    sample_size: int
    built: int = 0
    size_bytes: int = 0
    varied_bodies: int = 0
    build_s: float = 0.0
    sample: list[bytes] = dataclasses.field(default_factory=list)

    def __iter__(self) -> Iterator[bytes]:
        """The mails, the templates taken round robin in a seeded order."""
        order = list(self.templates)
        random.Random(SEED).shuffle(order)
        for copy in range(self.count):
            started = time.perf_counter()
            when = self.now - timedelta(seconds=MAIL_SPACING_S * (self.count - copy))
            raw, body_varied = distinct_copy(order[copy % len(order)].raw, copy, when)
            self.built += 1
            self.size_bytes += len(raw)
            self.varied_bodies += body_varied
            if len(self.sample) < self.sample_size:
                self.sample.append(raw)
            self.build_s += time.perf_counter() - started
            yield raw


@dataclass(frozen=True, slots=True)
class MailSet:
    """Distinct mails held in memory, for callers that load a few hundred (tests)."""

    raws: tuple[bytes, ...]
    templates: int
    varied_bodies: int

    @property
    def size_bytes(self) -> int:
        """The total size of the mails."""
        return sum(len(raw) for raw in self.raws)


def distinct_mails(templates: Sequence[Template], count: int, *, now: datetime) -> MailSet:
    """``count`` distinct mails as :class:`MailStream` builds them, all in memory."""
    stream = MailStream(templates, count, now, sample_size=0)
    raws = tuple(stream)
    return MailSet(raws, len(templates), stream.varied_bodies)


def corpus_templates() -> list[Template]:
    """The imap_tools corpus and the demo mails, sorted by path."""
    paths = sorted(CORPUS.rglob("*.eml")) + sorted(DEMO.glob("*.eml"))
    if not paths:
        raise SystemExit(f"no .eml files under {CORPUS} or {DEMO}")
    return [Template(str(path.relative_to(path.parents[1])), path.read_bytes()) for path in paths]


def distinct_copy(raw: bytes, copy: int, when: datetime) -> tuple[bytes, bool]:
    """Copy number ``copy`` of ``raw``, dated ``when``; says whether a text part was varied."""
    head, separator, body = _split_entity(raw)
    newline = b"\r\n" if b"\r\n" in head else b"\n"
    new_head = _vary_headers(head, copy, when, newline)
    rng = random.Random(SEED + copy)
    word = rng.choice(_WORDS).capitalize()
    line = f"{word} {copy:06d}-{rng.getrandbits(24):06X} ({when:%Y-%m-%d %H:%M})"
    new_body = _vary_body(head, body, copy, line)
    if not separator:
        separator = newline
    return new_head + separator + (new_body or body), new_body is not None


def _split_entity(entity: bytes) -> tuple[bytes, bytes, bytes]:
    """Headers (ending in their last newline), the blank line, and the body."""
    if entity.startswith((b"\r\n", b"\n")):
        blank = b"\r\n" if entity.startswith(b"\r\n") else b"\n"
        return b"", blank, entity[len(blank) :]
    ends = [(index, mark) for mark in (b"\r\n\r\n", b"\n\n") if (index := entity.find(mark)) >= 0]
    if not ends:
        return entity, b"", b""
    index, mark = min(ends)
    half = len(mark) // 2
    return entity[: index + half], mark[half:], entity[index + len(mark) :]


def _fields(head: bytes) -> Iterator[bytes]:
    """Each header field with its continuation lines, line ends kept."""
    current = b""
    for line in head.splitlines(keepends=True):
        if current and not line[:1].isspace():
            yield current
            current = b""
        current += line
    if current:
        yield current


def _vary_headers(head: bytes, copy: int, when: datetime, newline: bytes) -> bytes:
    tag = f"c{copy}".encode()
    fields: list[bytes] = []
    seen: set[bytes] = set()
    for field in _fields(head):
        name = field.split(b":", 1)[0].strip().lower()
        seen.add(name)
        if name in _ID_FIELDS:
            field = _vary_ids(field, tag)
        elif name == b"date":
            field = b"Date: " + email.utils.format_datetime(when).encode() + newline
        elif name not in _KEPT_FIELDS:
            # Senders and the rest: every "@", whatever the syntax around it (comments, no
            # dot, UTF-8), so a broken header read as body text does not repeat either.
            field = field.replace(b"@", b"@" + tag + b".")
        fields.append(field)
    added = []
    if b"message-id" not in seen:
        added.append(b"Message-ID: <" + tag + b".bench@example.org>" + newline)
    if b"date" not in seen:
        added.append(b"Date: " + email.utils.format_datetime(when).encode() + newline)
    if fields and not fields[-1].endswith(b"\n"):
        fields[-1] += newline
    return b"".join(added + fields)


def _vary_ids(field: bytes, tag: bytes) -> bytes:
    varied, count = _MSG_ID.subn(lambda m: b"<" + tag + b"." + m.group(1) + b">", field)
    name, _, value = field.partition(b":")
    if count or not value.strip():
        return varied
    return name + b": " + tag + b"." + value.lstrip(b" \t")  # a bare id, without <>


def _vary_body(head: bytes, body: bytes, copy: int, line: str) -> bytes | None:
    """``body`` with each text part varied, or ``None`` when it has no text part to vary."""
    part = BytesHeaderParser(policy=compat32).parsebytes(head)
    if part.get_content_maintype() == "multipart":
        boundary = part.get_boundary()
        return _vary_multipart(body, boundary.encode(), copy, line) if boundary else None
    if part.get_content_maintype() != "text" or part.get_filename() is not None:
        return None
    if part.get_content_subtype() not in ("plain", "html"):
        return None
    return _vary_text_part(part, body, copy, line)


def _vary_multipart(body: bytes, boundary: bytes, copy: int, line: str) -> bytes | None:
    delimiter = re.compile(rb"(^--" + re.escape(boundary) + rb"(?:--)?[ \t]*(?:\r?\n|$))", re.M)
    pieces = delimiter.split(body)
    varied = False
    # pieces: preamble, delimiter, part, delimiter, part, …; parts sit at even indexes > 0.
    for index in range(2, len(pieces), 2):
        if index + 1 >= len(pieces):
            break  # the epilogue after the closing delimiter
        head, separator, part_body = _split_entity(pieces[index])
        new_body = _vary_body(head, part_body, copy, line)
        if new_body is not None:
            pieces[index] = head + (separator or b"\n") + new_body
            varied = True
    return b"".join(pieces) if varied else None


def _vary_text_part(part: Message, body: bytes, copy: int, line: str) -> bytes | None:
    encoding = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
    # An unknown encoding ("7-bit", "plain", "") is read as 7bit, as mail readers do.
    decode, encode = _CODECS.get(encoding, (_identity, _identity))
    try:
        data = decode(body)
    except (ValueError, binascii.Error):
        return None
    charset = _charset_reading(part.get_content_charset(), data)
    text = _renumbered(data.decode(charset), copy)
    if part.get_content_subtype() == "html":
        text = _html_with_line(text, line)
    else:
        newline = "\r\n" if "\r\n" in text else "\n"
        text = line + newline + newline + text
    try:
        return encode(text.encode(charset))
    except UnicodeEncodeError:  # a codec that does not write back what it read
        return None


def _charset_reading(label: str | None, data: bytes) -> str:
    """The declared charset when it reads ``data``, else latin-1 (any bytes, written back as
    they were: the line and the renumbering only touch ASCII next to ASCII)."""
    if label:
        try:
            data.decode(label)
        except (LookupError, UnicodeDecodeError):
            return "latin-1"
        return label
    return "latin-1"


def _renumbered(text: str, copy: int) -> str:
    """Long numbers and addresses made this copy's own (a quoted UID names one person)."""

    def number(match: re.Match[str]) -> str:
        digits = match.group(0)
        return str((int(digits) + copy * 7919) % 10 ** len(digits)).zfill(len(digits))

    text = _LONG_NUMBER.sub(number, text)
    return _ADDRESS.sub(lambda m: f"{m.group(1)}@c{copy}.{m.group(2)}", text)


def _html_with_line(text: str, line: str) -> str:
    paragraph = f"<p>{line}</p>"
    found = _BODY_TAG.search(text)
    if found is None:
        return paragraph + text
    return text[: found.end()] + paragraph + text[found.end() :]


def _base64_lines(data: bytes) -> bytes:
    encoded = base64.b64encode(data)
    return b"".join(encoded[i : i + 76] + b"\r\n" for i in range(0, len(encoded), 76))


def _identity(data: bytes) -> bytes:
    return data


_CODECS: Final[dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]]] = {
    "7bit": (_identity, _identity),
    "8bit": (_identity, _identity),
    "binary": (_identity, _identity),
    "quoted-printable": (quopri.decodestring, quopri.encodestring),
    "base64": (base64.b64decode, _base64_lines),
}


# --- servers and configuration ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Relay:
    """The SMTP relay child process."""

    host: str
    port: int
    process: asyncio.subprocess.Process

    async def received(self) -> int:
        """How many mails the relay has accepted so far."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(b"count\n")
        await self.process.stdin.drain()
        return int(await self.process.stdout.readline())


@contextlib.asynccontextmanager
async def smtp_relay() -> AsyncIterator[Relay]:
    """This script in ``--serve-smtp`` mode: aiosmtpd on loopback, in its own process."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve-smtp",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        address = (await process.stdout.readline()).decode().split()
        if len(address) != 2:
            raise SystemExit("the SMTP relay did not start (see its error above)")
        yield Relay(address[0], int(address[1]), process)
    finally:
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def serve_smtp() -> None:
    """Run the relay until standard input closes; answer ``count`` with the mails received."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with LoopbackSmtpServer() as server:
        print(server.host, server.port, flush=True)
        while command := await reader.readline():
            if command.strip() == b"count":
                print(len(server.received), flush=True)


@dataclass(frozen=True, slots=True)
class ImapEndpoint:
    """Where the loaded mailbox is served, and how it was loaded."""

    server: str
    host: str
    port: int
    username: str
    password: str
    load: str


def dovecot_binary() -> str | None:
    """Dovecot's master binary when Debian's ``dovecot-imapd`` (or another) is installed."""
    return shutil.which("dovecot") or next(
        (str(path) for path in (Path("/usr/sbin/dovecot"),) if path.is_file()), None
    )


@dataclass(frozen=True, slots=True)
class _MailOwner:
    """Who owns the mail and runs Dovecot's processes: Debian's users when we are root
    (Dovecot refuses root as a mail user), else the user running the benchmark."""

    uid: int
    gid: int
    internal_user: str
    login_user: str
    chroot: bool

    @classmethod
    def here(cls) -> _MailOwner:
        if os.geteuid() == 0:
            mail = pwd.getpwnam("dovecot")
            pwd.getpwnam("dovenull")  # Debian's unprivileged login user; KeyError if missing
            return cls(mail.pw_uid, mail.pw_gid, "dovecot", "dovenull", chroot=True)
        me = pwd.getpwuid(os.geteuid())
        return cls(me.pw_uid, me.pw_gid, me.pw_name, me.pw_name, chroot=False)


class DovecotServer:
    """Dovecot in a private configuration under ``directory``, run as a child process.

    Nothing outside ``directory`` is read or written: its own ``dovecot.conf`` (listening
    on 127.0.0.1 at a free port, plain-text LOGIN, no SSL), a passwd-file user, the
    Maildir, and Dovecot's base_dir, state_dir and log. The mailbox is loaded by writing
    Maildir files directly, one mail at a time, before Dovecot starts.
    """

    username: Final = "bench"

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.password = secrets.token_urlsafe(16)
        self._owner = _MailOwner.here()
        self._process: asyncio.subprocess.Process | None = None

    @property
    def maildir(self) -> Path:
        """The user's INBOX."""
        return self.directory / "home" / self.username / "Maildir"

    def load(self, mails: Iterable[bytes]) -> int:
        """Write each mail as a Maildir file (in ``cur/``, read), in order; how many.

        The file names sort in mail order, so Dovecot gives the UIDs in that order, and
        carry the size (``S=``) as a delivery agent writes it.
        """
        for sub in ("cur", "new", "tmp"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        stamp = int(time.time()) - 10**6
        count = 0
        for count, raw in enumerate(mails, start=1):
            name = f"{stamp + count}.M{count:07d}P{os.getpid()}.bench,S={len(raw)}:2,"
            descriptor = os.open(self.maildir / "cur" / name, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.write(descriptor, raw)
                os.fchown(descriptor, self._owner.uid, self._owner.gid)
            finally:
                os.close(descriptor)
        for path in (self.directory / "home", self.directory / "home" / self.username):
            os.chown(path, self._owner.uid, self._owner.gid)
        for sub in ("", "cur", "new", "tmp"):
            os.chown(self.maildir / sub, self._owner.uid, self._owner.gid)
        return count

    async def __aenter__(self) -> DovecotServer:
        self.directory.chmod(0o755)
        config = self._write_config()
        log = (self.directory / "dovecot.out").open("wb")
        with log:
            self._process = await asyncio.create_subprocess_exec(
                self.binary, "-F", "-c", str(config), stdout=log, stderr=log
            )
        deadline = time.monotonic() + 30
        while not await _accepts(self.host, self.port):
            if self._process.returncode is not None or time.monotonic() > deadline:
                raise SystemExit(f"Dovecot did not start: see {self.directory}/dovecot.*")
            await asyncio.sleep(0.05)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()

    def endpoint(self) -> ImapEndpoint:
        """How the benchmark reaches this server."""
        version = subprocess.run(
            [self.binary, "--version"], capture_output=True, text=True, check=False
        ).stdout.split()
        label = f"Dovecot {version[0] if version else '?'} (Maildir, child process)"
        return ImapEndpoint(
            label, self.host, self.port, self.username, self.password, "Maildir files"
        )

    def _write_config(self) -> Path:
        owner = self._owner
        (self.directory / "passwd").write_text(f"{self.username}:{{PLAIN}}{self.password}\n")
        (self.directory / "passwd").chmod(0o644)
        # Login processes run chrooted (the default) only when started as root.
        chroot = "" if owner.chroot else "\n  chroot ="
        config = self.directory / "dovecot.conf"
        config.write_text(
            DOVECOT_CONF.format(
                directory=self.directory,
                port=self.port,
                uid=owner.uid,
                gid=owner.gid,
                internal_user=owner.internal_user,
                login_user=owner.login_user,
                chroot=chroot,
            ),
            encoding="utf-8",
        )
        return config


#: The private configuration: only what the benchmark needs, every path in the temp dir.
DOVECOT_CONF: Final = """\
protocols = imap
listen = 127.0.0.1
base_dir = {directory}/run
state_dir = {directory}/state
log_path = {directory}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal_user}
default_internal_group = {internal_user}
default_login_user = {login_user}
first_valid_uid = {uid}
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {directory}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={directory}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}{chroot}
}}
service anvil {{{chroot}
}}
"""


async def load_pymap(stack: AsyncExitStack, mails: Iterable[bytes]) -> ImapEndpoint:
    """Start pymap (a child process) and APPEND ``mails`` to it, one at a time."""
    imap = await stack.enter_async_context(LoopbackImapServer())
    await imap.append_many(FOLDER, mails)
    version = importlib.metadata.version("pymap")
    return ImapEndpoint(
        f"pymap {version} (dict backend, child process)",
        imap.host,
        imap.port,
        imap.username,
        imap.password,
        "APPEND",
    )


async def load_dovecot(
    stack: AsyncExitStack, binary: str, workdir: Path, mails: Iterable[bytes]
) -> ImapEndpoint:
    """Write ``mails`` into a private Maildir, then start Dovecot on it."""
    workdir.chmod(0o755)  # Dovecot's own users must reach the mail and the passwd-file
    server = DovecotServer(binary, workdir / "dovecot")
    server.directory.mkdir()
    server.load(mails)
    await stack.enter_async_context(server)
    return server.endpoint()


async def warm_up(endpoint: ImapEndpoint) -> None:
    """Open the folder and read every size once, so the server's index is built (Dovecot
    indexes a Maildir on first use) before anything is timed."""
    session = ImapSession(imap_settings(endpoint))
    await session.connect()
    try:
        await session.select(FOLDER)
        await session.fetch_sizes(await session.search_uids(after_uid=None, since=None))
    finally:
        await session.logout()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def write_config(
    directory: Path, storage_url: str, imap: ImapEndpoint, relay: Relay, batch_size: int
) -> Path:
    """The daemon's configuration for one run (the shape of tests/test_email_end_to_end.py)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "inbox.toml"
    path.write_text(
        f"""
config_version = 1
[storage]
url = "{storage_url}"
[replies]
max_ack_age_s = {MAX_ACK_AGE_S}
[[sources]]
name = "{SOURCE}"
kind = "imap"
host = "{imap.host}"
port = {imap.port}
security = "none"
username = "{imap.username}"
password_env = "{PASSWORD_ENV}"
folders = ["{FOLDER}"]
backfill_days = 36500
timeout_s = 120
batch_size = {batch_size}
max_message_bytes = {MAX_MESSAGE_BYTES}
[sources.smtp]
host = "{relay.host}"
port = {relay.port}
security = "none"
from_address = "support@example.com"
timeout_s = 30
""",
        encoding="utf-8",
    )
    return path


@contextlib.asynccontextmanager
async def postgres_database(pg_url: str) -> AsyncIterator[str]:
    """A new, empty database on the server of ``pg_url``, dropped on exit."""
    name = f"inbox_bench_{secrets.token_hex(4)}"
    admin = create_async_engine(database_url(pg_url, ROOT), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


# --- measurements -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FetchFigures:
    """One pass over the whole folder."""

    mails: int
    size_bytes: int
    seconds: float

    @property
    def rate(self) -> float:
        """Mails per second."""
        return self.mails / self.seconds


@dataclass(frozen=True, slots=True)
class EndToEnd:
    """One daemon run over the whole folder on one database (measured in a child process).

    Attributes:
        rss_mb: the child's peak RSS after ``Daemon.open``, after ingest and at the end.
        worker_rss_mb: the peak RSS of the child's own children: the adapter's parsing
            worker (see ``inbox_email.parse_pool``), stopped when the daemon closes.
        cpu_s: CPU seconds (user + system) of the daemon's process for ingest and for
            delivery, and of its parsing worker: unlike the rates, hardly moved by other
            work on the machine.
    """

    backend: str
    open_s: float
    ingest_s: float
    delivery_s: float
    poll: PollReport
    delivery: DeliveryReport
    rss_mb: tuple[float, float, float]
    worker_rss_mb: float
    cpu_s: tuple[float, float, float]
    relay_received: int = 0

    @property
    def total_s(self) -> float:
        """Ingest and delivery: what ``run_once`` takes."""
        return self.ingest_s + self.delivery_s

    def to_json(self) -> str:
        """One line the parent reads back with :meth:`from_json`."""
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields["poll"] = dataclasses.asdict(self.poll)
        fields["delivery"] = dataclasses.asdict(self.delivery)
        return json.dumps(fields)

    @classmethod
    def from_json(cls, line: str, relay_received: int) -> EndToEnd:
        """Read a line written by :meth:`to_json`."""
        fields = json.loads(line)
        fields["poll"] = PollReport(**fields["poll"])
        fields["delivery"] = DeliveryReport(**fields["delivery"])
        fields["rss_mb"] = tuple(fields["rss_mb"])
        fields["cpu_s"] = tuple(fields["cpu_s"])
        fields["relay_received"] = relay_received
        return cls(**fields)


def imap_settings(endpoint: ImapEndpoint) -> ImapSourceSettings:
    """Settings for a session on the loaded server (the password comes from the env)."""
    return ImapSourceSettings(
        name=SOURCE,
        kind="imap",
        host=endpoint.host,
        port=endpoint.port,
        security="none",
        username=endpoint.username,
        password_env=PASSWORD_ENV,
        timeout_s=120,
    )


async def raw_fetch(settings: ImapSourceSettings) -> FetchFigures:
    """``UID FETCH BODY.PEEK[]`` of every UID in the folder, 100 a command, nothing parsed
    and nothing kept."""
    session = ImapSession(settings)
    await session.connect()
    mails = size_bytes = 0
    try:
        await session.select(FOLDER)
        uids = await session.search_uids(after_uid=None, since=None)
        started = time.perf_counter()
        for start in range(0, len(uids), RAW_FETCH_UIDS):
            chunk = uids[start : start + RAW_FETCH_UIDS]
            bodies = await session.fetch_bodies(chunk, max_bytes=MAX_MESSAGE_BYTES)
            mails += len(bodies)
            size_bytes += sum(map(len, bodies.values()))
        seconds = time.perf_counter() - started
    finally:
        await session.logout()
    return FetchFigures(mails, size_bytes, seconds)


async def adapter_fetch(settings: ImapSourceSettings, batch_size: int) -> FetchFigures:
    """``fetch_folder`` batch after batch as the adapter reads in one poll (one search,
    then the UIDs it found; sizes, then bodies, per batch), nothing parsed."""
    session = ImapSession(settings)
    await session.connect()
    cursor: FolderCursor | None = None
    known: tuple[int, ...] | None = None
    mails = size_bytes = 0
    started = time.perf_counter()
    try:
        while True:
            batch = await fetch_folder(
                session,
                FOLDER,
                cursor,
                limit=batch_size,
                since=None,
                max_message_bytes=MAX_MESSAGE_BYTES,
                known=known,
            )
            mails += len(batch.mails)
            size_bytes += sum(len(mail.raw) for mail in batch.mails)
            cursor, known = batch.cursor, batch.pending
            if not batch.more:
                break
        seconds = time.perf_counter() - started
    finally:
        await session.logout()
    return FetchFigures(mails, size_bytes, seconds)


def parse_all(raws: Sequence[bytes]) -> tuple[list[InboundMessage], float, int]:
    """Parse and normalise each mail as the adapter does; the messages, seconds and failures."""
    messages: list[InboundMessage] = []
    failures = 0
    started = time.perf_counter()
    for uid, raw in enumerate(raws, start=1):
        try:
            messages.append(to_message(parse_mail(raw), raw, f"{FOLDER};uid={uid}"))
        except MessageError:  # the adapter dead-letters these
            failures += 1
    return messages, time.perf_counter() - started, failures


def triage_all(messages: Sequence[InboundMessage], settings: Settings) -> float:
    """Seconds to triage every message (one dedupe index, as one daemon keeps)."""
    triage = load_triage(settings)
    index = DedupeIndex(triage.dedupe)
    started = time.perf_counter()
    context = ReplyContext(
        can_send=True,
        own_addresses=frozenset({"support@example.com"}),
        loop_marker=settings.replies.loop_marker,
        max_ack_age_s=settings.replies.max_ack_age_s,
        dry_run=False,
        now=datetime.now(UTC),
        rules=triage.reply_rules,
    )
    for message in messages:
        triage.record(message, source=SOURCE, context=context, index=index)
    return time.perf_counter() - started


@dataclass(frozen=True, slots=True)
class Profiles:
    """cProfile of each half of one end-to-end run."""

    ingest: cProfile.Profile
    delivery: cProfile.Profile


async def end_to_end(
    config_path: Path, backend: str, *, deliver: bool, profiles: Profiles | None = None
) -> EndToEnd:
    """Migrate, open the daemon, then poll the source and deliver the outbox, timed apart.

    Runs in a child process of its own (see :func:`run_end_to_end`), so its peak RSS is
    the daemon's alone: nothing of the building or of the other runs.
    """
    settings = load_settings(config_path)
    engine = create_engine(database_url(settings.storage.url, settings.config_dir))
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    async with AsyncExitStack() as stack:
        started = time.perf_counter()
        daemon = await Daemon.open(settings, stack)
        opened = time.perf_counter()
        rss_open = peak_rss_mb()
        cpu_open = cpu_s(resource.RUSAGE_SELF)
        poll = await _under(profiles.ingest if profiles else None, daemon.poll_source(SOURCE))
        polled = time.perf_counter()
        rss_ingest = peak_rss_mb()
        cpu_ingest = cpu_s(resource.RUSAGE_SELF)
        delivery = DeliveryReport()
        if deliver:
            delivery = await _under(
                profiles.delivery if profiles else None, daemon.outbox.deliver_due()
            )
        delivered = time.perf_counter()
    if not isinstance(poll, PollReport):
        raise SystemExit(f"{backend}: the poll failed: {poll}")
    return EndToEnd(
        backend,
        opened - started,
        polled - opened,
        delivered - polled,
        poll,
        delivery,
        (rss_open, rss_ingest, peak_rss_mb()),
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        (
            cpu_ingest - cpu_open,
            cpu_s(resource.RUSAGE_SELF) - cpu_ingest,
            cpu_s(resource.RUSAGE_CHILDREN),
        ),
    )


async def _under(profiler: cProfile.Profile | None, work: Awaitable[T]) -> T:
    if profiler is None:
        return await work
    profiler.enable()
    try:
        return await work
    finally:
        profiler.disable()


async def run_end_to_end(
    config_path: Path, backend: str, relay: Relay, *, deliver: bool, profile: bool = False
) -> EndToEnd:
    """:func:`end_to_end` in a child process (this script in ``--end-to-end`` mode); with
    ``profile``, the child prints its cProfile report (see :func:`print_profile`)."""
    before = await relay.received()
    command = [sys.executable, __file__, "--end-to-end", str(config_path), "--backend", backend]
    command += ["--profile"] if profile else []
    command += [] if deliver else ["--no-delivery"]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    result = None
    while line := (await process.stdout.readline()).decode():
        if line.startswith(RESULT_MARK):
            result = line.removeprefix(RESULT_MARK)
        else:
            print(line, end="", flush=True)
    if await process.wait() != 0 or result is None:
        raise SystemExit(f"{backend}: the end-to-end run failed (exit {process.returncode})")
    return EndToEnd.from_json(result, await relay.received() - before)


async def child_end_to_end(
    config_path: Path, backend: str, *, deliver: bool, profile: bool
) -> None:
    """The ``--end-to-end`` mode: one run, its figures on one line for the parent."""
    profiles = Profiles(cProfile.Profile(), cProfile.Profile()) if profile else None
    run = await end_to_end(config_path, backend, deliver=deliver, profiles=profiles)
    if profiles is not None:
        print_profile(profiles)
    print(RESULT_MARK + run.to_json(), flush=True)


# --- reporting --------------------------------------------------------------------------------


def cpu_s(who: int) -> float:
    """User and system CPU seconds of this process (``RUSAGE_SELF``) or of its children
    that have ended (``RUSAGE_CHILDREN``)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_header(options: Options, server: str) -> None:
    cores = os.cpu_count()
    print(
        f"inbox-daemon IMAP ingest benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        f"load average {_load()} (other work on the machine skews the figures)"
    )
    print(
        f"machine: {cores} cores, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, aioimaplib "
        f"{importlib.metadata.version('aioimaplib')}, SQLAlchemy "
        f"{importlib.metadata.version('sqlalchemy')}"
    )
    print(
        f"IMAP server: {server}; SMTP relay: aiosmtpd "
        f"{importlib.metadata.version('aiosmtpd')} (child process); "
        f"{options.messages} mails, batch_size {options.batch_size}"
    )


def print_mails(mails: MailStream, endpoint: ImapEndpoint, load_s: float) -> None:
    print(
        f"mails: {mails.built} distinct, from {len(mails.templates)} corpus mails, "
        f"{mails.size_bytes / 1e6:.1f} MB; {mails.varied_bodies} with a varied text part; "
        f"built one at a time in {mails.build_s:.2f} s"
    )
    print_stage(f"load: {endpoint.load} + index (not counted)", mails.built, load_s)


def print_fetch(title: str, figures: FetchFigures) -> None:
    print(
        f"{title:<46} {figures.mails:>6} mails {figures.size_bytes / 1e6:>6.1f} MB "
        f"{figures.seconds:>7.2f} s {figures.rate:>8.0f} mails/s"
    )


def print_stage(title: str, count: int, seconds: float) -> None:
    print(f"{title:<46} {count:>6} mails {'':>9} {seconds:>7.2f} s {count / seconds:>8.0f} mails/s")


def print_end_to_end(run: EndToEnd, raw: FetchFigures) -> None:
    poll, delivery = run.poll, run.delivery
    print(f"end to end, {run.backend} (Daemon.open {run.open_s:.2f} s, not counted)")
    print_stage("  ingest: poll_source (fetch..commit)", poll.fetched, run.ingest_s)
    print(
        f"    {poll.batches} batches; stored {poll.stored}, absorbed {poll.absorbed}, "
        f"duplicates {poll.duplicates}, dead letters {poll.dead_letters}, "
        f"replies queued {poll.replies_queued}"
    )
    print(
        f"  {'delivery: outbox.deliver_due (SMTP)':<44} {delivery.sent:>6} sent  {'':>9} "
        f"{run.delivery_s:>7.2f} s {_per_s(delivery.sent, run.delivery_s):>8.0f} replies/s"
    )
    print(
        f"    retry {delivery.retry}, failed {delivery.failed}; the relay received "
        f"{run.relay_received}"
    )
    print_stage("  total: run_once (ingest + delivery)", poll.fetched, run.total_s)
    rss_open, rss_ingest, rss_end = run.rss_mb
    print(
        f"    ingest / raw fetch: {poll.fetched / run.ingest_s / raw.rate:.1%} (run_once: "
        f"{poll.fetched / run.total_s / raw.rate:.1%}); daemon process peak RSS "
        f"{rss_open:.0f} MB opened, {rss_ingest:.0f} MB after ingest, {rss_end:.0f} MB at the end"
        f"; its parsing worker {run.worker_rss_mb:.0f} MB"
    )
    ingest_cpu, delivery_cpu, worker_cpu = run.cpu_s
    per_reply = f"{delivery_cpu / delivery.sent * 1000:.2f} ms a reply" if delivery.sent else "-"
    print(
        f"    CPU per mail: ingest {ingest_cpu / poll.fetched * 1000:.2f} ms in the daemon + "
        f"{worker_cpu / poll.fetched * 1000:.2f} ms in its parsing worker; delivery {per_reply}"
    )


def print_summary(options: Options, raw: FetchFigures, runs: Sequence[EndToEnd]) -> None:
    """The figures the targets are stated in, one line per database."""
    print(f"summary, N={options.messages} (rates in mails/s; the ratio is to the raw fetch):")
    for run in runs:
        ingest = run.poll.fetched / run.ingest_s
        replies = _per_s(run.delivery.sent, run.delivery_s)
        print(
            f"  {run.backend:<11} raw {raw.rate:>7.0f}  end to end (ingest) {ingest:>6.0f} "
            f"= {ingest / raw.rate:>6.1%}  delivery {replies:>5.0f} "
            f"replies/s  run_once {run.poll.fetched / run.total_s:>6.0f}  daemon peak RSS "
            f"{run.rss_mb[1]:.0f} MB (ingest) {run.rss_mb[2]:.0f} MB (end), "
            f"worker {run.worker_rss_mb:.0f} MB"
        )


def _per_s(count: int, seconds: float) -> float:
    return count / seconds if seconds else 0.0


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


#: Where a function's own time is counted, by the first pattern its "file:function" matches.
#: A C function (``re.Pattern.search``, ``socket.send``) and the ``re`` module's helpers are
#: counted with their caller, so a regex run by the classifier counts as classifying.
COMPONENTS: Final = (
    ("waiting for the servers (epoll)", r"select\.epoll|selectors\.py"),
    ("triage: classify (rules.toml)", r"pipeline/(classify|matching)\.py"),
    ("triage: language (langdetect, scripts)", r"pipeline/language\.py|/langdetect/"),
    ("triage: entities", r"pipeline/entities\.py"),
    ("triage: redact", r"pipeline/redact\.py"),
    ("triage: reply policy, templates (jinja2)", r"pipeline/(reply_policy|templates)\.py|jinja2"),
    ("triage: dedupe, reference, glue", r"pipeline/|inbox_daemon/ingest\.py"),
    ("reply stripping (normalise.py)", r"inbox_daemon/pipeline/normalise\.py"),
    ("stdlib email: parse (ingest), build (delivery)", r"/email/"),
    ("inbox_email: mime.py, html (selectolax)", r"inbox_email/(mime|html_|adapter)|selectolax"),
    ("charset-normalizer", r"charset_normalizer"),
    ("IMAP client (aioimaplib, imap.py, mailbox.py)", r"aioimaplib|inbox_email/(imap|mailbox)"),
    ("SMTP client (aiosmtplib, smtp.py)", r"aiosmtplib|inbox_email/smtp\.py"),
    ("storage (SQLAlchemy, drivers, repository)", r"sqlalchemy|sqlite|asyncpg|storage/"),
    ("outbox.py, scheduler.py", r"inbox_daemon/(outbox|scheduler)\.py"),
    ("asyncio machinery", r"/asyncio/"),
    ("logging", r"/logging/"),
)
#: Functions whose own time belongs to their caller.
_PASS_THROUGH: Final = re.compile(r"^~$|/re/(__init__|_compiler|_parser)\.py$")
_MAX_HOPS: Final = 4

ProfileKey = tuple[str, int, str]


def time_by_component(profiler: cProfile.Profile) -> list[tuple[str, float]]:
    """The profile's own time summed by component (see ``COMPONENTS``), largest first."""
    patterns = [(label, re.compile(pattern)) for label, pattern in COMPONENTS]
    raw_stats: dict[ProfileKey, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    totals: dict[str, float] = {}
    for where, entry in raw_stats.items():
        for owner, seconds in _owners(where, entry[2], raw_stats, 0):
            text = f"{owner[0]}:{owner[2]}"
            label = next((label for label, regex in patterns if regex.search(text)), "other")
            totals[label] = totals.get(label, 0.0) + seconds
    return sorted(totals.items(), key=lambda item: item[1], reverse=True)


def _owners(
    where: ProfileKey, seconds: float, raw_stats: dict[ProfileKey, Any], hops: int
) -> Iterator[tuple[ProfileKey, float]]:
    """Whom ``seconds`` spent in ``where`` are counted for: itself, or its callers by share."""
    callers = raw_stats[where][4] if where in raw_stats else {}
    waiting = "epoll" in where[2]
    if waiting or hops >= _MAX_HOPS or not callers or not _PASS_THROUGH.search(where[0]):
        yield where, seconds
        return
    total_s = sum(edge[3] for edge in callers.values())
    for caller, edge in callers.items():
        share = edge[3] / total_s if total_s else 1 / len(callers)
        yield from _owners(caller, seconds * share, raw_stats, hops + 1)


def print_profile(profiles: Profiles) -> None:
    """Per half: the time by component and the top functions by cumulative time; then the
    top functions by own time over the whole run."""
    # The benchmark's own frames and the event loop's would fill the cumulative list.
    hide = r"^(?!.*(ingest_imap\.py|/asyncio/|\{method 'run' of))"
    for phase, profiler in (("ingest", profiles.ingest), ("delivery", profiles.delivery)):
        components = time_by_component(profiler)
        total_s = sum(seconds for _, seconds in components)
        print(f"cProfile, SQLite, {phase}: own time by component ({total_s:.1f} s profiled)")
        for label, seconds in components:
            print(f"  {label:<48} {seconds:>7.2f} s {seconds / total_s:>6.1%}")
        print(_top(pstats.Stats(profiler), "cumulative", hide, f"{phase}, top {PROFILE_ROWS}"))
    both = pstats.Stats(profiles.ingest)
    both.add(profiles.delivery)
    print(_top(both, "tottime", hide, f"whole run, top {PROFILE_ROWS}"))


def _top(stats: pstats.Stats, order: str, hide: str, title: str) -> str:
    stream = io.StringIO()
    stats.stream = stream  # type: ignore[attr-defined]
    stats.sort_stats(order).print_stats(hide, PROFILE_ROWS)
    report = stream.getvalue()
    return f"{title} by {order}:\n{report[report.find('   ncalls') :].rstrip()}\n"


# --- main -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    """The command line."""

    messages: int
    batch_size: int
    server: str
    pg_url: str | None
    profile: bool
    sample: int
    deliver: bool


async def run(options: Options) -> None:
    """Build and load the mails, start the servers, and measure (see the module docstring)."""
    mails = MailStream(corpus_templates(), options.messages, datetime.now(UTC), options.sample)
    binary = dovecot_binary()
    async with AsyncExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="inbox-bench-")))
        started = time.perf_counter()
        if options.server == "dovecot" and binary is not None:
            endpoint = await load_dovecot(stack, binary, workdir, mails)
        else:
            endpoint = await load_pymap(stack, mails)
        os.environ[PASSWORD_ENV] = endpoint.password
        await warm_up(endpoint)
        load_s = time.perf_counter() - started - mails.build_s
        print_header(options, endpoint.server)
        print_mails(mails, endpoint, load_s)
        relay = await stack.enter_async_context(smtp_relay())
        raw = await measure_fetch(endpoint, options.batch_size)
        config = write_config(workdir, "sqlite:///bench.db", endpoint, relay, options.batch_size)
        measure_cpu(mails.sample, load_settings(config))
        mails.sample.clear()
        deliver = options.deliver
        runs = [await run_end_to_end(config, "SQLite", relay, deliver=deliver)]
        print_end_to_end(runs[-1], raw)
        if options.pg_url:
            async with postgres_database(options.pg_url) as url:
                pg_config = write_config(workdir / "pg", url, endpoint, relay, options.batch_size)
                runs.append(await run_end_to_end(pg_config, "PostgreSQL", relay, deliver=deliver))
                print_end_to_end(runs[-1], raw)
        if options.profile:
            profile_config = write_config(
                workdir / "profile", "sqlite:///bench.db", endpoint, relay, options.batch_size
            )
            print()
            await run_end_to_end(
                profile_config, "SQLite (profiled)", relay, deliver=deliver, profile=True
            )
    print_summary(options, raw, runs)
    print(
        f"peak RSS of this process (building, fetch, in-process sample): {peak_rss_mb():.0f} MB;"
        f" load average {_load()}"
    )


async def measure_fetch(endpoint: ImapEndpoint, batch_size: int) -> FetchFigures:
    """Print and return the raw fetch; print the adapter's fetch path."""
    settings = imap_settings(endpoint)
    raw = await raw_fetch(settings)
    print_fetch(f"raw fetch: fetch_bodies, {RAW_FETCH_UIDS} UIDs a command", raw)
    print_fetch(
        f"adapter fetch: fetch_folder, batches of {batch_size}",
        await adapter_fetch(settings, batch_size),
    )
    return raw


def measure_cpu(sample: Sequence[bytes], settings: Settings) -> None:
    """Print the in-process parse and triage rates on the sample (no I/O, one core)."""
    messages, parse_s, failures = parse_all(sample)
    print_stage(f"in-process: parse_mail + to_message ({failures} failed)", len(sample), parse_s)
    print_stage("in-process: Triage.record", len(messages), triage_all(messages, settings))


def parse_options(argv: Sequence[str] | None = None) -> Options | argparse.Namespace | None:
    """The options; the namespace in ``--end-to-end`` mode, ``None`` in ``--serve-smtp``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=2000, help="distinct mails to load")
    parser.add_argument("--batch-size", type=int, default=100, help="the source's batch_size")
    parser.add_argument(
        "--server",
        choices=("dovecot", "pymap"),
        default="dovecot" if dovecot_binary() else "pymap",
        help="the IMAP server (default: Dovecot when installed, else pymap)",
    )
    parser.add_argument("--pg-url", help="also run on a fresh database of this PostgreSQL server")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of a SQLite run")
    parser.add_argument(
        "--sample", type=int, default=2000, help="mails kept for the in-process stages"
    )
    parser.add_argument(
        "--no-delivery",
        dest="deliver",
        action="store_false",
        help="skip the outbox delivery after ingest (ingest is the end-to-end figure)",
    )
    parser.add_argument("--serve-smtp", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--end-to-end", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_smtp:
        return None
    if args.end_to_end:
        return args
    if args.messages < 1 or not 1 <= args.batch_size <= 10_000 or args.sample < 1:
        parser.error("--messages and --sample must be at least 1, --batch-size within 1..10000")
    if args.server == "dovecot" and dovecot_binary() is None:
        parser.error("--server dovecot: no dovecot binary (apt-get install dovecot-imapd)")
    return Options(
        args.messages,
        args.batch_size,
        args.server,
        args.pg_url,
        args.profile,
        args.sample,
        args.deliver,
    )


def main() -> None:
    """Entry point."""
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    options = parse_options()
    if options is None:
        asyncio.run(serve_smtp())
    elif isinstance(options, argparse.Namespace):
        asyncio.run(
            child_end_to_end(
                options.end_to_end,
                options.backend,
                deliver=options.deliver,
                profile=options.profile,
            )
        )
    else:
        asyncio.run(run(options))


if __name__ == "__main__":
    main()
