"""Whether to acknowledge a message automatically: decides, never sends.

What the message alone tells is decided here, in a fixed order whose first match is given
as the reason: bounces, out-of-office replies, other automated mail (RFC 3834, X-Loop, bots),
list and bulk mail, no-reply senders, spam and phishing sent to us, chatter not addressed to
us, and replies in a thread we already acknowledged; then our own mail, stale mail and
dry-run mode. What needs the database (one acknowledgment per thread, per-sender limits,
duplicates) is decided where the batch is stored, in the same transaction.

The text signals (out-of-office phrases, spam, bot posts) are the operator's, in
``config/reply_rules.toml``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, ValidationError

from ..config import FrozenModel
from ..errors import ConfigError
from ..interfaces import AckDecision, InboundMessage
from .matching import compile_matcher

_AUTOMATED_LOCAL_PART: Final = re.compile(
    r"^(mailer-daemon|postmaster|no[-_.]?reply|do[-_.]?not[-_.]?reply|bounces?|"
    r"notifications?|auto[-_.]?reply|daemon)([+-].*)?$",
    re.IGNORECASE,
)
_BOUNCE_LOCAL_PART: Final = re.compile(r"^(mailer-daemon|postmaster)$", re.IGNORECASE)
_BULK_PRECEDENCE: Final = frozenset({"bulk", "list", "junk"})
_REFERENCE: Final = re.compile(r"\bFB-[0-9A-Z]{4}-[0-9A-Z]{4}\b")
_LEADING_MENTION: Final = re.compile(r"^\s*(@\w+)")
_RETWEET: Final = re.compile(r"^\s*RT @\w+")

Code = Literal["out-of-office", "auto-submitted", "spam/phishing"]


class WithholdRuleSpec(FrozenModel):
    """One ``[[withhold]]`` rule: text that marks a message as not to be answered."""

    name: Annotated[str, Field(min_length=1)]
    code: Code
    channels: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()


class ReplyRulesFile(FrozenModel):
    """The whole ``reply_rules.toml``."""

    own_handles: tuple[str, ...] = ()
    withhold: tuple[WithholdRuleSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class WithholdRule:
    """A compiled withhold rule."""

    name: str
    code: str
    channels: frozenset[str]
    matcher: re.Pattern[str]

    def fires(self, message: InboundMessage) -> bool:
        """True when the rule applies to ``message``'s channel and its text matches."""
        if self.channels and message.channel not in self.channels:
            return False
        return bool(self.matcher.search(f"{message.subject}\n{message.text}"))


@dataclass(frozen=True, slots=True)
class ReplyRules:
    """The operator's text signals for the reply policy."""

    own_handles: frozenset[str] = frozenset()
    withhold: tuple[WithholdRule, ...] = ()

    def first(self, message: InboundMessage, code: str) -> WithholdRule | None:
        """The first rule of ``code`` that fires on ``message``."""
        return next((r for r in self.withhold if r.code == code and r.fires(message)), None)


def load_reply_rules(path: Path) -> ReplyRules:
    """Read and compile ``reply_rules.toml``.

    Raises:
        ConfigError: naming the file and the rule that is wrong.
    """
    try:
        spec = ReplyRulesFile.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=str(path)) from exc
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        raise ConfigError(error["msg"], path=str(path), key=key) from exc
    rules = []
    for rule in spec.withhold:
        try:
            matcher = compile_matcher(rule.keywords, rule.patterns, where=f"rule {rule.name!r}")
        except ValueError as exc:
            raise ConfigError(str(exc), path=str(path), key="withhold") from exc
        if matcher is not None:
            rules.append(WithholdRule(rule.name, rule.code, frozenset(rule.channels), matcher))
    handles = frozenset(handle.lower() for handle in spec.own_handles)
    return ReplyRules(handles, tuple(rules))


@dataclass(frozen=True, slots=True)
class ReplyContext:
    """What the decision needs to know besides the message.

    Attributes:
        can_send: the source has an outgoing channel configured.
        own_addresses: identities we send as (lower-cased addresses and @handles).
        loop_marker: the value of our ``X-Loop`` header.
        max_ack_age_s: never acknowledge a message older than this.
        dry_run: decide, but send nothing.
        now: the time of the decision.
        rules: the operator's text signals.
    """

    can_send: bool
    own_addresses: frozenset[str]
    loop_marker: str
    max_ack_age_s: float
    dry_run: bool
    now: datetime
    rules: ReplyRules = field(default_factory=ReplyRules)


Check = Callable[[InboundMessage, ReplyContext], "tuple[str, str] | None"]


def decide(message: InboundMessage, context: ReplyContext) -> AckDecision:
    """Acknowledge ``message`` or withhold the acknowledgment, with the reason and its code."""
    for check in _CHECKS:
        found = check(message, context)
        if found is not None:
            code, reason = found
            return AckDecision("withheld", reason, code)
    if context.dry_run:
        return AckDecision("dry_run", "dry run: an acknowledgment would be sent")
    return AckDecision("send", "acknowledgment queued")


