"""Rules, templates and language: loaded and checked at start, explained in every record."""

from __future__ import annotations

from pathlib import Path

import pytest

from inbox_daemon.config import Settings
from inbox_daemon.errors import ConfigError
from inbox_daemon.interfaces import Identity
from inbox_daemon.pipeline.classify import load_rules
from inbox_daemon.pipeline.dedupe import DedupeIndex
from inbox_daemon.pipeline.language import detect_language
from inbox_daemon.pipeline.reply_policy import ReplyContext
from inbox_daemon.pipeline.templates import TemplateSet
from inbox_daemon.pipeline.triage import load_triage
from tests.factories import NOW, message

ROOT = Path(__file__).resolve().parents[1]
TICKET_URL = "https://support.example.com/new?ref={reference}"


def rules_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_bundled_rules_route_a_hacked_account_to_risk_control_first() -> None:
    classifier = load_rules(ROOT / "config" / "rules.toml")
    hacked = message(
        subject="Account hacked", text="Someone logged in and made an unauthorized withdrawal"
    )
    labels = classifier.classify(hacked, "en")
    assert (labels.category, labels.priority, labels.team) == (
        "account_security",
        "P1",
        "risk_control",
    )
    assert any("account-compromised" in reason for reason in labels.reasons)


def test_no_rule_means_other_p4_with_the_reason_shown() -> None:
    classifier = load_rules(ROOT / "config" / "rules.toml")
    labels = classifier.classify(message(subject="Hello", text="Just saying thanks!"), "en")
    assert (labels.category, labels.priority, labels.team) == ("other", "P4", "customer_service")
    assert labels.reasons[0] == "category other: no rule matched"


def test_latin_keywords_match_whole_words_only(tmp_path: Path) -> None:
    classifier = load_rules(
        rules_file(tmp_path, '[[rules]]\nname = "api"\ncategory = "api"\nkeywords = ["api"]\n')
    )
    assert (
        classifier.classify(message(subject="", text="a rapid answer please"), "en").category
        == "other"
    )
    assert (
        classifier.classify(message(subject="", text="the API returns 500"), "en").category == "api"
    )


def test_bad_regex_is_an_error_naming_the_rule(tmp_path: Path) -> None:
    path = rules_file(
        tmp_path, '[[rules]]\nname = "broken"\ncategory = "api"\npatterns = ["(unclosed"]\n'
    )
    with pytest.raises(ConfigError, match=r"rule 'broken'.*bad regular expression"):
        load_rules(path)


def test_unknown_category_is_an_error_naming_the_rule(tmp_path: Path) -> None:
    path = rules_file(
        tmp_path, '[[rules]]\nname = "lost"\ncategory = "complaints"\nkeywords = ["x"]\n'
    )
    with pytest.raises(ConfigError, match=r"rule 'lost'.*unknown category"):
        load_rules(path)


