"""Build the pipeline's dataclasses for tests, with realistic defaults."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from inbox_daemon.interfaces import (
    AckDecision,
    Classification,
    FeedbackRecord,
    Identity,
    InboundMessage,
    ReplyDraft,
)
from inbox_daemon.pipeline.reference import new_reference

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def message(external_id: str = "m1@example.net", **changes: Any) -> InboundMessage:
    """An e-mail from a customer about a stuck withdrawal."""
    base = InboundMessage(
        external_id=external_id,
        channel="email",
        received_at=NOW,
        sender=Identity("email", "alice@example.net", "alice@example.net", "Alice Tan"),
        subject="Withdrawal stuck",
        text="My BTC withdrawal has been pending for two days.",
        full_text="My BTC withdrawal has been pending for two days.",
        thread_key=external_id,
        raw_ref=f"INBOX;uidvalidity=1;uid={abs(hash(external_id)) % 10_000}",
        headers={"message-id": f"<{external_id}>"},
    )
    return replace(base, **changes)


def record(
    msg: InboundMessage | None = None, *, source: str = "support-mail", send: bool = True
) -> FeedbackRecord:
    """A triaged record of ``msg`` whose acknowledgment is to be sent (or withheld)."""
    msg = msg or message()
    ack = AckDecision("send", "acknowledgment queued") if send else AckDecision("withheld", "test")
    draft = ReplyDraft(
        recipient=msg.sender,
        subject=f"Re: {msg.subject}",
        text="We received your message.",
        language="en",
        thread_key=msg.thread_key,
        in_reply_to=msg.external_id,
    )
    return FeedbackRecord(
        source=source,
        message=msg,
        reference=new_reference(),
        language="en",
        classification=Classification("deposit_withdrawal", "P2", "finance", ("rule test",)),
        ack=ack,
        reply=draft if send else None,
    )
