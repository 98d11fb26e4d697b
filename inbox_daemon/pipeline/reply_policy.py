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

from pydantic import Field, ValidationError, model_validator

from ..config import FrozenModel
from ..errors import ConfigError
from ..interfaces import AckDecision, InboundMessage
from .matching import Patterns, PhraseIndex, normalised, scripts_of

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
# The withhold rules read the start of a message: automated mail says what it is early.
_MAX_TEXT_CHARS: Final = 6_000

Code = Literal["out-of-office", "auto-submitted", "spam/phishing"]


class WithholdRuleSpec(FrozenModel):
    """One ``[[withhold]]`` rule: text that marks a message as not to be answered."""

    name: Annotated[str, Field(min_length=1)]
    code: Code
    channels: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _has_text(self) -> WithholdRuleSpec:
        if not (self.keywords or self.patterns):
            raise ValueError(f"rule {self.name!r} needs keywords or patterns")
        return self


class ReplyRulesFile(FrozenModel):
    """The whole ``reply_rules.toml``."""

    own_handles: tuple[str, ...] = ()
    withhold: tuple[WithholdRuleSpec, ...] = ()

    @model_validator(mode="after")
    def _names_are_unique(self) -> ReplyRulesFile:
        names = [rule.name for rule in self.withhold]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(repeated)}")
        return self


@dataclass(frozen=True, slots=True)
class WithholdRule:
    """A compiled withhold rule; its keywords are in :attr:`ReplyRules.keywords`."""

    name: str
    code: str
    channels: frozenset[str]
    patterns: Patterns


@dataclass(frozen=True, slots=True)
class ReplyRules:
    """The operator's text signals for the reply policy."""

    own_handles: frozenset[str] = frozenset()
    withhold: tuple[WithholdRule, ...] = ()
    #: Every rule's keywords, owned by the rule's name, and the literals its patterns need.
    keywords: PhraseIndex = field(default_factory=lambda: PhraseIndex(()))


class _Text:
    """A message's subject and text as the withhold rules read them (prepared once)."""

    __slots__ = ("_found", "channel", "literals", "scripts", "text")

    def __init__(self, message: InboundMessage, rules: ReplyRules) -> None:
        self.channel = message.channel
        self.text = normalised(f"{message.subject}\n{message.text}"[:_MAX_TEXT_CHARS])
        self.scripts = scripts_of(self.text)
        self._found = rules.keywords.search(self.text.lower()) if rules.withhold else {}
        self.literals = rules.keywords.literals_in(self.text) if rules.withhold else frozenset()

    def fires(self, rule: WithholdRule) -> bool:
        """True when ``rule`` applies to the message's channel and its text matches."""
        if rule.channels and self.channel not in rule.channels:
            return False
        return rule.name in self._found or (
            rule.patterns.search(self.text, self.scripts, self.literals) is not None
        )


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
            patterns = Patterns(rule.patterns)
        except ValueError as exc:
            raise ConfigError(f"rule {rule.name!r}: {exc}", path=str(path), key="withhold") from exc
        rules.append(WithholdRule(rule.name, rule.code, frozenset(rule.channels), patterns))
    keywords = PhraseIndex(
        ((keyword, rule.name) for rule in spec.withhold for keyword in rule.keywords),
        patterns=[rule.patterns for rule in rules],
    )
    handles = frozenset(handle.lower() for handle in spec.own_handles)
    return ReplyRules(handles, tuple(rules), keywords)


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


@dataclass(slots=True)
class _Case:
    """The message being decided, its context, and its text as the rules read it (on demand)."""

    message: InboundMessage
    context: ReplyContext
    _text: _Text | None = None

    def first(self, code: str) -> WithholdRule | None:
        """The first withhold rule of ``code`` that fires on the message."""
        if self._text is None:
            self._text = _Text(self.message, self.context.rules)
        text = self._text
        return next(
            (r for r in self.context.rules.withhold if r.code == code and text.fires(r)), None
        )


Check = Callable[[_Case], "tuple[str, str] | None"]


