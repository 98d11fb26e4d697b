"""The acknowledgment decision: robots, chatter, spam and our own mail are never answered."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from inbox_daemon.errors import ConfigError
from inbox_daemon.interfaces import Identity
from inbox_daemon.pipeline.reply_policy import ReplyContext, decide, load_reply_rules
from tests.factories import NOW, message

ROOT = Path(__file__).resolve().parents[1]
RULES = load_reply_rules(ROOT / "config" / "reply_rules.toml")
CONTEXT = ReplyContext(
    can_send=True,
    own_addresses=frozenset({"support@example.com"}),
    loop_marker="inbox-daemon",
    max_ack_age_s=2 * 86400,
    dry_run=False,
    now=NOW,
    rules=RULES,
)


def sender(address: str) -> Identity:
    return Identity("email", address.lower(), address, "")


def social(channel: str, text: str, handle: str = "@someone") -> object:
    return message(
        channel=channel,
        subject="",
        text=text,
        full_text=text,
        headers={},
        sender=Identity(channel, handle, handle),
    )


def test_customer_mail_is_acknowledged() -> None:
    decision = decide(message(), CONTEXT)
    assert (decision.action, decision.send, decision.code) == ("send", True, "")


@pytest.mark.parametrize(
    ("headers", "code", "reason"),
    [
        ({"auto-submitted": "auto-replied"}, "auto-submitted", "Auto-Submitted: auto-replied"),
        (
            {"auto-submitted": "auto-generated; owner-email=x@example.org"},
            "auto-submitted",
            "RFC 3834",
        ),
        ({"x-autoreply": "yes"}, "auto-submitted", "X-Autoreply"),
        ({"x-loop": "inbox-daemon"}, "auto-submitted", "X-Loop"),
        ({"precedence": "bulk"}, "bulk/list", "Precedence: bulk"),
        ({"precedence": "List"}, "bulk/list", "Precedence: List"),
        ({"precedence": "junk"}, "bulk/list", "Precedence: junk"),
        ({"list-id": "<traders.lists.example.org>"}, "bulk/list", "mailing-list"),
        ({"list-unsubscribe": "<mailto:leave@example.org>"}, "bulk/list", "mailing-list"),
        ({"return-path": "<>"}, "mailer-daemon bounce", "null Return-Path"),
        (
            {"content-type": "multipart/report; report-type=delivery-status"},
            "mailer-daemon bounce",
            "delivery status",
        ),
    ],
)
def test_robot_mail_is_not_acknowledged(headers: dict[str, str], code: str, reason: str) -> None:
    decision = decide(message(headers=headers), CONTEXT)
    assert (decision.action, decision.code) == ("withheld", code)
    assert reason in decision.reason


def test_bounce_wins_over_auto_submitted() -> None:
    headers = {"return-path": "<>", "auto-submitted": "auto-replied"}
    assert decide(message(headers=headers), CONTEXT).code == "mailer-daemon bounce"


def test_out_of_office_wins_over_auto_submitted() -> None:
    ooo = message(
        subject="Automatic reply: We received your message [FB-AAAA-BBBB]",
        text="I am out of the office until 2 December.",
        headers={"auto-submitted": "auto-replied"},
    )
    assert decide(ooo, CONTEXT).code == "out-of-office"


def test_auto_submitted_no_is_a_person() -> None:
    assert decide(message(headers={"auto-submitted": "no"}), CONTEXT).send


@pytest.mark.parametrize(
    ("address", "code"),
    [
        ("MAILER-DAEMON@mx.example.net", "mailer-daemon bounce"),
        ("postmaster@example.net", "mailer-daemon bounce"),
        ("no-reply@example.net", "noreply sender"),
        ("noreply@example.net", "noreply sender"),
        ("do-not-reply@example.net", "noreply sender"),
        ("donotreply+x@example.net", "noreply sender"),
        ("bounces@lists.example.org", "noreply sender"),
    ],
)
def test_automated_senders_are_not_acknowledged(address: str, code: str) -> None:
    assert decide(message(sender=sender(address)), CONTEXT).code == code


@pytest.mark.parametrize(
    ("subject", "text"),
    [
        ("Out of Office: Re: your ticket", "Back next week."),
        ("Respuesta automática", "Estoy de vacaciones hasta el 5 de diciembre."),
        ("Abwesenheitsnotiz", "Ich bin bis einschließlich 29.11. nicht im Büro."),
        ("Re: 工单", "您好，我目前正在休假，12月1日回来。"),
        ("Ответ", "Я в отпуске до 3 декабря, отвечу после возвращения."),
        ("Hello", "I'm on annual leave until Monday and will reply when I'm back."),
    ],
)
def test_out_of_office_replies_in_many_languages(subject: str, text: str) -> None:
    decision = decide(message(subject=subject, text=text), CONTEXT)
    assert decision.code == "out-of-office", decision


def test_a_customer_mentioning_a_holiday_is_still_answered() -> None:
    hacked = message(
        subject="Account hacked",
        text="I was on vacation last week and someone withdrew all my BTC!",
    )
    assert decide(hacked, CONTEXT).send


@pytest.mark.parametrize(
    ("channel", "text"),
    [
        ("email", "We are an SEO agency and can get your website ranking on the first page."),
        ("email", "Your mailbox storage is full. Re-validate your mailbox to keep receiving mail."),
        ("email", "Invoice #4411 is now 30 days overdue, open the attached invoice to pay."),
        ("twitter", "FREE 1000 USDT AIRDROP!! Connect your wallet to claim @exchange_support"),
        ("telegram", "Заработок от 300$ в день, без вложений, пиши в лс"),
    ],
)
def test_spam_and_phishing_sent_to_us_is_not_acknowledged(channel: str, text: str) -> None:
    msg = social(channel, text) if channel != "email" else message(text=text)
    assert decide(msg, CONTEXT).code == "spam/phishing"


def test_a_customer_reporting_phishing_is_answered() -> None:
    report = message(subject="Phishing?", text="I got an email asking for my 2FA code, is it you?")
    assert decide(report, CONTEXT).send


@pytest.mark.parametrize(
    ("channel", "text"),
    [
        ("telegram", "@dan_k lol same, holding till 100k"),
        ("twitter", "gm $BTC looking strong today #crypto #exchange"),
        ("twitter", "RT @exchange_support: maintenance tonight"),
    ],
)
def test_chatter_not_addressed_to_us_is_not_acknowledged(channel: str, text: str) -> None:
    assert decide(social(channel, text), CONTEXT).code == "not addressed to us"


def test_a_mention_of_our_account_is_answered() -> None:
    assert decide(social("twitter", "@exchange_support my withdrawal is stuck"), CONTEXT).send


def test_telegram_message_to_us_without_mention_is_answered() -> None:
    assert decide(social("telegram", "my deposit has not arrived"), CONTEXT).send


@pytest.mark.parametrize(
    ("channel", "text"),
    [
        ("twitter", "Hi, I cannot log in since the update"),
        ("telegram", "@dan_k told me to write here: my deposit has not arrived"),
    ],
)
def test_a_direct_message_is_addressed_to_us_whatever_it_mentions(channel: str, text: str) -> None:
    direct = replace(social(channel, text), meta={"public": False})
    assert decide(direct, CONTEXT).send


def test_reply_to_our_acknowledgment_is_not_acknowledged_again() -> None:
    follow_up = message(
        subject="Re: [FB-7K2Q-9MXA] We received your message",
        in_reply_to="ack.FB-7K2Q-9MXA@exchange.example",
    )
    decision = decide(follow_up, CONTEXT)
    assert decision.code == "thread already acknowledged"


def test_our_own_address_is_never_answered() -> None:
    decision = decide(message(sender=sender("Support@Example.com")), CONTEXT)
    assert (decision.code, decision.reason) == ("own address", "sent from our own address")


def test_reply_to_our_own_address_is_never_answered() -> None:
    own = sender("support@example.com")
    assert decide(message(reply_to=own), CONTEXT).code == "own address"


def test_mail_without_any_address_is_not_answered() -> None:
    assert decide(message(sender=Identity("email", "", "")), CONTEXT).code == "no recipient"


def test_old_mail_is_not_acknowledged() -> None:
    old = message(received_at=NOW - timedelta(days=3))
    assert decide(old, CONTEXT).reason.startswith("older than max_ack_age_s")


def test_source_without_outgoing_channel_is_not_acknowledged() -> None:
    decision = decide(message(), replace(CONTEXT, can_send=False))
    assert decision.code == "no outgoing channel"


def test_dry_run_records_the_decision_without_sending() -> None:
    decision = decide(message(), replace(CONTEXT, dry_run=True))
    assert (decision.action, decision.send) == ("dry_run", False)


def test_reply_rules_with_a_bad_regex_fail_at_load(tmp_path: Path) -> None:
    path = tmp_path / "reply_rules.toml"
    path.write_text('[[withhold]]\nname = "bad"\ncode = "spam/phishing"\npatterns = ["(x"]\n')
    with pytest.raises(ConfigError, match="rule 'bad'"):
        load_reply_rules(path)


def test_reply_rules_with_an_unknown_code_fail_at_load(tmp_path: Path) -> None:
    path = tmp_path / "reply_rules.toml"
    path.write_text('[[withhold]]\nname = "x"\ncode = "maybe"\nkeywords = ["x"]\n')
    with pytest.raises(ConfigError, match=r"withhold\.0\.code"):
        load_reply_rules(path)


def test_reply_rule_without_keywords_or_patterns_fails_at_load(tmp_path: Path) -> None:
    path = tmp_path / "reply_rules.toml"
    path.write_text('[[withhold]]\nname = "empty"\ncode = "spam/phishing"\n')
    with pytest.raises(ConfigError, match="rule 'empty' needs keywords or patterns"):
        load_reply_rules(path)


def test_reply_rule_names_must_be_unique(tmp_path: Path) -> None:
    rule = '[[withhold]]\nname = "twice"\ncode = "spam/phishing"\nkeywords = ["x"]\n'
    path = tmp_path / "reply_rules.toml"
    path.write_text(rule + rule)
    with pytest.raises(ConfigError, match="repeated: twice"):
        load_reply_rules(path)


@pytest.mark.parametrize(
    ("text", "withheld"),
    [
        ("Gewinnspiel! Jetzt mitmachen", True),  # a keyword, whole word, any case
        ("Gewinnspiele für alle", True),  # a trailing * lets the word go on
        ("Das Gewinnspielverbot gilt", False),  # not inside another word
        ("限时空投活动，立即领取", True),  # Chinese matches anywhere
    ],
)
def test_reply_rule_keywords_match_like_classification_keywords(
    tmp_path: Path, text: str, withheld: bool
) -> None:
    path = tmp_path / "reply_rules.toml"
    path.write_text(
        '[[withhold]]\nname = "contest"\ncode = "spam/phishing"\n'
        'keywords = ["gewinnspiel", "gewinnspiele*", "空投活动"]\n',
        encoding="utf-8",
    )
    context = replace(CONTEXT, rules=load_reply_rules(path))
    decision = decide(message(text=text, subject=""), context)
    assert (decision.code == "spam/phishing") is withheld


def test_auto_reply_subject_is_read_at_the_start_of_the_subject_only() -> None:
    quoted = message(subject="Question", text="Hello,\n\nAutomatic reply: see below\n")
    assert decide(quoted, CONTEXT).code != "out-of-office"
    assert decide(message(subject="Automatic reply: away"), CONTEXT).code == "out-of-office"
