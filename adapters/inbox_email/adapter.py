"""The e-mail source: IMAP folders in, SMTP acknowledgments out."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from inbox_daemon.errors import MessageError, RetryableError
from inbox_daemon.interfaces import (
    Batch,
    Cursor,
    FailedMessage,
    Identity,
    InboundMessage,
    OutboundReply,
    SendResult,
)
from inbox_daemon.pipeline.normalise import clean_text, visible_text

from .html_quotes import remove_html_quotes
from .html_text import html_to_text
from .imap import ImapSession
from .mailbox import FetchedMail, FolderCursor, fetch_folder
from .mime import Address, ParsedMail, body_text, parse_mail
from .parse_pool import PARSE_POOL
from .settings import ImapSourceSettings
from .smtp import RelaySession, send_reply

logger = logging.getLogger(__name__)

#: How many batches the adapter reads ahead of the daemon within a poll.
_READ_AHEAD_BATCHES: Final = 2


@dataclass(frozen=True, slots=True)
class _FolderResult:
    mails: tuple[FetchedMail, ...]
    cursor: FolderCursor
    more: bool
    poisoned: tuple[FailedMessage, ...] = ()
    # What the search found past ``cursor``; None when no search of this poll says.
    pending: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class _Read:
    """What one fetch read from the folders, before parsing.

    Attributes:
        cursor: the cursor the read started from.
        limit: the most mails it could read.
        mails: the mails, in folder then UID order.
        poisoned: mails dead-lettered because fetching them kept failing.
        next_cursor: the position after them.
        more: the folders hold more past ``next_cursor``.
        parsing: ``mails`` being parsed in the worker (see :mod:`.parse_pool`), or ``None``
            when they are parsed here (a small batch).
    """

    cursor: Cursor | None
    limit: int
    mails: tuple[FetchedMail, ...]
    poisoned: tuple[FailedMessage, ...]
    next_cursor: Cursor
    more: bool
    parsing: asyncio.Future[list[InboundMessage | FailedMessage]] | None = None

    def follows(self, cursor: Cursor | None, limit: int) -> bool:
        """Whether this read is the one a fetch from ``cursor`` would make."""
        return cursor == self.cursor and limit == self.limit


class EmailAdapter:
    """A :class:`~inbox_daemon.interfaces.SourceAdapter` for one IMAP mailbox."""

    def __init__(self, settings: ImapSourceSettings) -> None:
        self.settings = settings
        self._session: ImapSession | None = None
        # Consecutive failed fetches per (folder, position): kept across reconnects.
        self._strikes: dict[tuple[str, FolderCursor | None], int] = {}
        # Per folder, the UIDs the poll's search found and no batch has read yet, with the
        # cursor they follow; a poll ends with the first batch that says no more.
        self._pending: dict[str, tuple[FolderCursor, tuple[int, ...]]] = {}
        self._relay: RelaySession | None = None
        self._parses_in_pool = False
        # Reads of the batches after the last one returned, one after the other on the
        # connection, each handed to the parsing worker as it arrives; the first is for a
        # fetch from ``_ahead_from`` (the cursor and limit the next fetch should ask with).
        self._ahead: deque[asyncio.Future[_Read | None]] = deque()
        self._ahead_from: tuple[Cursor, int] | None = None

    async def open(self) -> None:
        """Connect and log in to the IMAP server."""
        session = ImapSession(self.settings)
        await session.connect()
        self._session = session
        if not self._parses_in_pool:
            self._parses_in_pool = True
            PARSE_POOL.acquire()

    async def close(self) -> None:
        """Log out; safe when not connected."""
        self._drop_ahead()
        self._pending.clear()
        session, self._session = self._session, None
        if session is not None:
            await session.logout()
        if self._parses_in_pool:
            self._parses_in_pool = False
            await PARSE_POOL.release()

    async def fetch(self, cursor: Cursor | None, limit: int) -> Batch:
        """Up to ``limit`` new mails over the configured folders, in folder then UID order.

        The first fetch of a poll searches each folder; the fetches that follow it (while
        the batch before said ``more``) read on from what that search found.
        """
        read = await self._read_ahead_for(cursor, limit)
        if read is None:
            read = self._parsing(await self._read(cursor, limit))
        try:
            self._read_on(read)
            converted = await self._converted(read)
        except BaseException:
            _drop(read)
            self._drop_ahead()
            self._pending.clear()
            raise
        messages, failures = _sorted_out(converted)
        return Batch(tuple(messages), read.next_cursor, (*failures, *read.poisoned), read.more)

    async def _read_ahead_for(self, cursor: Cursor | None, limit: int) -> _Read | None:
        """The read made ahead for a fetch from ``cursor`` (its error is this fetch's), or
        ``None`` when there is none for it (the batch before was not stored, say)."""
        if self._ahead_from != (cursor, limit) or not self._ahead:
            self._drop_ahead()
            return None
        first = self._ahead.popleft()
        try:
            return await first
        except BaseException:
            self._drop_ahead()
            raise

    def _read_on(self, read: _Read) -> None:
        """Keep :data:`_READ_AHEAD_BATCHES` reads going after ``read``, in the background.

        They run while the daemon triages and stores (the loop is free during its database
        calls), and the worker parses each as it arrives: while the daemon triages one
        batch, the next is being parsed. A read that stalls holds up only the fetch that
        needs it, never the batch in hand. Not done when mail is flagged or moved after
        ingest: those commands share the connection.
        """
        if not read.more or self.settings.post_ingest != "none":
            self._drop_ahead()
            return
        self._ahead_from = (read.next_cursor, read.limit)
        while len(self._ahead) < _READ_AHEAD_BATCHES:
            previous = self._ahead[-1] if self._ahead else None
            self._ahead.append(asyncio.ensure_future(self._read_after(previous, read)))

    async def _read_after(
        self, previous: asyncio.Future[_Read | None] | None, read: _Read
    ) -> _Read | None:
        """The read that follows ``previous`` (or ``read``), once that one is done."""
        before = await previous if previous is not None else read
        if before is None or not before.more:
            return None
        return self._parsing(await self._read(before.next_cursor, before.limit))

    def _drop_ahead(self) -> None:
        """Forget the reads ahead (stopped, their parsing and their errors dropped)."""
        self._ahead_from = None
        while self._ahead:
            task = self._ahead.popleft()
            task.cancel()  # a read stopped mid-command costs the connection: rare
            if task.done() and not task.cancelled() and task.exception() is None:
                _drop(task.result())

    async def _converted(self, read: _Read) -> list[InboundMessage | FailedMessage]:
        if read.parsing is None:
            return convert_mails(read.mails)
        return await PARSE_POOL.result(read.parsing)

    def _parsing(self, read: _Read) -> _Read:
        """``read`` with its mails handed to the worker, when there are enough of them."""
        parsing = PARSE_POOL.submit(convert_mails, read.mails, mails=len(read.mails))
        return dataclasses.replace(read, parsing=parsing) if parsing is not None else read

    async def _read(self, cursor: Cursor | None, limit: int) -> _Read:
        try:
            read = await self._read_folders(cursor, limit)
        except BaseException:
            self._pending.clear()
            raise
        if not read.more:
            self._pending.clear()  # the poll is over: the next one searches again
        return read

    async def _read_folders(self, cursor: Cursor | None, limit: int) -> _Read:
        session = await self._live_session()
        positions = dict((cursor or {}).get("folders", {}))
        mails: list[FetchedMail] = []
        poisoned: list[FailedMessage] = []
        more = False
        for folder in self.settings.folders:
            remaining = limit - len(mails) - len(poisoned)
            if remaining <= 0:
                more = True
                break
            state = positions.get(folder)
            position = FolderCursor.from_json(state) if state else None
            batch = await self._fetch_folder(session, folder, position, remaining)
            mails.extend(batch.mails)
            poisoned.extend(batch.poisoned)
            positions[folder] = batch.cursor.to_json()
            if batch.pending is None:
                self._pending.pop(folder, None)
            else:
                self._pending[folder] = (batch.cursor, batch.pending)
            more = more or batch.more
            if batch.poisoned:  # the connection may not have survived the poison message
                more = True
                break
        next_cursor = {"folders": positions}
        return _Read(cursor, limit, tuple(mails), tuple(poisoned), next_cursor, more)

    async def _fetch_folder(
        self, session: ImapSession, folder: str, position: FolderCursor | None, limit: int
    ) -> _FolderResult:
        # A folder that fails max_attempts times from the same position is read one mail at
        # a time, so the one message that breaks the fetch is found and dead-lettered.
        key = (folder, position)
        strikes = self._strikes.get(key, 0)
        if strikes >= self.settings.max_attempts:
            return await self._isolate(session, folder, position)
        try:
            batch = await fetch_folder(
                session,
                folder,
                position,
                limit=limit,
                since=self._since(),
                max_message_bytes=self.settings.max_message_bytes,
                known=self._known(folder, position),
            )
        except RetryableError:
            self._strikes[key] = strikes + 1
            raise
        self._strikes.pop(key, None)
        return _FolderResult(batch.mails, batch.cursor, batch.more, pending=batch.pending)

    def _known(self, folder: str, position: FolderCursor | None) -> tuple[int, ...] | None:
        """The UIDs still to read after ``position`` as this poll's search found them, or
        ``None`` when the folder must be searched (a new poll, or the cursor moved
        elsewhere: a batch that did not commit, another replica)."""
        kept = self._pending.get(folder)
        return kept[1] if kept is not None and kept[0] == position else None

    async def _isolate(
        self, session: ImapSession, folder: str, position: FolderCursor | None
    ) -> _FolderResult:
        status = await session.select(folder)
        resume = position is not None and position.uidvalidity == status.uidvalidity
        after_uid = position.last_uid if resume and position is not None else None
        pending = await session.search_uids(
            after_uid=after_uid, since=None if resume else self._since()
        )
        if not pending:
            self._strikes.pop((folder, position), None)
            return _FolderResult((), position or FolderCursor(status.uidvalidity, 0), False)
        try:
            batch = await fetch_folder(
                session,
                folder,
                position,
                limit=1,
                since=self._since(),
                max_message_bytes=self.settings.max_message_bytes,
            )
        except RetryableError as exc:
            return self._poisoned(folder, status.uidvalidity, pending[0], exc)
        self._strikes.pop((folder, position), None)
        return _FolderResult(batch.mails, batch.cursor, True)

    def _poisoned(self, folder: str, uidvalidity: int, uid: int, exc: Exception) -> _FolderResult:
        raw_ref = f"{folder};uidvalidity={uidvalidity};uid={uid}"
        reason = f"fetch failed {self.settings.max_attempts + 1} times: {exc}"
        logger.warning(
            "mail dead-lettered: %s", reason, extra={"stage": "fetch", "raw_ref": raw_ref}
        )
        failure = FailedMessage(f"imap:{raw_ref}", raw_ref, reason, 0)
        return _FolderResult((), FolderCursor(uidvalidity, uid), True, (failure,))

    def _since(self) -> date:
        return (datetime.now(UTC) - timedelta(days=self.settings.backfill_days)).date()

    async def _live_session(self) -> ImapSession:
        # A session closes itself on a connection failure; reconnect before the next fetch.
        if self._session is None or not self._session.connected:
            await self.open()
        assert self._session is not None  # noqa: S101 - set by open()
        return self._session

    async def after_commit(self, batch: Batch) -> None:
        """Flag or move the stored mails when ``post_ingest`` says so."""
        action = self.settings.post_ingest
        if action == "none" or self._session is None:
            return
        for folder, uids in _uids_by_folder(batch).items():
            await self._session.select(folder)
            if action == "flag":
                await self._session.add_flag(uids, "\\Flagged")
            else:
                await self._session.move(uids, action.removeprefix("move:"))

    async def send(self, reply: OutboundReply) -> SendResult:
        """Send an acknowledgment through the configured SMTP relay (over the connection of
        the delivery pass, when one is open)."""
        if self.settings.smtp is None:
            return SendResult.failed(f"source {self.settings.name!r} has no [sources.smtp] relay")
        if self._relay is not None:
            return await self._relay.send(reply)
        return await send_reply(reply, self.settings.smtp)

    @contextlib.asynccontextmanager
    async def delivery_pass(self) -> AsyncIterator[None]:
        """Send the replies of one outbox pass over one relay connection, opened by the
        first of them and closed (QUIT) on exit."""
        if self.settings.smtp is None or self._relay is not None:
            yield  # nothing to send through, or an enclosing pass owns the connection
            return
        relay = self._relay = RelaySession(self.settings.smtp)
        try:
            yield
        finally:
            self._relay = None
            await relay.close()

    def own_addresses(self) -> frozenset[str]:
        """The mailbox's login and the relay's From address."""
        own = {self.settings.username.lower()}
        if self.settings.smtp is not None:
            own.add(self.settings.smtp.from_address.lower())
        return frozenset(address for address in own if "@" in address)

    def can_send(self) -> bool:
        """True when an SMTP relay is configured."""
        return self.settings.smtp is not None


def _drop(read: _Read | None) -> None:
    """Forget a read nobody will use (the worker's result, if any, is discarded)."""
    if read is not None and read.parsing is not None:
        read.parsing.cancel()


def convert_mails(mails: Sequence[FetchedMail]) -> list[InboundMessage | FailedMessage]:
    """Each mail as a normalised message, or as the dead letter it must become.

    Pure and picklable both ways: it runs in the parsing worker (see :mod:`.parse_pool`).
    """
    return [_converted(mail) for mail in mails]


def _converted(mail: FetchedMail) -> InboundMessage | FailedMessage:
    raw_ref = f"{mail.folder};uidvalidity={mail.uidvalidity};uid={mail.uid}"
    try:
        if not mail.raw.strip():
            raise MessageError("empty message (0 bytes of content)")
        return to_message(
            parse_mail(mail.raw),
            mail.raw,
            raw_ref,
            truncated=mail.truncated,
            size_bytes=mail.size_bytes,
        )
    except MessageError as exc:
        return FailedMessage(f"imap:{raw_ref}", raw_ref, str(exc), mail.size_bytes)


def _sorted_out(
    results: Sequence[InboundMessage | FailedMessage],
) -> tuple[list[InboundMessage], list[FailedMessage]]:
    """The messages and the dead letters (logged here, in the daemon's process)."""
    messages: list[InboundMessage] = []
    failures: list[FailedMessage] = []
    for result in results:
        if isinstance(result, InboundMessage):
            messages.append(result)
            continue
        logger.warning(
            "mail dead-lettered: %s",
            result.error,
            extra={"stage": "normalise", "raw_ref": result.raw_ref},
        )
        failures.append(result)
    return messages, failures


def to_message(
    parsed: ParsedMail,
    raw: bytes,
    raw_ref: str,
    *,
    truncated: bool = False,
    size_bytes: int | None = None,
) -> InboundMessage:
    """The normalised message of a parsed mail (``raw`` gives an id to mail without Message-ID)."""
    external_id = parsed.message_id or f"sha256:{hashlib.sha256(raw).hexdigest()}"
    full_text = clean_text(body_text(parsed))
    own_words = (
        parsed.text if parsed.text.strip() else html_to_text(remove_html_quotes(parsed.html))
    )
    notes = list(parsed.defects)
    if truncated:
        notes.append(f"message of {size_bytes} bytes truncated to its first {len(raw)} bytes")
    return InboundMessage(
        external_id=external_id,
        channel="email",
        received_at=_received_at(parsed.date),
        sender=_identity(parsed.from_ or parsed.sender),
        recipients=tuple(_identity(address) for address in (*parsed.to, *parsed.cc)),
        reply_to=_identity(parsed.reply_to[0]) if parsed.reply_to else None,
        subject=parsed.subject,
        text=visible_text(own_words),
        full_text=full_text,
        thread_key=_thread_key(parsed, external_id),
        in_reply_to=parsed.in_reply_to,
        references=parsed.references,
        headers=_kept_headers(parsed.headers),
        attachments=parsed.attachments,
        raw_ref=raw_ref,
        notes=tuple(notes),
    )


def _identity(address: Address | None) -> Identity:
    if address is None or not address.address:
        return Identity("email", "", "", address.name if address else "")
    return Identity("email", address.address.lower(), address.address, address.name)


def _received_at(date: datetime | None) -> datetime:
    # A Date header from the future (a wrong clock, or spam) must not make mail look new.
    now = datetime.now(UTC)
    return min(date, now) if date is not None else now


def _thread_key(parsed: ParsedMail, external_id: str) -> str:
    # The first Reference is the thread's root; a client that trims References still keeps it.
    if parsed.references:
        return parsed.references[0]
    return parsed.in_reply_to or external_id


_KEPT_HEADERS = (
    "message-id",
    "date",
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "subject",
    "in-reply-to",
    "references",
    "auto-submitted",
    "precedence",
    "list-id",
    "list-unsubscribe",
    "return-path",
    "x-loop",
    "x-autoreply",
    "x-autorespond",
    "x-auto-response-suppress",
    "content-type",
    "authentication-results",
    "x-mailer",
    "user-agent",
)


def _kept_headers(headers: Mapping[str, str]) -> dict[str, Any]:
    # The headers triage and reply policy read, and what a person checks; not trace noise.
    return {name: headers[name] for name in _KEPT_HEADERS if name in headers}


def _uids_by_folder(batch: Batch) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for message in batch.messages:
        folder, _, rest = message.raw_ref.partition(";uidvalidity=")
        grouped.setdefault(folder, []).append(int(rest.rpartition(";uid=")[2]))
    return grouped