def decide(message: InboundMessage, context: ReplyContext) -> AckDecision:
    """Acknowledge ``message`` or withhold the acknowledgment, with the reason and its code."""
    case = _Case(message, context)
    for check in _CHECKS:
        found = check(case)
        if found is not None:
            code, reason = found
            return AckDecision("withheld", reason, code)
    if context.dry_run:
        return AckDecision("dry_run", "dry run: an acknowledgment would be sent")
    return AckDecision("send", "acknowledgment queued")


def _bounce(case: _Case) -> tuple[str, str] | None:
    message = case.message
    headers = message.headers
    if headers.get("return-path", "").strip() == "<>":
        return "mailer-daemon bounce", "null Return-Path: a bounce or delivery report"
    if headers.get("content-type", "").lower().startswith("multipart/report"):
        return "mailer-daemon bounce", "a delivery status report (multipart/report)"
    if _BOUNCE_LOCAL_PART.match(_local_part(message)):
        return "mailer-daemon bounce", f"sent by {message.sender.handle}"
    return None


def _out_of_office(case: _Case) -> tuple[str, str] | None:
    rule = case.first("out-of-office")
    return ("out-of-office", f"out-of-office reply (rule {rule.name})") if rule else None


def _automated(case: _Case) -> tuple[str, str] | None:
    message, context = case.message, case.context
    headers = message.headers
    auto_submitted = headers.get("auto-submitted", "no").strip().lower()
    if auto_submitted.split(";")[0].strip() != "no":
        return "auto-submitted", f"automated mail (RFC 3834: Auto-Submitted: {auto_submitted})"
    if "x-autoreply" in headers or "x-autorespond" in headers:
        return "auto-submitted", "automated reply (X-Autoreply / X-Autorespond)"
    if context.loop_marker and context.loop_marker in headers.get("x-loop", ""):
        return "auto-submitted", "carries our own X-Loop marker"
    rule = case.first("auto-submitted")
    return ("auto-submitted", f"automated message (rule {rule.name})") if rule else None


def _bulk(case: _Case) -> tuple[str, str] | None:
    message = case.message
    headers = message.headers
    if headers.get("precedence", "").strip().lower() in _BULK_PRECEDENCE:
        return "bulk/list", f"bulk mail (Precedence: {headers['precedence'].strip()})"
    if "list-id" in headers or "list-unsubscribe" in headers:
        return "bulk/list", "mailing-list mail (List-Id / List-Unsubscribe)"
    return None


def _no_reply(case: _Case) -> tuple[str, str] | None:
    message = case.message
    if _AUTOMATED_LOCAL_PART.match(_local_part(message)):
        return "noreply sender", f"automated sender ({message.sender.handle})"
    return None


def _spam(case: _Case) -> tuple[str, str] | None:
    rule = case.first("spam/phishing")
    return ("spam/phishing", f"spam or phishing (rule {rule.name})") if rule else None


def _not_addressed(case: _Case) -> tuple[str, str] | None:
    message, context = case.message, case.context
    if message.channel == "email":
        return None
    text = message.text
    if _RETWEET.match(text):
        return "not addressed to us", "a retweet"
    if not message.meta.get("public", True):
        return None  # a direct message or a private chat is addressed to us
    own = context.rules.own_handles | context.own_addresses
    mentioned = {handle.lower() for handle in re.findall(r"@\w+", text)}
    leading = _LEADING_MENTION.match(text)
    if leading and leading.group(1).lower() not in own and not mentioned & own:
        return "not addressed to us", f"a reply to {leading.group(1)}, not to us"
    if message.channel == "twitter" and own and not mentioned & own:
        return "not addressed to us", "a post that does not mention our accounts"
    return None


def _thread_acknowledged(case: _Case) -> tuple[str, str] | None:
    message, context = case.message, case.context
    # A reply to our own acknowledgment: the subject quotes our reference and the message
    # answers a message id that carries it (we put the reference in nothing else we send).
    references = set(_REFERENCE.findall(message.subject))
    answered = " ".join(filter(None, (message.in_reply_to, *message.references)))
    if references and any(reference in answered for reference in references):
        return "thread already acknowledged", "a reply to our acknowledgment"
    if references and message.in_reply_to and _is_ours(message.in_reply_to, context):
        return "thread already acknowledged", "a reply to our acknowledgment"
    return None


def _own_mail(case: _Case) -> tuple[str, str] | None:
    message, context = case.message, case.context
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
