"""parse_mail's fast path (compat32, simple addresses read here) against policy.default.

The fast path must lose nothing: over every corpus message, and over address headers of
many shapes, it gives what parsing with ``policy.default`` (the fallback, and what the
module used before) gives, notes included. The one intended difference, RFC 2047's rule
that the space between two encoded-words is not text, has its own test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inbox_email import mime
from inbox_email.mime import Address, ParsedMail, parse_mail

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
DEMO = Path(__file__).resolve().parents[1] / "config" / "demo"
MESSAGES = sorted((CORPORA / "email-imap_tools" / "raw").rglob("*.eml")) + sorted(
    DEMO.glob("*.eml")
)

NAMES = (
    "",
    "John Doe",
    "John  Doe",
    '"Doe, John"',
    '"a \\"b\\""',
    "Jöhn Dœ",
    "Иван Петров",
    "=?utf-8?B?0JjQstCw0L0=?=",
    "=?utf-8?q?J=C3=B6hn?= Doe",
    "=?utf-8?q?x?=y",
    '"=?utf-8?q?x?="',
    "=?bogus?q?x?=",
    "=?utf-8?B?bad!?=",
    "John Q. Public",
    "O'Brien",
    "a@b",
)
SPECS = ("a@b.c", "A.B@Example.COM", "a..b@c", "a@[1.2.3.4]", '"q q"@b.c', "=?utf-8?q?x?=@d.e")
SHAPES = ("{name} <{spec}>", "{name}<{spec}>", " {name} <{spec}> ", "{spec}", "<{spec}>")
SHAPES_OF_LISTS = ("{name} <{spec}>, {spec}", "{spec} ({name})", "undisclosed-recipients:;")


def fields(parsed: ParsedMail) -> dict[str, object]:
    return {name: getattr(parsed, name) for name in ParsedMail.__slots__} | {
        "headers": dict(parsed.headers)
    }


def read_addresses(value: str) -> tuple[list[Address], tuple[str, ...]]:
    reading = mime._Reading(mime._Notes(), (), "\n")
    return mime._address_list("from", value, reading), reading.notes.as_tuple()


@pytest.mark.parametrize("path", MESSAGES, ids=lambda path: path.name)
def test_compat32_reads_each_corpus_message_as_policy_default_does(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = path.read_bytes()
    fast = parse_mail(raw)

    def unreadable(hints: tuple[str, ...]) -> mime._FastPolicy:
        raise RuntimeError("compat32 cannot read this")

    monkeypatch.setattr(mime, "_FastPolicy", unreadable)
    fallback = parse_mail(raw)

    assert fields(fast) == fields(fallback)


@pytest.mark.parametrize(
    "value",
    [
        shape.format(name=name, spec=spec)
        for shape in (*SHAPES, *SHAPES_OF_LISTS)
        for name in NAMES
        for spec in SPECS
    ],
)
def test_addresses_read_here_are_what_policy_default_reads(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = read_addresses(value)
    monkeypatch.setattr(mime, "_simple_mailboxes", lambda *arguments: None)

    slow = read_addresses(value)

    assert fast == slow


def test_space_between_adjacent_encoded_words_in_a_name_is_not_text() -> None:
    # RFC 2047 6.2; policy.default keeps the space ("MySurvey .com & C arol Ada ms").
    value = (
        "=?UTF-8?B?TXlTdXJ2ZXk=?= =?UTF-8?B?LmNvbSAmIEM=?= =?UTF-8?B?YXJvbCBBZGE=?= "
        "=?UTF-8?B?bXM=?= <carol@mysurvey.com>"
    )

    assert read_addresses(value) == (
        [Address(name="MySurvey.com & Carol Adams", address="carol@mysurvey.com")],
        (),
    )


def test_message_the_fast_parser_cannot_read_is_parsed_by_policy_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = (
        b"From: Ana <ana@example.net>\r\nTo: support@example.com\r\nSubject: hello\r\n"
        b"Message-ID: <fallback-1@example.net>\r\n\r\nMy card was charged twice.\r\n"
    )

    def header_source_parse(policy: object, lines: list[str]) -> tuple[str, str]:
        raise ValueError("not readable here")

    monkeypatch.setattr(mime._FastPolicy, "header_source_parse", header_source_parse)
    parsed = parse_mail(raw)

    assert parsed.message_id == "fallback-1@example.net"
    assert parsed.from_ == Address(name="Ana", address="ana@example.net")
    assert parsed.text == "My card was charged twice.\r\n"
