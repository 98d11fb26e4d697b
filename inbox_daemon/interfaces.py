"""The contracts between the core and the channel adapters, and the data they pass.

Adapters live in their own packages and are found by entry point (see :mod:`.registry`); the
core only ever talks to them through the protocols here.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, runtime_checkable

if TYPE_CHECKING:
    from pydantic import BaseModel

#: An adapter's position in its source, as a JSON object only that adapter interprets
#: (IMAP: ``{"folders": {"INBOX": {"uidvalidity": 7, "last_uid": 42}}}``).
Cursor: TypeAlias = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who sent or receives a message on a channel.

    Attributes:
        channel: ``email``, ``twitter``, ``telegram`` …
        id: the stable identifier on that channel (a lower-cased address, a user id).
        handle: what a person would type to reach them (an address, an ``@handle``).
        display_name: the name shown by their client, possibly empty.
    """

    channel: str
    id: str
    handle: str
    display_name: str = ""


@dataclass(frozen=True, slots=True)
class Attachment:
    """An attachment's description; its body is not stored."""

    name: str
    content_type: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message as fetched from a source, normalised to plain text.

    Attributes:
        external_id: unique within the source (email: the normalised Message-ID, or the
            sha256 of the raw bytes when there is none).
        channel: the channel the message came on.
        received_at: when the source received it, in UTC.
        sender: who wrote it.
        recipients: who it was addressed to.
        reply_to: where replies go when that is not the sender (email ``Reply-To``).
        subject: the subject line, empty where the channel has none.
        text: the sender's own words: plain text with quoted replies and signature removed.
        full_text: the whole plain-text body, quotes included.
        thread_key: the conversation it belongs to (email: the root Message-ID).
        in_reply_to: the external id it answers, if any.
        references: earlier external ids of the thread, oldest first.
        headers: e-mail headers (lower-cased names, decoded values); empty elsewhere.
        meta: channel-specific fields worth keeping (JSON-serialisable).
        attachments: what was attached.
        raw_ref: where the original lives (``INBOX;uidvalidity=7;uid=42``).
        notes: remarks from normalisation a person should see ("body truncated at …").
        revision: which version of an editable message this is; a higher revision of a stored
            message replaces its text and labels (Telegram: the edit time as a Unix timestamp).
            0 for a message never edited, and on channels whose messages cannot be edited.
    """

    external_id: str
    channel: str
    received_at: datetime
    sender: Identity
    subject: str
    text: str
    full_text: str
    thread_key: str
    raw_ref: str
    recipients: tuple[Identity, ...] = ()
    reply_to: Identity | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()
    notes: tuple[str, ...] = ()
    revision: int = 0


@dataclass(frozen=True, slots=True)
class FailedMessage:
    """A message that could not be turned into an :class:`InboundMessage`."""

    external_id: str
    raw_ref: str
    error: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class Batch:
    """What one :meth:`SourceAdapter.fetch` call returns.

    Attributes:
        messages: the messages, in source order.
        failures: messages that could not be parsed; they become dead letters.
        next_cursor: the position after the last message (parsed or failed).
        more: true when the source holds more messages past ``next_cursor`` right now.
    """

    messages: tuple[InboundMessage, ...]
    next_cursor: Cursor
    failures: tuple[FailedMessage, ...] = ()
    more: bool = False


@dataclass(frozen=True, slots=True)
class OutboundReply:
    """A reply for an adapter to deliver.

    Attributes:
        idempotency_key: the outbox row id; a retried send carries the same key.
        channel: the channel to send on.
        recipient: who receives it.
        subject: the subject line (email).
        text: the plain-text body.
        language: the language the reply is written in.
        thread_key: the conversation to reply in.
        in_reply_to: the external id of the message answered.
        references: earlier message ids of the thread (email ``References``).
        html: an HTML alternative (email), if any.
        headers: extra headers to set (email).
    """

    idempotency_key: str
    channel: str
    recipient: Identity
    subject: str
    text: str
    language: str
    thread_key: str
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    html: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one :meth:`SourceAdapter.send` call."""

    outcome: Literal["sent", "retry", "failed"]
    external_id: str | None = None
    defer_s: float | None = None
    reason: str = ""

    @classmethod
    def sent(cls, external_id: str) -> SendResult:
        """The reply was accepted by the channel under ``external_id``."""
        return cls("sent", external_id=external_id)

    @classmethod
    def retry(cls, reason: str, defer_s: float | None = None) -> SendResult:
        """The reply was not delivered this time and may be retried."""
        return cls("retry", defer_s=defer_s, reason=reason)

    @classmethod
    def failed(cls, reason: str) -> SendResult:
        """The reply can never be delivered (a refused recipient, say)."""
        return cls("failed", reason=reason)


@dataclass(frozen=True, slots=True)
class Classification:
    """Category, priority and owning team of a message, and why.

    Attributes:
        category: ``trading``, ``deposit_withdrawal``, ``kyc``, ``account_security``,
            ``promotions``, ``feature_request``, ``bug_report``, ``api`` or ``other``.
        priority: ``P1`` (funds or account at risk now) to ``P4``.
        team: the team that owns it (``technical``, ``risk_control``, ``finance``,
            ``compliance``, ``customer_service``, ``product``).
        reasons: one line per decision, naming the rule that made it.
    """

    category: str
    priority: str
    team: str
    reasons: tuple[str, ...]