def _bounce(message: InboundMessage, context: ReplyContext) -> tuple[str, str] | None:
    headers = message.headers
    if headers.get("return-path", "").strip() == "<>":
        return "mailer-daemon bounce", "null Return-Path: a bounce or delivery report"
    if headers.get("content-type", "").lower().startswith("multipart/report"):
        return "mailer-daemon bounce", "a delivery status report (multipart/report)"
    if _BOUNCE_LOCAL_PART.match(_local_part(message)):
        return "mailer-daemon bounce", f"sent by {message.sender.handle}"
    return None


def _out_of_office(message: InboundMessage, context: ReplyContext) -> tuple[str, str] | None:
    rule = context.rules.first(message, "out-of-office")
    return ("out-of-office", f"out-of-office reply (rule {rule.name})") if rule else None


def _automated(message: InboundMessage, context: ReplyContext) -> tuple[str, str] | None:
    headers = message.headers
    auto_submitted = headers.get("auto-submitted", "no").strip().lower()
    if auto_submitted.split(";")[0].strip() != "no":
        return "auto-submitted", f"automated mail (RFC 3834: Auto-Submitted: {auto_submitted})"
    if "x-autoreply" in headers or "x-autorespond" in headers:
        return "auto-submitted", "automated reply (X-Autoreply / X-Autorespond)"
    if context.loop_marker and context.loop_marker in headers.get("x-loop", ""):
        return "auto-submitted", "carries our own X-Loop marker"
    rule = context.rules.first(message, "auto-submitted")
    return ("auto-submitted", f"automated message (rule {rule.name})") if rule else None


def _bulk(message: InboundMessage, context: ReplyContext) -> tuple[str, str] | None:
    headers = message.headers
    if headers.get("precedence", "").strip().lower() in _BULK_PRECEDENCE:
        return "bulk/list", f"bulk mail (Precedence: {headers['precedence'].strip()})"
    if "list-id" in headers or "list-unsubscribe" in headers:
        return "bulk/list", "mailing-list mail (List-Id / List-Unsubscribe)"
    return None


def _no_reply(message: InboundMessage, context: ReplyContext) -> tuple[str, str] | None:
    if _AUTOMATED_LOCAL_PART.match(_local_part(message)):
        return "noreply sender", f"automated sender ({message.sender.handle})"
    return None


def _spam(message: InboundMessage, context: ReplyContext) -> tuple[str, str] | None:
    rule = context.rules.first(message, "spam/phishing")
    return ("spam/phishing", f"spam or phishing (rule {rule.name})") if rule else None


def _not_addressed(message: InboundMessage, context: ReplyContext) -> tuple[str, str] | None:
    if message.channel == "email":
        return None
    text = message.text
    if _RETWEET.match(text):
        return "not addressed to us", "a retweet"
    own = context.rules.own_handles | context.own_addresses
    mentioned = {handle.lower() for handle in re.findall(r"@\w+", text)}
    leading = _LEADING_MENTION.match(text)
    if leading and leading.group(1).lower() not in own and not mentioned & own:
        return "not addressed to us", f"a reply to {leading.group(1)}, not to us"
    if message.channel == "twitter" and own and not mentioned & own:
        return "not addressed to us", "a post that does not mention our accounts"
    return None


def _thread_acknowledged(message: InboundMessage, context: ReplyContext) -> tuple[str, str] | None:
    # A reply to our own acknowledgment: the subject quotes our reference and the message
    # answers a message id that carries it (we put the reference in nothing else we send).
    references = set(_REFERENCE.findall(message.subject))
    answered = " ".join(filter(None, (message.in_reply_to, *message.references)))
    if references and any(reference in answered for reference in references):
        return "thread already acknowledged", "a reply to our acknowledgment"
    if references and message.in_reply_to and _is_ours(message.in_reply_to, context):
        return "thread already acknowledged", "a reply to our acknowledgment"
    return None


def _own_mail(message: InboundMessage, context: ReplyContext) -> tuple[str, str] | None:
    recipient = message.reply_to or message.sender
    if not context.can_send:
        return "no outgoing channel", "the source has no outgoing channel configured"
    if not recipient.handle:
        return "no recipient", "no address to reply to"
    if {message.sender.id.lower(), recipient.id.lower()} & context.own_addresses:
        return "own address", "sent from our own address"
    age_s = (context.now - message.received_at).total_seconds()
    if age_s > context.max_ack_age_s:
        return "too old", f"older than max_ack_age_s ({int(age_s)} s old)"
    return None


def _is_ours(message_id: str, context: ReplyContext) -> bool:
    domain = message_id.rpartition("@")[2].lower()
    own_domains = {
        address.rpartition("@")[2] for address in context.own_addresses if "@" in address[1:]
    }
    return message_id.lower().startswith("ack") or domain in own_domains


def _local_part(message: InboundMessage) -> str:
    handle = message.sender.handle
    return handle.rsplit("@", 1)[0] if "@" in handle[1:] else ""


_CHECKS: Final[tuple[Check, ...]] = (
    _bounce,
    _out_of_office,
    _automated,
    _bulk,
    _no_reply,
    _spam,
    _not_addressed,
    _thread_acknowledged,
    _own_mail,
)
