"""Whether to acknowledge a message automatically: decides, never sends.

What the message alone tells is decided here: robots (RFC 3834 auto-replies, list and bulk
mail, bounces, no-reply senders), our own mail, stale mail and dry-run mode. What needs the
database (one acknowledgment per thread, per-sender limits, duplicates) is decided where the
batch is stored, in the same transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from ..interfaces import AckDecision, InboundMessage

_AUTOMATED_LOCAL_PART: Final = re.compile(
    r"^(mailer-daemon|postmaster|no[-_.]?reply|do[-_.]?not[-_.]?reply|bounces?|"
    r"notifications?|auto[-_.]?reply|daemon)([+-].*)?$",
    re.IGNORECASE,
)
_BULK_PRECEDENCE: Final = frozenset({"bulk", "list", "junk"})


@dataclass(frozen=True, slots=True)
class ReplyContext:
    """What the decision needs to know besides the message.

    Attributes:
        can_send: the source has an outgoing channel configured.
        own_addresses: identities we send as (lower-cased).
        loop_marker: the value of our ``X-Loop`` header.
        max_ack_age_s: never acknowledge a message older than this.
        dry_run: decide, but send nothing.
        now: the time of the decision.
    """

    can_send: bool
    own_addresses: frozenset[str]
    loop_marker: str
    max_ack_age_s: float
    dry_run: bool
    now: datetime


def decide(message: InboundMessage, context: ReplyContext) -> AckDecision:
    """Acknowledge ``message`` or withhold the acknowledgment, with the reason."""
    reason = _robot_reason(message, context) or _context_reason(message, context)
    if reason:
        return AckDecision("withheld", reason)
    if context.dry_run:
        return AckDecision("dry_run", "dry run: an acknowledgment would be sent")
    return AckDecision("send", "acknowledgment queued")


def _context_reason(message: InboundMessage, context: ReplyContext) -> str | None:
    recipient = message.reply_to or message.sender
    if not context.can_send:
        return "the source has no outgoing channel configured"
    if not recipient.handle:
        return "no address to reply to"
    if {message.sender.id.lower(), recipient.id.lower()} & context.own_addresses:
        return "sent from our own address"
    age_s = (context.now - message.received_at).total_seconds()
    if age_s > context.max_ack_age_s:
        return f"older than max_ack_age_s ({int(age_s)} s old)"
    return None


def _robot_reason(message: InboundMessage, context: ReplyContext) -> str | None:
    headers = message.headers
    auto_submitted = headers.get("auto-submitted", "no").strip().lower()
    if auto_submitted.split(";")[0].strip() != "no":
        return f"auto-submitted mail (RFC 3834: Auto-Submitted: {auto_submitted})"
    if headers.get("precedence", "").strip().lower() in _BULK_PRECEDENCE:
        return f"bulk mail (Precedence: {headers['precedence'].strip()})"
    if "list-id" in headers or "list-unsubscribe" in headers:
        return "mailing-list mail (List-Id / List-Unsubscribe)"
    if headers.get("return-path", "").strip() == "<>":
        return "null Return-Path: a bounce or delivery report"
    if context.loop_marker and context.loop_marker in headers.get("x-loop", ""):
        return "carries our own X-Loop marker"
    if "x-autoreply" in headers or "x-autorespond" in headers:
        return "auto-reply (X-Autoreply / X-Autorespond)"
    if _automated_sender(message):
        return f"automated sender ({message.sender.handle})"
    return None


def _automated_sender(message: InboundMessage) -> bool:
    local_part = message.sender.handle.rsplit("@", 1)[0] if "@" in message.sender.handle else ""
    return bool(local_part) and bool(_AUTOMATED_LOCAL_PART.match(local_part))
