"""Deliver acknowledgments through the operator's SMTP relay (aiosmtplib).

:func:`build_reply` turns an :class:`~inbox_daemon.interfaces.OutboundReply` into a MIME message
(``email`` with ``policy.default``); :func:`send_reply` hands it to the relay and reports what
happened as a :class:`~inbox_daemon.interfaces.SendResult`, never by raising. The Message-ID is
derived from the outbox row, so a reply sent again after a crash is recognisably the same mail.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import ssl
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email import errors as email_errors
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Final

import aiosmtplib

from inbox_daemon.interfaces import OutboundReply, SendResult

from .settings import SmtpSettings

logger = logging.getLogger(__name__)

#: Headers a reply's ``headers`` may not set: they carry the addressing, the identity of the
#: mail (which must stay derived from the outbox row) and the MIME structure.
RESERVED_HEADERS: Final = frozenset(
    {
        "from",
        "sender",
        "to",
        "cc",
        "bcc",
        "message-id",
        "date",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)

_KEY_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_MSG_ID = re.compile(r"^[^\s<>@]+@[^\s<>@]+$")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 ftext: printable ASCII but ":"


def reply_message_id(reply: OutboundReply, settings: SmtpSettings) -> str:
    """The Message-ID (with angle brackets) of the mail for ``reply``.

    It depends only on the idempotency key and the domain of ``from_address``, so every
    attempt at the same outbox row carries the same id and recipients' clients can drop the
    duplicate a resend after a crash would otherwise be.
    """
    key = reply.idempotency_key
    if not _KEY_SAFE.fullmatch(key):
        key = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"<ack-{key}@{_id_domain(settings.from_address)}>"


def _id_domain(address: str) -> str:
    # Lower case, as the e-mail normaliser compares ids (an answer's In-Reply-To must match
    # the external id we return); ASCII, as a Message-ID header cannot carry anything else.
    domain = address.rpartition("@")[2].strip().lower()
    try:
        return domain.encode("idna").decode("ascii") if domain else "localhost"
    except UnicodeError:
        return "localhost"


def envelope_recipient(handle: str) -> str:
    """The address ``handle`` as an SMTP envelope recipient.

    Raises:
        ValueError: ``handle`` is empty, the null address ``<>``, or not an ``addr-spec``.
    """
    address = handle.strip()
    if not address or address == "<>":
        raise ValueError("the recipient is empty or the null address; a bounce is never answered")
    try:
        parsed = Address(addr_spec=address)
    except (ValueError, IndexError, email_errors.HeaderParseError) as exc:
        raise ValueError(f"the recipient is not an e-mail address: {exc}") from exc
    if not parsed.username or not parsed.domain:
        raise ValueError("the recipient is not an e-mail address: missing local part or domain")
    return parsed.addr_spec


def build_reply(reply: OutboundReply, settings: SmtpSettings, *, message_id: str) -> EmailMessage:
    """The MIME message for ``reply``: text/plain UTF-8, plus an HTML alternative when set.

    Args:
        reply: what to send and to whom.
        settings: the relay; ``from_address`` and ``from_name`` make the ``From`` header.
        message_id: the ``Message-ID`` to carry, with angle brackets (see
            :func:`reply_message_id`).

    Raises:
        ValueError: the recipient is not an address, a header value is malformed (a line
            break, say), or ``reply.headers`` names a reserved header.
    """
    message = EmailMessage(policy=policy.default)
    message["From"] = Address(_one_line(settings.from_name), addr_spec=settings.from_address)
    recipient = envelope_recipient(reply.recipient.handle)
    message["To"] = Address(_one_line(reply.recipient.display_name), addr_spec=recipient)
    message["Subject"] = _one_line(reply.subject)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = message_id
    _set_thread_headers(message, reply)
    # RFC 3834: an automatic response says so, and loops stop at the next responder.
    message["Auto-Submitted"] = "auto-replied"
    # Exchange and Outlook honour this rather than Auto-Submitted: no out-of-office back.
    message["X-Auto-Response-Suppress"] = "All"
    # No "Precedence": RFC 3834 (3.1.8) only allows it (MAY) for responders older than the
    # RFC and says it is no substitute for Auto-Submitted; providers such as Gmail file mail
    # with "Precedence: bulk" as bulk, where a person would not see the acknowledgment.
    # Auto-Submitted, X-Auto-Response-Suppress and the X-Loop header stop loops instead.
    _set_extra_headers(message, reply.headers)
    _set_body(message, reply)
    return message


async def send_reply(reply: OutboundReply, settings: SmtpSettings) -> SendResult:
    """Deliver ``reply`` through the relay in ``settings`` over a connection of its own.

    The outcome is returned, not raised: see :meth:`RelaySession.send`.
    """
    session = RelaySession(settings)
    try:
        return await session.send(reply)
    finally:
        await session.close()


class RelaySession:
    """One connection to the relay, opened for the first reply and kept for the next ones.

    Connecting, greeting, securing and logging in cost more than a reply's own transaction;
    one outbox pass sends all its replies through one session. Each reply is still a whole
    SMTP transaction with its own outcome. A connection the relay closed while idle is
    opened again before the next reply; one that fails during a reply is dropped, and that
    reply's outcome says so (``retry``), so nothing is sent twice by this class.

    Args:
        settings: the relay.
    """

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings
        self._relay = f"SMTP relay {settings.host}:{settings.port}"
        self._client: aiosmtplib.SMTP | None = None
        self._replies_on_connection = 0

    async def send(self, reply: OutboundReply) -> SendResult:
        """Deliver ``reply``; the outcome is returned, not raised.

        A refused recipient or message (5xx), refused credentials, an untrusted certificate
        or a missing relay feature is ``failed``; a temporary refusal (4xx), a refused,
        reset or timed-out connection is ``retry``. Every SMTP step is bounded by
        ``settings.timeout_s``.
        """
        message_id = reply_message_id(reply, self._settings)
        try:
            if reply.channel != "email":
                raise ValueError(f"not an e-mail reply (channel {reply.channel!r})")
            message = build_reply(reply, self._settings, message_id=message_id)
            recipient = envelope_recipient(reply.recipient.handle)
        except ValueError as exc:
            return _logged(reply, SendResult.failed(f"cannot build the reply: {exc}"))
        try:
            password = self._settings.password()
        except ValueError as exc:
            # The secret's variable or file went missing since load: an operator can restore it.
            return _logged(reply, SendResult.retry(f"relay password unavailable: {exc}"))
        try:
            await self._transmit(message, recipient, password)
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as exc:
            if not _connection_survives(exc):
                await self._drop()
            return _logged(reply, _outcome(exc, self._relay, password))
        return _logged(reply, SendResult.sent(message_id.strip("<>")))

    async def close(self) -> None:
        """Say QUIT and close the connection, if one is open; never raises."""
        client, self._client = self._client, None
        if client is None or not client.is_connected:
            return
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            logger.info("%s: QUIT failed (%s); connection closed", self._relay, exc)
            client.close()

    async def _transmit(self, message: EmailMessage, recipient: str, password: str | None) -> None:
        client = await self._connection(password)
        reused = self._replies_on_connection > 0
        self._replies_on_connection += 1
        sender = self._settings.from_address
        try:
            await client.send_message(message, sender=sender, recipients=[recipient])
        except aiosmtplib.SMTPSenderRefused as exc:
            if not (reused and exc.code == _CLOSING):
                raise
            # A relay may close a connection after so many mails or so long: refused at
            # MAIL, nothing of this reply was accepted, so it goes on a new connection.
            await self._drop()
            client = await self._connection(password)
            self._replies_on_connection += 1
            await client.send_message(message, sender=sender, recipients=[recipient])

    async def _connection(self, password: str | None) -> aiosmtplib.SMTP:
        """The open connection, or a new one when there is none or the relay closed it."""
        if self._client is not None and self._client.is_connected:
            return self._client
        await self._drop()
        tls_context = None
        if self._settings.security != "none":
            # Loading CA files reads the disk: keep it off the event loop.
            tls_context = await asyncio.to_thread(_tls_context, self._settings)
        client = aiosmtplib.SMTP(
            hostname=self._settings.host,
            port=self._settings.port,
            timeout=self._settings.timeout_s,
            use_tls=self._settings.security == "tls",
            # Explicit, never opportunistic: "none" must not upgrade, "starttls" must not skip it.
            start_tls=self._settings.security == "starttls",
            tls_context=tls_context,
            username=self._settings.username,
            password=password,
        )
        try:
            await client.connect()
        except BaseException:
            client.close()
            raise
        self._client, self._replies_on_connection = client, 0
        return client

    async def _drop(self) -> None:
        """Forget the connection, closing it without a word (it failed or is gone)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()


