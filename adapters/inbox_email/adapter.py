"""The e-mail source: IMAP folders in, SMTP acknowledgments out."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

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
from .settings import ImapSourceSettings
from .smtp import send_reply

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _FolderResult:
    mails: tuple[FetchedMail, ...]
    cursor: FolderCursor
    more: bool
    poisoned: tuple[FailedMessage, ...] = ()


class EmailAdapter:
    """A :class:`~inbox_daemon.interfaces.SourceAdapter` for one IMAP mailbox."""

    def __init__(self, settings: ImapSourceSettings) -> None:
        self.settings = settings
        self._session: ImapSession | None = None
        # Consecutive failed fetches per (folder, position): kept across reconnects.
        self._strikes: dict[tuple[str, FolderCursor | None], int] = {}

    async def open(self) -> None:
        """Connect and log in to the IMAP server."""
        session = ImapSession(self.settings)
        await session.connect()
        self._session = session

    async def close(self) -> None:
        """Log out; safe when not connected."""
        session, self._session = self._session, None
        if session is not None:
            await session.logout()

    async def fetch(self, cursor: Cursor | None, limit: int) -> Batch:
        """Up to ``limit`` new mails over the configured folders, in folder then UID order."""
        session = await self._live_session()
        positions = dict((cursor or {}).get("folders", {}))
        messages: list[InboundMessage] = []
        failures: list[FailedMessage] = []
        more = False
        for folder in self.settings.folders:
            remaining = limit - len(messages) - len(failures)
            if remaining <= 0:
                more = True
                break
            state = positions.get(folder)
            position = FolderCursor.from_json(state) if state else None
            batch = await self._fetch_folder(session, folder, position, remaining)
            for mail in batch.mails:
                _convert(mail, messages, failures)
            failures.extend(batch.poisoned)
            positions[folder] = batch.cursor.to_json()
            more = more or batch.more
            if batch.poisoned:  # the connection may not have survived the poison message
                more = True
                break
        return Batch(tuple(messages), {"folders": positions}, tuple(failures), more)

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
            )
        except RetryableError:
            self._strikes[key] = strikes + 1
            raise
        self._strikes.pop(key, None)
        return _FolderResult(batch.mails, batch.cursor, batch.more)

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
        """Send an acknowledgment through the configured SMTP relay."""
        if self.settings.smtp is None:
            return SendResult.failed(f"source {self.settings.name!r} has no [sources.smtp] relay")
        return await send_reply(reply, self.settings.smtp)

    def own_addresses(self) -> frozenset[str]:
        """The mailbox's login and the relay's From address."""
        own = {self.settings.username.lower()}
        if self.settings.smtp is not None:
            own.add(self.settings.smtp.from_address.lower())
        return frozenset(address for address in own if "@" in address)

    def can_send(self) -> bool:
        """True when an SMTP relay is configured."""
        return self.settings.smtp is not None


def _convert(
    mail: FetchedMail, messages: list[InboundMessage], failures: list[FailedMessage]
) -> None:
    raw_ref = f"{mail.folder};uidvalidity={mail.uidvalidity};uid={mail.uid}"
    try:
        if not mail.raw.strip():
            raise MessageError("empty message (0 bytes of content)")
        messages.append(
            to_message(
                parse_mail(mail.raw),
                mail.raw,
                raw_ref,
                truncated=mail.truncated,
                size_bytes=mail.size_bytes,
            )
        )
    except MessageError as exc:
        logger.warning(
            "mail dead-lettered: %s", exc, extra={"stage": "normalise", "raw_ref": raw_ref}
        )
        failures.append(FailedMessage(f"imap:{raw_ref}", raw_ref, str(exc), mail.size_bytes))


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
