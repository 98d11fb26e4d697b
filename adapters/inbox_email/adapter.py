"""The e-mail source: IMAP folders in, SMTP acknowledgments out."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from inbox_daemon.errors import MessageError
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


class EmailAdapter:
    """A :class:`~inbox_daemon.interfaces.SourceAdapter` for one IMAP mailbox."""

    def __init__(self, settings: ImapSourceSettings) -> None:
        self.settings = settings
        self._session: ImapSession | None = None

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
        session = self._require_session()
        positions = dict((cursor or {}).get("folders", {}))
        since = (datetime.now(UTC) - timedelta(days=self.settings.backfill_days)).date()
        messages: list[InboundMessage] = []
        failures: list[FailedMessage] = []
        more = False
        for folder in self.settings.folders:
            remaining = limit - len(messages) - len(failures)
            if remaining <= 0:
                more = True
                break
            state = positions.get(folder)
            batch = await fetch_folder(
                session,
                folder,
                FolderCursor(**state) if state else None,
                limit=remaining,
                since=since,
                max_message_bytes=self.settings.max_message_bytes,
            )
            for mail in batch.mails:
                _convert(mail, messages, failures)
            positions[folder] = {
                "uidvalidity": batch.cursor.uidvalidity,
                "last_uid": batch.cursor.last_uid,
            }
            more = more or batch.more
        return Batch(tuple(messages), {"folders": positions}, tuple(failures), more)

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

    def _require_session(self) -> ImapSession:
        if self._session is None:
            raise RuntimeError("fetch() before open()")
        return self._session


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
        text=visible_text(clean_text(own_words)),
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