def templates(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_bundled_template_has_reference_ticket_link_and_anti_phishing_line() -> None:
    rendered = TemplateSet(ROOT / "config" / "templates", TICKET_URL).render(
        channel="email",
        category="other",
        language="en",
        values={"reference": "FB-AAAA-BBBB", "display_name": "Ana", "subject": "Help"},
    )
    assert rendered.subject == "Re: Help [FB-AAAA-BBBB]"
    assert "FB-AAAA-BBBB" in rendered.text
    assert "https://support.example.com/new?ref=FB-AAAA-BBBB" in rendered.text
    assert "never ask for your password, your 2FA code or your seed phrase" in rendered.text


def test_template_lookup_falls_back_by_category_variant_and_language(tmp_path: Path) -> None:
    folder = templates(
        tmp_path,
        {
            "default/ack.en.txt": "en {{ reference }}",
            "default/ack.zh.txt": "zh {{ reference }}",
            "email/kyc.de.txt": "kyc-de {{ reference }}",
        },
    )
    render = TemplateSet(folder, TICKET_URL).render
    values = {"reference": "FB-1", "display_name": "", "subject": ""}
    assert (
        render(channel="email", category="kyc", language="de", values=values).text
        == "kyc-de FB-1\n"
    )
    assert (
        render(channel="email", category="api", language="zh-tw", values=values).text == "zh FB-1\n"
    )
    assert render(channel="email", category="api", language="ko", values=values).text == "en FB-1\n"


def test_template_syntax_error_fails_at_load(tmp_path: Path) -> None:
    folder = templates(tmp_path, {"default/ack.en.txt": "Hello {{ reference "})
    with pytest.raises(ConfigError, match=r"ack\.en\.txt.*template error"):
        TemplateSet(folder, TICKET_URL)


def test_template_unknown_variable_fails_at_load(tmp_path: Path) -> None:
    folder = templates(tmp_path, {"default/ack.en.txt": "Hello {{ customer_password }}"})
    with pytest.raises(ConfigError, match="customer_password"):
        TemplateSet(folder, TICKET_URL)


def test_template_cannot_reach_python_internals(tmp_path: Path) -> None:
    folder = templates(tmp_path, {"default/ack.en.txt": "{{ reference.__class__.__mro__ }}"})
    with pytest.raises(ConfigError, match="template error"):
        TemplateSet(folder, TICKET_URL)


def test_record_carries_language_labels_decision_and_rendered_reply() -> None:
    triage = load_triage(Settings(config_version=1, config_path=ROOT / "config" / "inbox.toml"))
    context = ReplyContext(True, frozenset(), "inbox-daemon", 86400 * 2, False, NOW)
    record = triage.record(
        message(), source="support-mail", context=context, index=DedupeIndex(triage.dedupe)
    )
    assert record.reference.startswith("FB-")
    assert record.language == "en"
    assert record.classification.category == "deposit_withdrawal"
    assert record.reply is not None
    assert record.reply.recipient.handle == "alice@example.net"
    assert record.reply.headers["X-Loop"] == "inbox-daemon"
    assert record.reference in record.reply.text


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Hello, my withdrawal has been stuck for three days, please help", "en"),
        ("提币三天了还没到账，请帮忙处理", "zh-cn"),
        ("Мой вывод средств завис уже три дня", "ru"),
        ("출금이 3일째 처리 중입니다", "ko"),
        ("出金が3日間止まっています", "ja"),
        ("Hola, no puedo retirar mis fondos desde ayer", "es"),
        ("ok", "und"),
        ("👍👍", "und"),
        ("https://example.com/a/b", "und"),
        ("", "und"),
    ],
)
def test_language_is_detected_or_undetermined(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_template_unknown_variable_in_an_unrendered_branch_fails_at_load(tmp_path: Path) -> None:
    text = "{{ reference }}{% if category == 'kyc' %}{{ kyc_deadline }}{% endif %}"
    folder = templates(tmp_path, {"default/ack.en.txt": text})
    with pytest.raises(ConfigError, match="kyc_deadline"):
        TemplateSet(folder, TICKET_URL)


def test_people_from_the_config_link_one_customer_across_channels() -> None:
    settings = Settings.model_validate(
        {
            "config_version": 1,
            "config_path": ROOT / "config" / "inbox.toml",
            "triage": {"people": [{"identities": ["email:alice@example.net", "telegram:77001"]}]},
        }
    )
    triage = load_triage(settings)
    context = ReplyContext(True, frozenset(), "inbox-daemon", 86400 * 2, False, NOW)
    index = DedupeIndex(triage.dedupe)
    first = triage.record(message(), source="support-mail", context=context, index=index)
    chat = message(
        "tg-1",
        channel="telegram",
        sender=Identity("telegram", "77001", "@alice_t", "Alice"),
        subject="",
        headers={},
    )
    again = triage.record(chat, source="support-bot", context=context, index=index)
    assert again.duplicate_of == first.reference
    assert again.ack.code == "duplicate"
