"""One IMAP conversation with a mailbox, over aioimaplib, with every failure classified.

:class:`ImapSession` wraps the few commands the e-mail adapter needs (LOGIN or
AUTHENTICATE XOAUTH2, SELECT/EXAMINE, UID SEARCH, UID FETCH, UID STORE, UID MOVE) and turns
every way they can fail into the daemon's error taxonomy:

- the server refused our credentials or a folder: :class:`~inbox_daemon.errors.PermanentError`;
- the connection was refused, reset, closed (BYE) or went silent:
  :class:`~inbox_daemon.errors.RetryableError`.

Each call has a deadline of ``settings.timeout_s``; a FETCH instead fails after
``timeout_s`` without any data, so a large mailbox may take longer than that in total. A
session whose call failed with a :class:`~inbox_daemon.errors.RetryableError` is closed
(:attr:`ImapSession.connected` turns false) until :meth:`ImapSession.connect` is called again.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import ssl
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final, TypeVar

import aioimaplib

from inbox_daemon.errors import InboxError, PermanentError, RetryableError

from .settings import ImapSourceSettings

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: The largest UID IMAP allows (RFC 3501: a 32-bit unsigned integer).
MAX_UID: Final = 2**32 - 1

# aioimaplib parses a received chunk recursively, one stack frame per response line, so a
# response of thousands of lines overflows the stack. Bounding the UIDs per command bounds
# the lines per response (a body takes about three lines).
_UIDS_PER_BODY_FETCH: Final = 100
_UIDS_PER_SIZE_FETCH: Final = 250
_UIDS_PER_STORE: Final = 500

#: Response codes (RFC 5530) that say a refusal may pass without anyone acting …
_TRANSIENT_CODES: Final = frozenset({"UNAVAILABLE", "INUSE", "LIMIT", "SERVERBUG"})
#: … and those that say it will not.
_PERMANENT_CODES: Final = frozenset(
    {
        "AUTHENTICATIONFAILED",
        "AUTHORIZATIONFAILED",
        "CANNOT",
        "NONEXISTENT",
        "NOPERM",
        "OVERQUOTA",
        "TRYCREATE",
    }
)
#: IMAP dates name the month in English whatever the locale (RFC 3501 "date-month").
_MONTHS: Final = (
    *("Jan", "Feb", "Mar", "Apr", "May", "Jun"),
    *("Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
)

_FETCH_START_RE: Final = re.compile(rb"^\d+ FETCH \(")
_UID_RE: Final = re.compile(rb"[( ]UID (\d+)")
_SIZE_RE: Final = re.compile(rb"RFC822\.SIZE (\d+)")
_BODY_LITERAL_RE: Final = re.compile(rb"BODY\[\](?:<\d+>)? \{\d+\}$")
_CODE_RE: Final = re.compile(rb"^\[([A-Z-]+)")
_EXISTS_RE: Final = re.compile(rb"^(\d+) EXISTS")
_UIDVALIDITY_RE: Final = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_UIDNEXT_RE: Final = re.compile(rb"\[UIDNEXT (\d+)\]")


@dataclass(frozen=True, slots=True)
class FolderStatus:
    """What SELECT or EXAMINE reported about a folder.

    Attributes:
        folder: the folder's name as configured.
        uidvalidity: UIDs are only comparable while this value stays the same.
        uidnext: the UID the next delivered message will get at least; ``None`` when the
            server did not say.
        exists: how many messages the folder holds.
        read_only: the folder was opened with EXAMINE (nothing can change, not even \\Seen).
    """

    folder: str
    uidvalidity: int
    uidnext: int | None
    exists: int
    read_only: bool


class ImapSession:
    """A connection to the mailbox of one ``kind = "imap"`` source.

    Args:
        settings: the source's validated settings.
    """

    def __init__(self, settings: ImapSourceSettings) -> None:
        self._settings = settings
        self._where = f"imap {settings.host}:{settings.port} (source {settings.name})"
        self._client: aioimaplib.IMAP4 | None = None
        self._lost: asyncio.Future[str] | None = None
        self._status: FolderStatus | None = None
        self._failure: str | None = None

    @property
    def connected(self) -> bool:
        """Whether the session holds a usable connection (false again after a failure)."""
        return self._client is not None and self._lost is not None and not self._lost.done()

    @property
    def selected(self) -> FolderStatus | None:
        """The folder open on this connection, as SELECT or EXAMINE reported it; ``None``
        before the first, after a failure and after a reconnect."""
        return self._status if self.connected else None

    @property
    def capabilities(self) -> frozenset[str]:
        """The server's capabilities as last announced (empty before :meth:`connect`)."""
        if self._client is None:
            return frozenset()
        return frozenset(str(name).upper() for name in self._client.protocol.capabilities)

    async def connect(self) -> None:
        """Open the connection, secure it as configured and authenticate.

        Raises:
            RetryableError: the server could not be reached, closed the connection or did
                not answer within ``timeout_s``.
            PermanentError: the server refused the credentials, does not offer what the
                settings ask for (STARTTLS, XOAUTH2) or presented an untrusted certificate.
        """
        if self._client is not None:
            raise RuntimeError("ImapSession.connect() called while connected")
        self._failure = None
        security = self._settings.security
        context = (
            await asyncio.to_thread(_tls_context, self._settings) if security != "none" else None
        )
        self._lost = asyncio.get_running_loop().create_future()
        self._client = aioimaplib.IMAP4(
            self._settings.host,
            self._settings.port,
            timeout=self._settings.timeout_s,
            conn_lost_cb=self._on_connection_lost,
            ssl_context=context if security == "tls" else None,
        )
        try:
            await self._run("connect", self._client.wait_hello_from_server())
            if context is not None and security == "starttls":
                await self._starttls(context)
            await self._authenticate()
        except BaseException:
            self._abandon()
            raise
        logger.info("connected to %s", self._where, extra={"source": self._settings.name})

    async def select(self, folder: str) -> FolderStatus:
        """Open ``folder``: EXAMINE (read-only) when ``post_ingest`` is ``none``, else SELECT.

        Raises:
            PermanentError: the folder does not exist or may not be opened.
            RetryableError: the connection failed.
        """
        client = self._connected()
        read_only = self._settings.post_ingest == "none"
        verb = "EXAMINE" if read_only else "SELECT"
        self._status = None
        operation = client.examine if read_only else client.select
        response = await self._run(f"{verb} {folder}", operation(_mailbox_arg(folder)))
        if response.result != "OK":
            raise self._refusal(response, f"cannot open folder {folder!r}")
        if read_only:
            # aioimaplib runs EXAMINE as a plain command and leaves its state machine in
            # AUTH, where it rejects UID commands; the server has selected the folder.
            client.protocol.state = aioimaplib.SELECTED
        self._status = _folder_status(folder, response.lines, read_only=read_only)
        if self._status is None:
            raise PermanentError(f"{self._where}: {verb} {folder!r} reported no UIDVALIDITY")
        return self._status

    async def search_uids(self, *, after_uid: int | None, since: date | None) -> list[int]:
        """The UIDs in the open folder above ``after_uid`` and received on or after ``since``.

        Either filter may be ``None``; with both ``None`` every UID is returned.

        Returns:
            The UIDs in ascending order.
        """
        client = self._selected()
        criteria: list[str] = []
        if after_uid is not None:
            if after_uid >= MAX_UID:
                return []
            criteria += ["UID", f"{after_uid + 1}:*"]
        if since is not None:
            criteria += ["SINCE", _imap_date(since)]
        response = await self._run(
            "UID SEARCH", client.uid_search(*(criteria or ["ALL"]), charset=None)
        )
        self._expect_ok(response, "UID SEARCH")
        uids = {
            int(token)
            for line in response.lines[:-1]
            for token in bytes(line).split()
            if token.isdigit()
        }
        # "n:*" always matches the highest UID, even when that is below n.
        floor = after_uid or 0
        return sorted(uid for uid in uids if uid > floor)

    async def fetch_sizes(self, uids: Sequence[int]) -> dict[int, int]:
        """The size in bytes (RFC822.SIZE) of each UID of the open folder that still exists."""
        wanted = set(uids)
        sizes: dict[int, int] = {}
        for chunk in _chunks(uids, _UIDS_PER_SIZE_FETCH):
            lines = await self._uid_fetch(chunk, "(UID RFC822.SIZE)")
            for text, _ in _fetch_records(lines):
                uid, size = _UID_RE.search(text), _SIZE_RE.search(text)
                if uid and size and int(uid.group(1)) in wanted:
                    sizes[int(uid.group(1))] = int(size.group(1))
        return sizes

    async def fetch_bodies(self, uids: Sequence[int], *, max_bytes: int) -> dict[int, bytes]:
        """The raw messages of ``uids`` (those that still exist), at most ``max_bytes`` each.

        Uses ``BODY.PEEK[]<0.max_bytes>``, which never sets \\Seen and returns a message
        smaller than ``max_bytes`` whole; a larger one comes back cut at ``max_bytes``.
        """
        wanted = set(uids)
        bodies: dict[int, bytes] = {}
        for chunk in _chunks(uids, _UIDS_PER_BODY_FETCH):
            lines = await self._uid_fetch(chunk, f"(UID BODY.PEEK[]<0.{max_bytes}>)")
            for text, body in _fetch_records(lines):
                uid = _UID_RE.search(text)
                if uid and body is not None and int(uid.group(1)) in wanted:
                    bodies[int(uid.group(1))] = body
        return bodies

    async def add_flag(self, uids: Sequence[int], flag: str) -> None:
        """Set ``flag`` (``\\Flagged``, say) on ``uids`` of the open, writable folder."""
        client = self._writable()
        for chunk in _chunks(uids, _UIDS_PER_STORE):
            store = client.uid("STORE", _uid_set(chunk), "+FLAGS.SILENT", f"({flag})")
            self._expect_ok(await self._run(f"UID STORE {flag}", store), f"UID STORE {flag}")

    async def move(self, uids: Sequence[int], folder: str) -> None:
        """Move ``uids`` of the open, writable folder into ``folder``.

        Uses MOVE when the server has it, else COPY, \\Deleted and UID EXPUNGE (or a plain
        EXPUNGE without UIDPLUS, which also removes other messages already marked \\Deleted).

        Raises:
            PermanentError: the target folder does not exist or refuses the messages.
        """
        client = self._writable()
        target = _mailbox_arg(folder)
        for chunk in _chunks(uids, _UIDS_PER_STORE):
            uid_set = _uid_set(chunk)
            if "MOVE" in self.capabilities:
                response = await self._run(
                    f"UID MOVE to {folder}", client.uid("MOVE", uid_set, target)
                )
                self._expect_ok(response, f"moving mail to {folder!r}")
                continue
            response = await self._run(f"UID COPY to {folder}", client.uid("COPY", uid_set, target))
            self._expect_ok(response, f"copying mail to {folder!r}")
            await self._expunge(uid_set)

    async def logout(self) -> None:
        """Say LOGOUT and close the connection; never raises (a failure is logged).

        The session may be connected again afterwards.
        """
        if self._client is None:
            return
        try:
            if self._lost is not None and not self._lost.done():
                await self._run("LOGOUT", self._client.logout())
        except InboxError as exc:
            logger.info("%s: LOGOUT failed (%s); closing the connection", self._where, exc)
        finally:
            self._abandon()
            self._failure = None

    async def _starttls(self, context: ssl.SSLContext) -> None:
        protocol = self._connected().protocol
        if "STARTTLS" not in self.capabilities:
            raise PermanentError(f"{self._where} does not offer STARTTLS; use security 'tls'")
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        response = await self._run("STARTTLS", protocol.execute(command))
        if response.result != "OK":
            raise self._refusal(response, "STARTTLS refused")
        loop = asyncio.get_running_loop()
        handshake = loop.start_tls(
            protocol.transport,
            protocol,
            context,
            server_hostname=self._settings.host,
            ssl_handshake_timeout=self._settings.timeout_s,
        )
        protocol.transport = await self._run("TLS handshake", handshake)
        # RFC 3501 6.2.1: what the server announced before TLS must be discarded.
        await self._run("CAPABILITY", protocol.capability())

    async def _authenticate(self) -> None:
        try:
            credential = self._settings.credential()
        except ValueError as exc:
            raise PermanentError(f"{self._where}: {exc}") from exc
        if self._settings.auth == "xoauth2":
            response = await self._xoauth2(credential)
        else:
            if "LOGINDISABLED" in self.capabilities:
                raise PermanentError(
                    f"{self._where} refuses LOGIN without TLS; use 'starttls' or 'tls'"
                )
            login = self._connected().login(_quoted(self._settings.username), credential)
            response = await self._run("LOGIN", login)
        if response.result != "OK":
            raise self._refusal(response, f"login refused for user {self._settings.username!r}")
        if not any(b"CAPABILITY" in bytes(line) for line in response.lines):
            # Servers may announce more once authenticated (MOVE, UIDPLUS).
            await self._run("CAPABILITY", self._connected().protocol.capability())

    async def _xoauth2(self, token: str) -> aioimaplib.Response:
        if "AUTH=XOAUTH2" not in self.capabilities:
            raise PermanentError(f"{self._where} does not offer AUTHENTICATE XOAUTH2")
        protocol = self._connected().protocol
        initial = f"user={self._settings.username}\x01auth=Bearer {token}\x01\x01"
        encoded = base64.b64encode(initial.encode()).decode("ascii")
        command = _SaslInitialResponse(protocol, encoded)
        response = await self._run("AUTHENTICATE XOAUTH2", protocol.execute(command, scrub=encoded))
        if response.result == "OK":
            # aioimaplib's state machine only learns of LOGIN and its own AUTHENTICATE.
            protocol.state = aioimaplib.AUTH
        return response

    async def _uid_fetch(self, uids: Sequence[int], items: str) -> list[Any]:
        fetch = self._selected().uid("FETCH", _uid_set(uids), items)
        # aioimaplib times a FETCH out after timeout_s without data, not in total.
        response = await self._run("UID FETCH", fetch, deadline=False)
        self._expect_ok(response, "UID FETCH")
        lines: list[Any] = response.lines
        return lines

    async def _expunge(self, uid_set: str) -> None:
        client = self._writable()
        store = client.uid("STORE", uid_set, "+FLAGS.SILENT", r"(\Deleted)")
        self._expect_ok(await self._run("UID STORE \\Deleted", store), "marking moved mail deleted")
        if "UIDPLUS" in self.capabilities:
            expunge = client.uid("EXPUNGE", uid_set)
        else:
            expunge = client.expunge()
        self._expect_ok(await self._run("EXPUNGE", expunge), "expunging moved mail")

    async def _run(self, what: str, operation: Awaitable[_T], *, deadline: bool = True) -> _T:
        """Await one aioimaplib call, racing it against its deadline and a lost connection."""
        lost = self._lost
        assert lost is not None  # noqa: S101 - set by connect() before any call
        task = asyncio.ensure_future(operation)
        timeout_s = self._settings.timeout_s if deadline else None
        try:
            done, _ = await asyncio.wait(
                (task, lost), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not task.done():
                task.cancel()
                # The conversation is out of step now; it must never be reused.
                self._abandon()
        if task in done:
            return self._outcome(task, what)
        if lost in done:
            raise self._failed(f"connection closed during {what} ({lost.result()})")
        raise self._failed(f"no answer to {what} within {timeout_s}s")

    def _outcome(self, task: asyncio.Future[_T], what: str) -> _T:
        try:
            return task.result()
        except ssl.SSLCertVerificationError as exc:
            self._abandon()
            raise PermanentError(
                f"{self._where}: certificate not trusted: {exc.verify_message}"
            ) from exc
        except ssl.SSLError as exc:
            self._abandon()
            raise PermanentError(
                f"{self._where}: TLS failed ({exc.reason}); check port and security"
            ) from exc
        except (TimeoutError, aioimaplib.CommandTimeout) as exc:
            timeout_s = self._settings.timeout_s
            raise self._failed(f"no answer to {what} within {timeout_s}s") from exc
        except (OSError, aioimaplib.AioImapException) as exc:
            raise self._failed(f"{what} failed: {str(exc) or type(exc).__name__}") from exc

    def _failed(self, reason: str) -> RetryableError:
        """Close the connection after a failure; later calls say why until connect() again."""
        self._abandon()
        self._failure = reason
        return RetryableError(f"{self._where}: {reason}")

    def _expect_ok(self, response: aioimaplib.Response, what: str) -> None:
        if response.result != "OK":
            raise self._refusal(response, f"{what} failed", permanent=response.result == "BAD")

    def _refusal(
        self, response: aioimaplib.Response, what: str, *, permanent: bool = True
    ) -> InboxError:
        """The error for a NO or BAD answer; codes such as [UNAVAILABLE] make it retryable."""
        text = _response_text(response)
        code = _CODE_RE.match(text.encode())
        message = f"{self._where}: {what}: {response.result} {text}"
        name = code.group(1).decode() if code else ""
        if name in _TRANSIENT_CODES:
            return RetryableError(message)
        if name in _PERMANENT_CODES or permanent:
            return PermanentError(message)
        return RetryableError(message)

    def _connected(self) -> aioimaplib.IMAP4:
        if self._client is None and self._failure is not None:
            raise RetryableError(f"{self._where}: not connected since: {self._failure}")
        if self._client is None:
            raise RuntimeError(f"{self._where}: not connected; call connect() first")
        return self._client

    def _selected(self) -> aioimaplib.IMAP4:
        client = self._connected()
        if self._status is None:
            raise RuntimeError(f"{self._where}: no folder selected")
        return client

    def _writable(self) -> aioimaplib.IMAP4:
        client = self._selected()
        if self._status is not None and self._status.read_only:
            raise RuntimeError(f"{self._where}: folder opened read-only (post_ingest = 'none')")
        return client

    def _on_connection_lost(self, exc: Exception | None) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(str(exc) if exc else "closed by the server")

    def _abandon(self) -> None:
        """Drop the connection at once, with every task aioimaplib started for it."""
        client, self._client, self._status = self._client, None, None
        if client is None:
            return
        client._client_task.cancel()  # still connecting after a timeout
        for task in (*client.protocol.tasks, *client.tasks):
            task.cancel()
        if client.protocol.transport is not None:
            client.protocol.transport.abort()


class _SaslInitialResponse(aioimaplib.Command):  # type: ignore[misc]
    """``AUTHENTICATE XOAUTH2 <initial response>`` that also handles a refusal.

    A refused XOAUTH2 token comes back as a challenge carrying an error report, which the
    client must answer with an empty line before the server sends its tagged NO. aioimaplib
    records the challenge and calls :meth:`flush`; without this answer the command hangs.
    """

    def __init__(self, protocol: aioimaplib.IMAP4ClientProtocol, initial_response: str) -> None:
        super().__init__(
            "AUTHENTICATE", protocol.new_tag(), "XOAUTH2", initial_response, loop=protocol.loop
        )
        self._protocol = protocol
        self._challenged = False

    def append_to_resp(self, line: bytes, result: str = "Pending") -> None:
        super().append_to_resp(line, result)
        if result == "Pending" and bytes(line).startswith(b"+"):
            self._challenged = True

    def flush(self) -> None:
        if self._challenged:
            self._challenged = False
            self._protocol.transport.write(b"\r\n")


def _tls_context(settings: ImapSourceSettings) -> ssl.SSLContext:
    """The client TLS context (reads CA files: run it off the event loop)."""
    cafile = str(settings.ca_file) if settings.ca_file else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    if not settings.validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _folder_status(folder: str, lines: Sequence[Any], *, read_only: bool) -> FolderStatus | None:
    text = [bytes(line) for line in lines]
    uidvalidity = _first_int(_UIDVALIDITY_RE, text)
    if uidvalidity is None:
        return None
    exists = _first_int(_EXISTS_RE, text)
    return FolderStatus(folder, uidvalidity, _first_int(_UIDNEXT_RE, text), exists or 0, read_only)


def _first_int(pattern: re.Pattern[bytes], lines: Sequence[bytes]) -> int | None:
    for line in lines:
        match = pattern.search(line)
        if match:
            return int(match.group(1))
    return None


def _fetch_records(lines: Sequence[Any]) -> Iterator[tuple[bytes, bytes | None]]:
    """Each FETCH response as (its text outside literals, its BODY[] literal or ``None``)."""
    text: bytes | None = None
    body: bytes | None = None
    body_follows = False
    for line in lines[:-1]:  # the last line is the tagged completion
        if isinstance(line, bytearray):  # aioimaplib hands literals over as bytearrays
            body = bytes(line) if body_follows else body
            body_follows = False
            continue
        if _FETCH_START_RE.match(line):
            if text is not None:
                yield text, body
            text, body = line, None
        elif text is not None:
            text += line
        body_follows = _BODY_LITERAL_RE.search(line) is not None
    if text is not None:
        yield text, body


def _response_text(response: aioimaplib.Response) -> str:
    last = bytes(response.lines[-1]) if response.lines else b""
    return last.decode("utf-8", "replace")[:300]


def _chunks(uids: Sequence[int], size: int) -> Iterator[list[int]]:
    ordered = sorted(set(uids))
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def _uid_set(uids: Sequence[int]) -> str:
    """``[1, 2, 3, 7, 9, 10]`` as ``1:3,7,9:10``."""
    ranges: list[str] = []
    ordered = sorted(set(uids))
    start = previous = ordered[0]
    for uid in [*ordered[1:], None]:
        if uid is not None and uid == previous + 1:
            previous = uid
            continue
        ranges.append(str(start) if start == previous else f"{start}:{previous}")
        if uid is not None:
            start = previous = uid
    return ",".join(ranges)


def _imap_date(day: date) -> str:
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


def _mailbox_arg(name: str) -> str:
    """A folder name as an IMAP argument: modified UTF-7 (RFC 3501 5.1.3), quoted."""
    return _quoted(_modified_utf7(name))


def _quoted(text: str) -> str:
    """``text`` as an IMAP quoted string (RFC 3501 section 4.3)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _modified_utf7(name: str) -> str:
    parts: list[str] = []
    pending: list[str] = []
    for char in [*name, None]:
        if char is not None and not 0x20 <= ord(char) <= 0x7E:
            pending.append(char)
            continue
        if pending:
            utf16 = "".join(pending).encode("utf-16-be")
            parts.append(
                "&" + base64.b64encode(utf16).decode("ascii").rstrip("=").replace("/", ",") + "-"
            )
            pending.clear()
        if char is not None:
            parts.append("&-" if char == "&" else char)
    return "".join(parts)
