"""Where alerts go: an e-mail address, a signed webhook, a Telegram chat.

Each sender delivers one :class:`Alert` or raises :class:`~.errors.RetryableError` (a
timeout, a refused connection, a 5xx, a 429 with its delay) or
:class:`~.errors.PermanentError` (the target refuses this alert for good: a 4xx, an unknown
chat, a refused recipient). The caller bounds every attempt with ``alerts.timeout_s``.

An alert names the item (reference, priority, team, category, channel, due time, a link)
and never carries what the customer wrote or who they are: chats and webhook receivers are
outside the queue's access control and its audit log.

Telegram goes through the Bot API over HTTPS rather than MTProto (telethon, which the
Telegram source uses): sending a message needs one POST with the bot's token, no session,
no connection kept; a loopback server answering as the Bot API documents tests it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Final, Protocol

import aiohttp
import aiosmtplib

from .config import EmailAlertTarget, TelegramAlertTarget, WebhookAlertTarget
from .errors import PermanentError, RetryableError

#: Headers of a webhook delivery; the signature covers ``timestamp + "." + body``.
SIGNATURE_HEADER: Final = "X-Inbox-Signature"
TIMESTAMP_HEADER: Final = "X-Inbox-Timestamp"
ALERT_ID_HEADER: Final = "X-Inbox-Alert-Id"
#: A delivery refused with these HTTP statuses is tried again later.
_RETRY_STATUSES: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_ERROR_CHARS: Final = 300


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert to one target, with the item as it is now."""

    id: int
    event: str
    target: str
    attempt: int
    reference: str
    priority: str
    team: str
    category: str
    channel: str
    status: str
    due_at: datetime
    url: str

    @property
    def subject(self) -> str:
        """One line: what happened to which item."""
        if self.event == "p1":
            return f"[P1] {self.reference}: a P1 item for {self.team}"
        overdue = self.due_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return f"[SLA] {self.reference} ({self.priority}, {self.team}) is overdue since {overdue}"

    @property
    def text(self) -> str:
        """The subject, the item's labels and state, and the link to it."""
        due = self.due_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return (
            f"{self.subject}\n"
            f"Category {self.category}, channel {self.channel}, now {self.status}, due {due}.\n"
            f"Open it: {self.url}\n"
        )

    def document(self) -> dict[str, Any]:
        """The webhook's JSON body."""
        return {
            "id": self.id,
            "event": self.event,
            "reference": self.reference,
            "priority": self.priority,
            "team": self.team,
            "category": self.category,
            "channel": self.channel,
            "status": self.status,
            "due_at": self.due_at.isoformat(),
            "url": self.url,
        }


class AlertSender(Protocol):
    """Delivers alerts to one configured target."""

    async def send(self, alert: Alert) -> None:
        """Deliver ``alert`` once.

        Raises:
            RetryableError: not delivered now; try again after ``defer_s`` (or the backoff).
            PermanentError: the target refuses it; trying again would not help.
        """