#: The reply code of a relay closing the connection (RFC 5321 4.2.3: 421).
_CLOSING: Final = 421


def _connection_survives(exc: BaseException) -> bool:
    """Whether the connection is still fit for the next reply after ``exc``.

    A refusal of the recipient or the message leaves it so (aiosmtplib resets the
    transaction); anything else (a timeout, a reset, a closing relay) may have left it
    half-way through a command.
    """
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return True
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code != _CLOSING
    return False


def _tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    cafile = str(settings.ca_file) if settings.ca_file is not None else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    if not settings.validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _outcome(exc: Exception, relay: str, password: str | None) -> SendResult:
    """Classify a delivery error; the reason names the relay and never holds the password."""
    result = _response_outcome(exc, relay) or _transport_outcome(exc, relay)
    if password and password in result.reason:
        # A relay may echo what it was sent; the reason is stored and shown to staff.
        reason = result.reason.replace(password, "***")
        result = SendResult(result.outcome, defer_s=result.defer_s, reason=reason)
    return result


def _response_outcome(exc: Exception, relay: str) -> SendResult | None:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refusals = exc.recipients
        code = max(refusal.code for refusal in refusals)
        detail = "; ".join(f"{refusal.code} {refusal.message}" for refusal in refusals)
        return _by_code(code, f"{relay} refused the recipient: {detail}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _by_code(exc.code, f"{relay} {_stage(exc)}: {exc.code} {exc.message}")
    return None


def _transport_outcome(exc: Exception, relay: str) -> SendResult:
    certificate_error = _certificate_error(exc)
    if certificate_error is not None:
        # Like refused credentials, an untrusted certificate lasts until an operator acts.
        return SendResult.failed(f"{relay}: TLS certificate not trusted ({certificate_error})")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return SendResult.retry(f"{relay} timed out: {exc}")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError | OSError):
        return SendResult.retry(f"{relay} unreachable or disconnected: {exc}")
    # What is left is a relay that lacks a feature we need (STARTTLS, an AUTH mechanism,
    # SMTPUTF8) or an address it cannot carry: retrying cannot help until an operator acts.
    return SendResult.failed(f"{relay}: {exc}")


