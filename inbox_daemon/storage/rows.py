"""Conversions between the pipeline's dataclasses and table rows (JSON-safe dicts)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from ..interfaces import FeedbackRecord, Identity, OutboundReply, ReplyDraft


def record_row(record: FeedbackRecord, *, now: datetime) -> dict[str, Any]:
    """The ``feedback_records`` row of ``record``."""
    message, labels = record.message, record.classification
    return {
        "reference": record.reference,
        "source": record.source,
        "channel": message.channel,
        "external_id": message.external_id,
        "received_at": message.received_at,
        "ingested_at": now,
        "sender_id": message.sender.id,
        "sender_handle": message.sender.handle,
        "sender_name": message.sender.display_name,
        "recipients": [asdict(recipient) for recipient in message.recipients],
        "subject": message.subject,
        "text": message.text,
        "full_text": message.full_text,
        "thread_key": message.thread_key,
        "in_reply_to": message.in_reply_to,
        "headers": dict(message.headers),
        "meta": dict(message.meta),
        "attachments": [asdict(attachment) for attachment in message.attachments],
        "raw_ref": message.raw_ref,
        "notes": list(message.notes),
        "revision": message.revision,
        "language": record.language,
        "category": labels.category,
        "priority": labels.priority,
        "team": labels.team,
        "reasons": list(labels.reasons),
        "redactions": dict(record.redactions),
        "entities": {kind: list(values) for kind, values in record.entities.items()},
        "status": "new",
        "ack_decision": record.ack.action,
        "ack_reason": record.ack.reason,
        "ack_code": record.ack.code,
    }


def queue_row(
    record_id: int, record: FeedbackRecord, *, now: datetime, sla_s: float
) -> dict[str, Any]:
    """The ``queue_items`` row that puts ``record`` in the shared queue."""
    return {
        "record_id": record_id,
        "state": "new",
        "team": record.classification.team,
        "priority": record.classification.priority,
        "created_at": now,
        "due_at": now + timedelta(seconds=sla_s),
    }


def outbox_row(
    record_id: int, record: FeedbackRecord, draft: ReplyDraft, *, now: datetime
) -> dict[str, Any]:
    """The ``outbox`` row that will deliver ``draft``."""
    return {
        "record_id": record_id,
        "source": record.source,
        "channel": record.message.channel,
        "recipient": draft.recipient.handle,
        "payload": draft_payload(draft),
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def draft_payload(draft: ReplyDraft) -> dict[str, Any]:
    """``draft`` as JSON."""
    recipient = draft.recipient
    return {
        "recipient": {
            "channel": recipient.channel,
            "id": recipient.id,
            "handle": recipient.handle,
            "display_name": recipient.display_name,
        },
        "subject": draft.subject,
        "text": draft.text,
        "language": draft.language,
        "thread_key": draft.thread_key,
        "in_reply_to": draft.in_reply_to,
        "references": list(draft.references),
        "html": draft.html,
        "headers": dict(draft.headers),
    }


def outbound_reply(row_id: int, channel: str, payload: dict[str, Any]) -> OutboundReply:
    """The reply an outbox row delivers; its id is the idempotency key."""
    recipient = Identity(**payload["recipient"])
    return OutboundReply(
        idempotency_key=str(row_id),
        channel=channel,
        recipient=recipient,
        subject=payload["subject"],
        text=payload["text"],
        language=payload["language"],
        thread_key=payload["thread_key"],
        in_reply_to=payload["in_reply_to"],
        references=tuple(payload["references"]),
        html=payload["html"],
        headers=payload["headers"],
    )