def signature(key: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Inbox-Signature`` value: ``sha256=`` and the HMAC of ``timestamp.body``.

    Receivers recompute it with the shared key and compare in constant time; the timestamp
    lets them refuse an old delivery replayed.
    """
    mac = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


class WebhookSender:
    """A JSON POST to the target's URL, signed with HMAC-SHA256."""

    def __init__(self, target: WebhookAlertTarget, session: aiohttp.ClientSession) -> None:
        self._target = target
        self._session = session

    async def send(self, alert: Alert) -> None:
        """POST the alert; a 2xx answer delivers it."""
        body = json.dumps(alert.document(), separators=(",", ":"), sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            ALERT_ID_HEADER: str(alert.id),
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(self._target.secret(), timestamp, body),
        }
        try:
            async with self._session.post(self._target.url, data=body, headers=headers) as reply:
                await reply.read()
                _check_http(reply.status, reply.headers.get("Retry-After"), "the webhook")
        except aiohttp.ClientError as exc:
            raise RetryableError(f"the webhook: {_describe(exc)}") from exc


class TelegramSender:
    """A message from the target's bot to its chat, through the Bot API's ``sendMessage``."""

    def __init__(self, target: TelegramAlertTarget, session: aiohttp.ClientSession) -> None:
        self._target = target
        self._session = session

    async def send(self, alert: Alert) -> None:
        """Send the alert's text; the Bot API's ``ok`` delivers it."""
        token = self._target.bot_token()
        url = f"{self._target.api_base_url.rstrip('/')}/bot{token}/sendMessage"
        chat: int | str = self._target.chat_id
        if isinstance(chat, str) and chat.lstrip("-").isdigit():
            chat = int(chat)
        body = {"chat_id": chat, "text": alert.text, "disable_web_page_preview": True}
        try:
            async with self._session.post(url, json=body) as reply:
                answer = await _json_or_none(reply)
                _check_telegram(reply.status, answer)
        except aiohttp.ClientError as exc:
            # The bot's token is part of the URL: it never reaches a stored error.
            raise RetryableError(f"Telegram: {_describe(exc).replace(token, '***')}") from exc


class EmailSender:
    """A mail to the target's addresses through its relay."""

    def __init__(self, target: EmailAlertTarget, timeout_s: float) -> None:
        self._target = target
        self._timeout_s = timeout_s

    async def send(self, alert: Alert) -> None:
        """Send the alert as a mail; the relay's acceptance delivers it."""
        smtp = self._target.smtp
        message = self.message(alert)
        password = smtp.password()
        try:
            refused, _ = await aiosmtplib.send(
                message,
                hostname=smtp.host,
                port=smtp.port,
                use_tls=smtp.security == "tls",
                start_tls=smtp.security == "starttls",
                username=smtp.username,
                password=password,
                timeout=self._timeout_s,
            )
        except aiosmtplib.SMTPResponseException as exc:
            text = f"the relay answered {exc.code} {exc.message}"
            if password:
                text = text.replace(password, "***")
            if exc.code >= 500:
                raise PermanentError(text[:_MAX_ERROR_CHARS]) from exc
            raise RetryableError(text[:_MAX_ERROR_CHARS]) from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            _check_recipients(
                {error.recipient: (error.code, error.message) for error in exc.recipients}
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise RetryableError(f"the relay: {_describe(exc)}") from exc
        else:
            _check_recipients(refused)

    def message(self, alert: Alert) -> EmailMessage:
        """The mail of ``alert``; its Message-ID is the same on every attempt."""
        smtp = self._target.smtp
        domain = smtp.from_address.rpartition("@")[2]
        message = EmailMessage()
        message["From"] = smtp.from_address
        message["To"] = ", ".join(self._target.to)
        message["Subject"] = alert.subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = f"<alert-{alert.id}@{domain}>"
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(alert.text)
        return message


def _check_recipients(refused: Mapping[str, tuple[int, str]]) -> None:
    """Judge the recipients the relay refused: any for now (4xx) is a retry, to all of them
    again under the same Message-ID; refused for good (5xx) only, the alert failed."""
    if not refused:
        return
    text = "; ".join(f"{rcpt}: {code} {reply}" for rcpt, (code, reply) in sorted(refused.items()))
    text = f"the relay refused {text}"[:_MAX_ERROR_CHARS]
    if any(code < 500 for code, _ in refused.values()):
        raise RetryableError(text)
    raise PermanentError(text)


def _check_http(status: int, retry_after: str | None, who: str) -> None:
    if 200 <= status < 300:
        return
    if status in _RETRY_STATUSES:
        raise RetryableError(f"{who} answered {status}", defer_s=_seconds(retry_after))
    raise PermanentError(f"{who} answered {status}")


def _check_telegram(status: int, answer: dict[str, Any] | None) -> None:
    if answer is not None and answer.get("ok") is True:
        return
    answer = answer or {}
    code = answer.get("error_code", status)
    description = str(answer.get("description", f"HTTP {status}"))[:_MAX_ERROR_CHARS]
    parameters = answer.get("parameters") or {}
    if code == 429 or status >= 500 or code >= 500:
        delay = parameters.get("retry_after")
        defer_s = float(delay) if isinstance(delay, int | float) else None
        raise RetryableError(f"Telegram answered {code}: {description}", defer_s=defer_s)
    raise PermanentError(f"Telegram answered {code}: {description}")


async def _json_or_none(reply: aiohttp.ClientResponse) -> dict[str, Any] | None:
    try:
        document = await reply.json(content_type=None)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


def _seconds(retry_after: str | None) -> float | None:
    if retry_after is not None and retry_after.strip().isdigit():
        return float(retry_after.strip())
    return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