def _by_code(code: int, reason: str) -> SendResult:
    # 5xx is permanent by definition (RFC 5321 4.2.1); anything else may pass.
    return SendResult.failed(reason) if 500 <= code <= 599 else SendResult.retry(reason)


def _stage(exc: aiosmtplib.SMTPResponseException) -> str:
    stages: tuple[tuple[type[aiosmtplib.SMTPResponseException], str], ...] = (
        (aiosmtplib.SMTPAuthenticationError, "refused the login"),
        (aiosmtplib.SMTPSenderRefused, "refused the sender"),
        (aiosmtplib.SMTPDataError, "refused the message"),
        (aiosmtplib.SMTPConnectResponseError, "refused the connection"),
        (aiosmtplib.SMTPHeloError, "refused the greeting"),
    )
    return next((name for kind, name in stages if isinstance(exc, kind)), "answered")


def _certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    # aiosmtplib wraps a handshake failure in SMTPConnectError; the cause says why.
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        current = current.__cause__ or current.__context__
    return None


def _set_thread_headers(message: EmailMessage, reply: OutboundReply) -> None:
    parent = _message_id(reply.in_reply_to)
    chain = _unique(filter(None, (*map(_message_id, reply.references), parent)))
    if parent is not None:
        message["In-Reply-To"] = parent
    if chain:
        message["References"] = " ".join(chain)


def _message_id(external_id: str | None) -> str | None:
    # An e-mail external id is a Message-ID, or a sha256 when the mail had none: only a real
    # id (local@domain) may appear in a threading header.
    bare = (external_id or "").strip().removeprefix("<").removesuffix(">")
    return f"<{bare}>" if _MSG_ID.fullmatch(bare) else None


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _set_extra_headers(message: EmailMessage, headers: Mapping[str, str]) -> None:
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a header name")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"the reply may not set the {name} header")
        del message[name]
        message[name] = _one_line(value)


def _set_body(message: EmailMessage, reply: OutboundReply) -> None:
    message.set_content(reply.text, subtype="plain", charset="utf-8")
    if reply.html is None:
        return
    message.add_alternative(reply.html, subtype="html", charset="utf-8")
    for part in message.iter_parts():
        # add_alternative() builds the new part as an EmailMessage, which gives it a
        # MIME-Version header of its own; only the top level should carry one.
        del part["MIME-Version"]


def _one_line(value: str) -> str:
    # A header value is one line; a line break in a subject or name would be an injection.
    return " ".join(value.split())


def _logged(reply: OutboundReply, result: SendResult) -> SendResult:
    if result.outcome == "sent":
        logger.info(
            "acknowledgment %s sent as %s",
            reply.idempotency_key,
            result.external_id,
            extra={"stage": "send", "outbox_id": reply.idempotency_key},
        )
    else:
        logger.warning(
            "acknowledgment %s not sent (%s): %s",
            reply.idempotency_key,
            result.outcome,
            result.reason,
            extra={"stage": "send", "outbox_id": reply.idempotency_key},
        )
    return result
