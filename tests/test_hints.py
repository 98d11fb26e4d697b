"""Knowledge hints: the help-centre article the rules name, linked below an acknowledgment."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from inbox_daemon.errors import ConfigError
from inbox_daemon.evaluation import settings_for
from inbox_daemon.interfaces import FeedbackRecord, Identity, InboundMessage
from inbox_daemon.pipeline.dedupe import DedupeIndex
from inbox_daemon.pipeline.hints import HINT_HEADER, HintSpec, choose_hint, load_hints
from inbox_daemon.pipeline.reply_policy import ReplyContext
from inbox_daemon.pipeline.triage import Triage, load_triage
from tests.factories import NOW, message

ROOT = Path(__file__).resolve().parents[1]
WRONG_NETWORK = "https://support.example.com/hc/articles/deposit-on-the-wrong-network"


@pytest.fixture(scope="module")
def triage() -> Triage:
    return load_triage(settings_for(None))


def triaged(triage: Triage, msg: InboundMessage) -> FeedbackRecord:
    context = ReplyContext(
        can_send=True,
        own_addresses=frozenset({"support@example.com"}),
        loop_marker="inbox-daemon",
        max_ack_age_s=10 * 86400,
        dry_run=False,
        now=NOW + timedelta(minutes=1),
        rules=triage.reply_rules,
    )
    return triage.record(
        msg, source="support-mail", context=context, index=DedupeIndex(triage.dedupe)
    )


def test_the_acknowledgment_links_the_article_in_the_sender_language(triage: Triage) -> None:
    msg = message(
        "hint-1@example.net",
        subject="USDT充值选错网络，一直没有到账",
        text="我充值USDT的时候选错网络了，用了BEP20，到现在还没有到账，请帮我找回。",
    )
    record = triaged(triage, msg)
    assert record.reply is not None, record.ack
    assert record.reply.text.rstrip().endswith(
        f"我们帮助中心的这篇文章或许能立即解答您的问题：{WRONG_NETWORK}"
    )
    assert record.reply.headers[HINT_HEADER] == f"deposit-wrong-network {WRONG_NETWORK}"


def test_a_public_reply_never_carries_a_hint(triage: Triage) -> None:
    msg = message(
        "tweet:1",
        channel="twitter",
        sender=Identity("twitter", "42", "@lena", "Lena"),
        subject="",
        text="@exchange_support my account was hacked, someone changed my password!",
        meta={"public": True},
        headers={},
    )
    record = triaged(triage, msg)
    assert record.reply is not None, record.ack
    assert HINT_HEADER not in record.reply.headers and "hc/articles" not in record.reply.text


def test_the_first_fitting_hint_wins_and_keywords_narrow_it() -> None:
    hints = load_hints(ROOT / "config" / "rules.toml")
    assert (
        choose_hint(hints, "deposit_withdrawal", "My memo was missing").name
        == "deposit-missing-tag"
    )  # type: ignore[union-attr]
    assert choose_hint(hints, "deposit_withdrawal", "Where is my deposit?") is None
    assert choose_hint(hints, "kyc", "anything").name == "identity-verification"  # type: ignore[union-attr]


def test_a_hint_must_link_our_https_address(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[hints]]\nname = "x"\nurl = "http://example.com/a"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="https"):
        load_hints(rules)
    assert HintSpec(name="x", url="https://e.com/a").fits("kyc", "")
