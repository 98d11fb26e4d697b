"""The acknowledgment decision: robots, our own mail and stale mail are never answered."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from inbox_daemon.interfaces import Identity
from inbox_daemon.pipeline.reply_policy import ReplyContext, decide
from tests.factories import NOW, message

CONTEXT = ReplyContext(
    can_send=True,
    own_addresses=frozenset({"support@example.com"}),
    loop_marker="inbox-daemon",
    max_ack_age_s=2 * 86400,
    dry_run=False,
    now=NOW,
)


def sender(address: str) -> Identity:
    return Identity("email", address.lower(), address, "")


def test_customer_mail_is_acknowledged() -> None:
    decision = decide(message(), CONTEXT)
    assert (decision.action, decision.send) == ("send", True)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"auto-submitted": "auto-replied"}, "Auto-Submitted: auto-replied"),
        ({"auto-submitted": "auto-generated; owner-email=x@example.org"}, "RFC 3834"),
        ({"precedence": "bulk"}, "Precedence: bulk"),
        ({"precedence": "List"}, "Precedence: List"),
        ({"precedence": "junk"}, "Precedence: junk"),
        ({"list-id": "<traders.lists.example.org>"}, "mailing-list"),
        ({"list-unsubscribe": "<mailto:leave@example.org>"}, "mailing-list"),
        ({"return-path": "<>"}, "null Return-Path"),
        ({"x-loop": "inbox-daemon"}, "X-Loop"),
        ({"x-autoreply": "yes"}, "auto-reply"),
    ],
)
def test_robot_mail_is_not_acknowledged(headers: dict[str, str], reason: str) -> None:
    decision = decide(message(headers=headers), CONTEXT)
    assert decision.action == "withheld"
    assert reason in decision.reason


def test_auto_submitted_no_is_a_person() -> None:
    assert decide(message(headers={"auto-submitted": "no"}), CONTEXT).send


@pytest.mark.parametrize(
    "address",
    [
        "MAILER-DAEMON@mx.example.net",
        "postmaster@example.net",
        "no-reply@example.net",
        "noreply@example.net",
        "do-not-reply@example.net",
        "donotreply+x@example.net",
        "bounces@lists.example.org",
    ],
)
def test_automated_senders_are_not_acknowledged(address: str) -> None:
    decision = decide(message(sender=sender(address)), CONTEXT)
    assert decision.action == "withheld"
    assert "automated sender" in decision.reason


def test_our_own_address_is_never_answered() -> None:
    decision = decide(message(sender=sender("Support@Example.com")), CONTEXT)
    assert decision.reason == "sent from our own address"


def test_reply_to_our_own_address_is_never_answered() -> None:
    own = sender("support@example.com")
    assert decide(message(reply_to=own), CONTEXT).reason == "sent from our own address"


def test_mail_without_any_address_is_not_answered() -> None:
    assert (
        decide(message(sender=Identity("email", "", "")), CONTEXT).reason
        == "no address to reply to"
    )


def test_old_mail_is_not_acknowledged() -> None:
    old = message(received_at=NOW - timedelta(days=3))
    assert decide(old, CONTEXT).reason.startswith("older than max_ack_age_s")


def test_source_without_outgoing_channel_is_not_acknowledged() -> None:
    decision = decide(message(), replace(CONTEXT, can_send=False))
    assert decision.reason == "the source has no outgoing channel configured"


def test_dry_run_records_the_decision_without_sending() -> None:
    decision = decide(message(), replace(CONTEXT, dry_run=True))
    assert (decision.action, decision.send) == ("dry_run", False)
