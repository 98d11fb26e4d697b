"""The demo mailbox in config/demo: well-formed mail, a full listing and the cases it promises."""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Iterator
from datetime import datetime
from email import message_from_bytes, policy
from email.headerregistry import AddressHeader
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest

DEMO = Path(__file__).resolve().parents[1] / "config" / "demo"
MAIL_FILES = sorted(path.name for path in DEMO.glob("*.eml"))
FOLDERS = {"INBOX", "Escalations"}

#: Defects a real client's quirks leave on purpose: Foxmail puts an encoded word inside quotes.
EXPECTED_DEFECTS = {
    "01-deposit-wrong-network-zh.eml": {("from", "InvalidHeaderDefect")},
}
DOCUMENTATION_NETWORKS = [
    ipaddress.ip_network(net) for net in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
]
EXAMPLE_DOMAIN = re.compile(r"(^|\.)example\.(com|net|org)$")


def mailbox() -> list[dict[str, Any]]:
    with (DEMO / "mailbox.toml").open("rb") as file:
        entries = tomllib.load(file)["mail"]
    assert isinstance(entries, list)
    return entries


def parse(name: str) -> EmailMessage:
    message = message_from_bytes((DEMO / name).read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def parts(message: EmailMessage) -> Iterator[EmailMessage]:
    for part in message.walk():
        assert isinstance(part, EmailMessage)
        yield part


def defects(message: EmailMessage) -> set[tuple[str, str]]:
    found = set()
    for part in parts(message):
        found |= {("", type(defect).__name__) for defect in part.defects}
        for name, value in part.items():
            found |= {(name.lower(), type(defect).__name__) for defect in value.defects}
    return found


def text_parts(message: EmailMessage) -> list[str]:
    texts = []
    for part in parts(message):
        if part.get_content_maintype() == "text" and not part.is_attachment():
            content = part.get_content()
            assert isinstance(content, str)
            texts.append(content)
    return texts


def everything(name: str) -> str:
    """Every decoded header and text body of a mail, for searching."""
    message = parse(name)
    headers = [f"{key}: {value}" for part in parts(message) for key, value in part.items()]
    return "\n".join(headers + text_parts(message))


def test_demo_has_about_twenty_mails() -> None:
    assert 18 <= len(MAIL_FILES) <= 25


def test_mailbox_lists_every_file_once_and_nothing_else() -> None:
    listed = [entry["file"] for entry in mailbox()]

    assert sorted(listed) == MAIL_FILES
    assert len(set(listed)) == len(listed)


def test_mailbox_entries_name_known_folders() -> None:
    for entry in mailbox():
        assert set(entry) == {"file", "folders"}
        assert entry["folders"], entry["file"]
        assert set(entry["folders"]) <= FOLDERS, entry["file"]
        assert len(set(entry["folders"])) == len(entry["folders"]), entry["file"]


def test_mailbox_is_in_delivery_order() -> None:
    dates = [parse(entry["file"])["Date"].datetime for entry in mailbox()]

    assert dates == sorted(dates)


@pytest.mark.parametrize("name", MAIL_FILES)
def test_mail_is_well_formed(name: str) -> None:
    raw = (DEMO / name).read_bytes()
    message = parse(name)

    assert message["Message-ID"].startswith("<") and message["Message-ID"].endswith(">")
    assert message["From"].addresses
    assert message["To"].addresses
    assert message["MIME-Version"] is not None
    date: datetime = message["Date"].datetime
    assert (date.year, date.month) == (2026, 11)
    assert date.tzinfo is not None
    assert defects(message) == EXPECTED_DEFECTS.get(name, set())
    assert max(len(line) for line in raw.split(b"\n")) <= 998
    assert b"\r" not in raw  # LF on disk; the demo converts to CRLF for IMAP


@pytest.mark.parametrize("name", MAIL_FILES)
def test_mail_text_decodes_cleanly(name: str) -> None:
    message = parse(name)
    texts = text_parts(message)

    assert texts, "every mail has a readable text part"
    for text in [*texts, str(message["Subject"]), str(message["From"])]:
        assert "\ufffd" not in text
        assert "=?" not in text  # every encoded word was decoded


@pytest.mark.parametrize("name", MAIL_FILES)
def test_mail_uses_only_invented_addresses_and_documentation_networks(name: str) -> None:
    message = parse(name)
    for part in parts(message):
        for header_name, value in part.items():
            if isinstance(value, AddressHeader):
                for address in value.addresses:
                    assert EXAMPLE_DOMAIN.search(address.domain), (header_name, address)
    places = [*message.get_all("Received", []), *text_parts(message)]
    for found in re.findall(r"(?:\[|\bIP )(\d{1,3}(?:\.\d{1,3}){3})\b", "\n".join(places)):
        ip = ipaddress.ip_address(found)
        assert ip.is_loopback or any(ip in network for network in DOCUMENTATION_NETWORKS)


@pytest.mark.parametrize("name", MAIL_FILES)
def test_mail_holds_nothing_that_looks_like_a_secret(name: str) -> None:
    text = everything(name)

    assert not re.search(r"\b(?:0x)?[0-9a-fA-F]{64}\b", text), "looks like a private key"
    assert not re.search(r"\b[xyzt]prv[1-9A-HJ-NP-Za-km-z]{100,}", text), "extended private key"
    assert not re.search(r"\b[5KL][1-9A-HJ-NP-Za-km-z]{50,51}\b", text), "WIF private key"
    assert not re.search(r"(?i)\b(seed|recovery|mnemonic) phrase\s*[:=]", text)


def charsets() -> set[str]:
    found: set[str] = set()
    for name in MAIL_FILES:
        for part in parts(parse(name)):
            charset = part.get_content_charset()
            if charset:
                found.add(charset.lower())
    return found


def test_demo_covers_the_charsets_of_real_mail() -> None:
    expected = {"gbk", "big5", "koi8-r", "iso-2022-jp", "euc-kr", "iso-8859-9", "iso-8859-1"}
    assert expected | {"utf-8"} <= charsets()


def test_demo_has_encoded_subjects_of_both_kinds() -> None:
    raw_subjects = [
        re.search(rb"^Subject: (.*(?:\n[ \t].*)*)", (DEMO / name).read_bytes(), re.MULTILINE)
        for name in MAIL_FILES
    ]
    encoded = [match.group(1) for match in raw_subjects if match and b"=?" in match.group(1)]
    assert any(b"?B?" in subject.upper() for subject in encoded)
    assert any(b"?Q?" in subject.upper() for subject in encoded)
    assert len(encoded) >= 8


@pytest.mark.parametrize(
    ("script", "pattern"),
    [
        ("Han", r"[\u4e00-\u9fff]"),
        ("Cyrillic", r"[\u0400-\u04ff]"),
        ("Kana", r"[\u3040-\u30ff]"),
        ("Hangul", r"[\uac00-\ud7a3]"),
        ("Vietnamese", r"[Ạ-ỹ]"),
        ("Turkish", r"[ığş]"),
        ("Spanish or Portuguese", r"[ñáéíóúãõç]"),
    ],
)
def test_demo_has_text_in(script: str, pattern: str) -> None:
    assert any(re.search(pattern, "\n".join(text_parts(parse(name)))) for name in MAIL_FILES)


def only(predicate_name: str, names: list[str]) -> str:
    assert len(names) >= 1, f"no demo mail is {predicate_name}"
    return names[0]


def test_demo_has_an_html_only_mail() -> None:
    html_only = [
        name
        for name in MAIL_FILES
        if {part.get_content_type() for part in parts(parse(name))} == {"text/html"}
    ]
    only("HTML-only", html_only)


def test_demo_has_a_reply_with_quoted_history() -> None:
    replies = [
        name
        for name in MAIL_FILES
        if parse(name)["In-Reply-To"]
        and re.search(r"^On .+ wrote:$\n^> ", "\n".join(text_parts(parse(name))), re.M)
    ]
    message = parse(only("a reply with quoted history", replies))
    assert message["Subject"].startswith("Re: ")
    assert str(message["In-Reply-To"]) in str(message["References"])


def test_demo_has_a_png_screenshot_attachment() -> None:
    attachments = [
        part for name in MAIL_FILES for part in parts(parse(name)) if part.is_attachment()
    ]
    [screenshot] = attachments
    assert screenshot.get_content_type() == "image/png"
    assert screenshot.get_filename()
    content = screenshot.get_content()
    assert isinstance(content, bytes)
    assert content.startswith(b"\x89PNG\r\n\x1a\n")


def test_demo_has_an_out_of_office_auto_reply() -> None:
    auto = [name for name in MAIL_FILES if parse(name)["Auto-Submitted"] == "auto-replied"]
    assert any("out of the office" in everything(name) for name in auto)


def test_demo_has_a_mailing_list_post() -> None:
    lists = [name for name in MAIL_FILES if parse(name)["List-Id"]]
    assert parse(only("a mailing-list post", lists))["Precedence"] == "list"


def test_demo_has_a_bounce_from_the_mailer_daemon() -> None:
    bounces = [name for name in MAIL_FILES if parse(name)["Return-Path"] == "<>"]
    message = parse(only("a bounce", bounces))
    assert parseaddr(str(message["From"]))[1].lower().startswith("mailer-daemon@")
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    kinds = [part.get_content_type() for part in message.iter_parts()]
    assert "message/delivery-status" in kinds


def test_demo_has_a_no_reply_notification() -> None:
    senders = [parseaddr(str(parse(name)["From"]))[1] for name in MAIL_FILES]
    assert any(sender.startswith(("no-reply@", "noreply@")) for sender in senders)


def test_demo_has_one_mail_in_two_folders() -> None:
    doubles = [entry for entry in mailbox() if len(entry["folders"]) > 1]
    [double] = doubles
    assert set(double["folders"]) == {"INBOX", "Escalations"}


def test_demo_has_a_reply_to_other_than_the_sender() -> None:
    redirected = [
        name
        for name in MAIL_FILES
        if parse(name)["Reply-To"]
        and parse(name)["Reply-To"].addresses[0].addr_spec
        != parse(name)["From"].addresses[0].addr_spec
    ]
    only("a mail whose Reply-To differs from From", redirected)


def test_demo_message_ids_are_unique() -> None:
    ids = [parse(name)["Message-ID"] for name in MAIL_FILES]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    "topic",
    [
        r"withdrawal.*(stuck|pending)|提[币領].*处理中|處理中",
        r"wrong network|选错网络|Destination Tag|MEMO",
        r"unknown device|неизвестного устройства|hacked",
        r"KYC",
        r"청산",
        r"429|rate limit|limite de requisi",
        r"bonus",
        r"đề xuất|Đề xuất",
        r"crash",
    ],
)
def test_demo_covers_topic(topic: str) -> None:
    assert any(re.search(topic, everything(name), re.IGNORECASE) for name in MAIL_FILES)