class Classifier(Protocol):
    """Labels a message; the rules in ``config/rules.toml`` are the explainable default."""

    def classify(self, message: InboundMessage, language: str) -> Classification:
        """Category, priority and team of ``message``, written in ``language``."""


@dataclass(frozen=True, slots=True)
class AckDecision:
    """Whether the sender is acknowledged automatically, and why (always stored).

    Attributes:
        action: ``send``, ``withheld`` or ``dry_run`` (decided to send, configured not to).
        reason: a sentence a support agent understands.
        code: why it was withheld, as a stable token (``auto-submitted``, ``out-of-office``,
            ``mailer-daemon bounce``, ``bulk/list``, ``noreply sender``, ``spam/phishing``,
            ``not addressed to us``, ``duplicate``, ``thread already acknowledged``,
            ``own address``, ``no recipient``, ``too old``, ``no outgoing channel``,
            ``sender limit``); empty when not withheld.
    """

    action: str
    reason: str
    code: str = ""

    @property
    def send(self) -> bool:
        """True when an outbox row is to be made."""
        return self.action == "send"


@dataclass(frozen=True, slots=True)
class ReplyDraft:
    """An acknowledgment before it has an outbox row (and so an idempotency key)."""

    recipient: Identity
    subject: str
    text: str
    language: str
    thread_key: str
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    html: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IncidentLink:
    """A record's incident.

    Attributes:
        key: stable identity of the incident (its signature and first report's time).
        title: what staff see ("problems with withdrawal USDT TRC20").
        members: references of earlier reports that join the incident with this record.
        known: the incident existed before this record (its reporter is told so).
    """

    key: str
    title: str
    members: tuple[str, ...] = ()
    known: bool = False


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    """The stored, normalised unit: a message, its labels and what to answer.

    Attributes:
        source: the configured source it came from.
        message: the normalised message.
        reference: the human-quotable reference (``FB-7K2Q-9MXA``).
        language: BCP 47-ish code (``en``, ``zh-cn``) or ``und``.
        classification: category, priority, team and reasons.
        ack: the acknowledgment decision made from the message alone; storage may still
            withhold it (thread already acknowledged, sender limits, duplicates).
        reply: the rendered acknowledgment when ``ack.send`` or dry run.
        redactions: counts of secrets removed, by kind.
        entities: identifiers quoted in the text (UIDs, order ids, tx hashes…), by kind.
        duplicate_of: the reference of the record this one repeats (same person, same problem).
        incident: the incident this record reports, if any.
    """

    source: str
    message: InboundMessage
    reference: str
    language: str
    classification: Classification
    ack: AckDecision
    reply: ReplyDraft | None = None
    redactions: Mapping[str, int] = field(default_factory=dict)
    entities: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    duplicate_of: str | None = None
    incident: IncidentLink | None = None


@runtime_checkable
class SourceAdapter(Protocol):
    """A connection to one configured source: a mailbox, an account, a bot."""

    async def open(self) -> None:
        """Connect and authenticate.

        Raises:
            RetryableError: the peer could not be reached or timed out.
            PermanentError: the peer refused the credentials or the configuration.
        """

    async def fetch(self, cursor: Cursor | None, limit: int) -> Batch:
        """Fetch up to ``limit`` messages that follow ``cursor``, in source order.

        ``None`` means the source was never read: start at the configured backfill. Nothing
        on the server is marked, moved or deleted unless the operator configured it.

        Raises:
            RetryableError: the fetch failed for now; the cursor must not move.
            PermanentError: the source cannot be read until an operator acts.
        """

    async def after_commit(self, batch: Batch) -> None:
        """Act on the server once ``batch`` is stored (an IMAP flag or move), if configured.

        Called only after the batch's transaction committed, so nothing is moved away before
        it is safely stored. A failure here is logged; it never undoes the batch.
        """

    async def send(self, reply: OutboundReply) -> SendResult:
        """Deliver one reply; never raises for a delivery failure, returns it."""

    async def close(self) -> None:
        """Release connections; safe to call when not open."""

    def own_addresses(self) -> frozenset[str]:
        """The identities this source replies as (lower-cased), so it never answers itself."""

    def can_send(self) -> bool:
        """True when the source is configured to send replies at all."""


@runtime_checkable
class DeliveryPass(Protocol):
    """A :class:`SourceAdapter` that keeps a connection open over several sends (optional).

    The outbox sender enters :meth:`delivery_pass` around each pass over the due replies,
    so an adapter whose peer costs a connection per reply (an SMTP relay) pays it once.
    """

    def delivery_pass(self) -> AbstractAsyncContextManager[None]:
        """Hold what :meth:`SourceAdapter.send` needs open until the context exits.

        Every ``send`` inside still reports its own outcome, and nothing is sent on
        entering; a connection lost midway is opened again by a later ``send``.
        """


class AdapterPlugin(Protocol):
    """What an adapter package registers under the ``inbox_daemon.adapters`` entry point."""

    #: The ``kind`` operators write in ``[[sources]]`` (``imap``, ``twitter`` …).
    kind: str
    #: The channel its messages arrive on (``email``, ``twitter`` …).
    channel: str

    @property
    def settings_model(self) -> type[BaseModel]:
        """The pydantic model of one ``[[sources]]`` entry of this kind."""

    def create(self, settings: BaseModel) -> SourceAdapter:
        """Build an adapter from its validated settings (not yet opened)."""
