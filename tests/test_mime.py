"""parse_mail, normalise_message_id, body_text and html_to_text on messages built here.

Each case states one behaviour of the e-mail normaliser; the real-world corpus is exercised
in test_mime_corpus.py.
"""
# Cyrillic, CJK and full-width punctuation in sample text are what these tests are about.

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from inbox_email.html_text import html_to_text
from inbox_email.mime import Address, ParsedMail, body_text, normalise_message_id, parse_mail

RUSSIAN = (
    "Здравствуйте! Я не могу вывести средства с моего счёта уже третий день. "
    "Пожалуйста, помогите разобраться с проблемой, это очень срочно."
)
CHINESE = (
    "您好，我的账户无法提现，已经等了三天了。请尽快帮我处理这个问题，谢谢！"
    "我的用户编号是一二三四五。"
)
FRENCH = (
    "Bonjour, je n'arrive pas à retirer mes fonds depuis trois jours. Pouvez-vous "
    "vérifier mon compte, s'il vous plaît ? Merci beaucoup. Grüße, Jürgen"
)


def mail(headers: bytes, body: bytes = b"hello\r\n") -> bytes:
    """A message from header lines (CRLF-separated, no trailing blank line) and a body."""
    return b"From: user@example.com\r\nTo: support@example.org\r\n" + headers + b"\r\n\r\n" + body


def text_mail(charset: bytes, body: bytes) -> bytes:
    return mail(
        b"Subject: help\r\nContent-Type: text/plain; charset=" + charset + b"\r\n"
        b"Content-Transfer-Encoding: 8bit",
        body,
    )


def encoded_word(text: str, charset: str, encoding: str) -> str:
    data = text.encode(charset)
    if encoding == "B":
        return f"=?{charset}?B?{base64.b64encode(data).decode()}?="
    quoted = "".join(
        chr(byte)
        if chr(byte).isascii() and chr(byte).isalnum()
        else "_"
        if byte == 0x20
        else f"={byte:02X}"
        for byte in data
    )
    return f"=?{charset}?Q?{quoted}?="


def all_strings(parsed: ParsedMail) -> list[str]:
    """Every piece of text parse_mail produced, for checks that must hold everywhere."""
    addresses = [parsed.from_, parsed.sender, *parsed.reply_to, *parsed.to, *parsed.cc]
    return [
        parsed.subject,
        parsed.text,
        parsed.html,
        *(part for item in addresses if item is not None for part in (item.name, item.address)),
        *parsed.headers.values(),
        *(attachment.name for attachment in parsed.attachments),
        *parsed.defects,
    ]


def has_lone_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


# --- charsets ---------------------------------------------------------------------------


def test_body_charset_unknown_to_python_is_recovered_and_noted() -> None:
    parsed = parse_mail(text_mail(b'"x-unknown"', RUSSIAN.encode("cp1251")))

    assert parsed.text == RUSSIAN
    assert any("unknown charset 'x-unknown'" in defect for defect in parsed.defects)


@pytest.mark.parametrize(
    ("really", "sample"), [("latin-1", FRENCH), ("gbk", CHINESE), ("cp1251", RUSSIAN)]
)
def test_body_labelled_utf8_but_in_another_charset_is_recovered(really: str, sample: str) -> None:
    parsed = parse_mail(text_mail(b"utf-8", sample.encode(really)))

    assert parsed.text == sample
    assert any("not valid utf-8" in defect for defect in parsed.defects)


def test_body_labelled_gb2312_with_gbk_characters_reads_as_the_superset() -> None:
    sample = "镕基的账户"  # 镕 is in GBK, not in GB2312
    parsed = parse_mail(text_mail(b"gb2312", sample.encode("gbk")))

    assert parsed.text == sample


def test_correctly_labelled_body_decodes_without_defects() -> None:
    parsed = parse_mail(text_mail(b"koi8-r", RUSSIAN.encode("koi8-r")))

    assert parsed.text == RUSSIAN
    assert parsed.defects == ()


def test_8bit_body_without_charset_is_read_as_utf8_and_noted() -> None:
    raw = mail(b"Subject: x\r\nContent-Transfer-Encoding: 8bit", FRENCH.encode())

    parsed = parse_mail(raw)

    assert parsed.text == FRENCH
    assert any("8-bit text without a charset" in defect for defect in parsed.defects)


@pytest.mark.parametrize("label", [b"unicode_escape", b"utf-7"])
def test_charsets_that_yield_lone_surrogates_never_leak_them(label: bytes) -> None:
    parsed = parse_mail(text_mail(label, b"a \\ud800 b +2AA- c"))

    assert not any(has_lone_surrogate(text) for text in all_strings(parsed))


# --- headers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("charset", "encoding", "subject"),
    [
        ("iso-2022-jp", "B", "お問い合わせ：出金できません"),
        ("gb2312", "B", "无法提现，请帮助"),
        ("koi8-r", "B", "Не могу вывести средства"),
        ("koi8-r", "Q", "Не могу вывести средства"),
        ("utf-8", "B", "Grüße 🎉 出金"),
        ("utf-8", "Q", "Grüße aus Köln"),
    ],
)
def test_subject_encoded_words_decode_in_each_charset(
    charset: str, encoding: str, subject: str
) -> None:
    raw = mail(b"Subject: Re: " + encoded_word(subject, charset, encoding).encode())

    assert parse_mail(raw).subject == f"Re: {subject}"


def test_subject_split_across_encoded_words_mid_character_joins_the_bytes() -> None:
    data = "出金できません".encode()
    first, second = base64.b64encode(data[:4]).decode(), base64.b64encode(data[4:]).decode()
    raw = mail(f"Subject: =?utf-8?B?{first}?=\r\n =?UTF-8?B?{second}?= (urgent)".encode())

    assert parse_mail(raw).subject == "出金できません (urgent)"


def test_subject_is_unfolded_onto_one_line_and_first_occurrence_wins() -> None:
    raw = mail(b"Subject: withdrawal\r\n   still\r\n\tpending  \r\nSubject: second subject")

    assert parse_mail(raw).subject == "withdrawal still pending"


def test_malformed_encoded_word_is_kept_as_written() -> None:
    raw = mail(b"Subject: =?utf-8?B?####?= and =?NONE?B?VGVzdA==?=")

    parsed = parse_mail(raw)

    assert parsed.subject == "=?utf-8?B?####?= and Test"
    assert parsed.defects


def test_raw_utf8_header_bytes_are_decoded() -> None:
    raw = mail("Subject: Grüße, ça va?\r\nCc: Jürgen Groß <j@example.de>".encode())

    parsed = parse_mail(raw)

    assert parsed.subject == "Grüße, ça va?"
    assert parsed.cc == (Address(name="Jürgen Groß", address="j@example.de"),)


def test_raw_8bit_header_bytes_use_the_charset_the_body_declares() -> None:
    raw = mail(
        b"Subject: " + "Проблема с выводом".encode("cp1251") + b"\r\n"
        b"Content-Type: text/plain; charset=windows-1251",
        RUSSIAN.encode("cp1251"),
    )

    parsed = parse_mail(raw)

    assert parsed.subject == "Проблема с выводом"
    assert parsed.text == RUSSIAN
    assert any("raw 8-bit bytes" in defect for defect in parsed.defects)


def test_undecodable_header_bytes_never_leave_lone_surrogates() -> None:
    raw = mail(b"Subject: \xff\xfe\x80 broken\r\nX-Junk: \xc3\x28\xa0\xa1", b"\xff\xfe body")

    parsed = parse_mail(raw)

    assert not any(has_lone_surrogate(text) for text in all_strings(parsed))
    assert parsed.subject.endswith("broken")


def test_addresses_are_decoded_with_names_and_bare_addr_specs() -> None:
    name = encoded_word("Иван Петров", "utf-8", "B")
    raw = (
        f"From: {name} <Ivan@Example.COM>\r\nSender: bot@example.com\r\n"
        'To: "Support, Team" <support@example.org>, other@example.org\r\n'
        "Cc: undisclosed-recipients:;\r\nReply-To: a@example.com, b@example.com\r\n"
        "Subject: x\r\n\r\nbody"
    ).encode()

    parsed = parse_mail(raw)

    assert parsed.from_ == Address(name="Иван Петров", address="Ivan@Example.COM")
    assert parsed.sender == Address(name="", address="bot@example.com")
    assert parsed.to == (
        Address(name="Support, Team", address="support@example.org"),
        Address(name="", address="other@example.org"),
    )
    assert parsed.cc == ()
    assert [item.address for item in parsed.reply_to] == ["a@example.com", "b@example.com"]


def test_unquoted_display_name_holding_at_is_a_name_not_the_address() -> None:
    raw = mail(
        b"Subject: x\r\nReply-To: support@bank.example <attacker@evil.example>\r\n"
        b"Cc: a@example.com, Mikel@Lindsaar <m@example.com>, c@example.com"
    )

    parsed = parse_mail(raw)

    assert parsed.reply_to == (
        Address(name="support@bank.example", address="attacker@evil.example"),
    )
    assert [item.address for item in parsed.cc] == [
        "a@example.com",
        "m@example.com",
        "c@example.com",
    ]


def test_headers_map_lower_cased_names_to_decoded_values_joining_repeats() -> None:
    raw = mail(
        b"Subject: =?utf-8?q?caf=C3=A9?=\r\nX-Tag: one\r\nx-tag: two\r\nReceived: from a\r\n by b"
    )

    headers = parse_mail(raw).headers

    assert headers["subject"] == "café"
    assert headers["x-tag"] == "one\ntwo"
    assert headers["received"] == "from a by b"
    assert all(name == name.lower() for name in headers)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Tue, 10 May 2005 11:26:39 -0600", datetime(2005, 5, 10, 17, 26, 39, tzinfo=UTC)),
        ("10 May 2005 11:26:39 -0000", datetime(2005, 5, 10, 11, 26, 39, tzinfo=UTC)),
        ("Tue, 10 May 2005 11:26 +0100 (CET)", datetime(2005, 5, 10, 10, 26, tzinfo=UTC)),
        (
            "Date: 10 May 2005 11:26:39 +0200 extra junk",
            datetime(2005, 5, 10, 9, 26, 39, tzinfo=UTC),
        ),
        ("<HR>", None),
        ("Tue, 45 Foo 2005 99:99:99", None),
    ],
)
def test_date_is_utc_aware_or_none(value: str, expected: datetime | None) -> None:
    parsed = parse_mail(mail(f"Date: {value}".encode()))

    assert parsed.date == expected
    if expected is None:
        assert any("header date" in defect for defect in parsed.defects)


def test_missing_date_is_none_without_a_defect() -> None:
    parsed = parse_mail(mail(b"Subject: x"))

    assert parsed.date is None
    assert parsed.defects == ()


def test_threading_headers_are_normalised_in_order() -> None:
    raw = mail(
        b"Message-ID: <Root.1@Mail.Example.COM>\r\n"
        b"In-Reply-To: <B@Example.com> (sent by a mailer)\r\n"
        b"References: <A@Example.com>\r\n <B@Example.com> <>, <A@example.com>"
    )

    parsed = parse_mail(raw)

    assert parsed.message_id == "Root.1@mail.example.com"
    assert parsed.in_reply_to == "B@example.com"
    assert parsed.references == ("A@example.com", "B@example.com")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<ABC@Example.COM>", "ABC@example.com"),
        ("  <abc.def@Example.com>  ", "abc.def@example.com"),
        ("(comment) <x@Y.org> (trailing (nested) comment)", "x@y.org"),
        ("<first@Example.com> <second@example.com>", "first@example.com"),
        ("<abc@\r\n example.com>", "abc@example.com"),
        ("bare@Example.COM", "bare@example.com"),
        ("", None),
        (None, None),
        ("<>", None),
        ("no at sign", None),
        ("<no-at-sign>", None),
        ("<@example.com>", None),
        ("<local@>", None),
        ("not an id @ all", None),
    ],
)
def test_message_id_normalisation(value: str | None, expected: str | None) -> None:
    assert normalise_message_id(value) == expected


# --- bodies and attachments -------------------------------------------------------------


def multipart(boundary: bytes, *parts: bytes, close: bool = True) -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return body + (b"--" + boundary + b"--\r\n" if close else b"")


def test_attachments_have_decoded_names_lower_case_types_and_payload_digests() -> None:
    pdf = b"%PDF-1.4 pretend\r\n" * 50
    image = bytes(range(256))
    body = multipart(
        b"b1",
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nSee attached.",
        b"Content-Type: Application/PDF\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''Re%C3%A7u%20n%C2%B01.pdf\r\n\r\n"
        + base64.encodebytes(pdf),
        b'Content-Type: image/png; name="=?utf-8?B?'
        + base64.b64encode("снимок.png".encode())
        + b'?="\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <img1>\r\n\r\n'
        + base64.encodebytes(image),
        b"Content-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-ID: <logo@x>\r\n\r\nR0lGODlh",
    )
    raw = mail(b'Content-Type: multipart/mixed; boundary="b1"', body)

    parsed = parse_mail(raw)

    assert parsed.text == "See attached."
    assert [(item.name, item.content_type, item.size_bytes) for item in parsed.attachments] == [
        ("Reçu n°1.pdf", "application/pdf", len(pdf)),
        ("снимок.png", "image/png", len(image)),
        ("", "image/gif", 6),
    ]
    assert parsed.attachments[0].sha256 == hashlib.sha256(pdf).hexdigest()
    assert parsed.attachments[1].sha256 == hashlib.sha256(image).hexdigest()


def test_inline_text_without_filename_is_body_and_named_text_is_an_attachment() -> None:
    body = multipart(
        b"b2",
        b"Content-Type: text/plain\r\nContent-Disposition: inline\r\n\r\nfirst",
        b"Content-Type: text/plain\r\nContent-ID: <t@x>\r\n\r\n second",
        b"Content-Type: text/plain; name=notes.txt\r\n\r\nnot body",
        b"Content-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nnot body either",
    )
    parsed = parse_mail(mail(b"Content-Type: multipart/mixed; boundary=b2", body))

    assert parsed.text == "first second"
    assert [(item.name, item.size_bytes) for item in parsed.attachments] == [
        ("notes.txt", 8),
        ("", 15),
    ]


def test_enclosed_message_is_one_attachment_measured_as_written() -> None:
    enclosed = (
        b"From: someone@example.com\r\nSubject: original\r\n"
        b"Content-Type: multipart/mixed; boundary=in\r\n\r\n"
        + multipart(b"in", b"Content-Type: text/plain\r\n\r\ninner text")
    )
    body = multipart(
        b"out",
        b"Content-Type: text/plain\r\n\r\nForwarding this.",
        b"Content-Type: message/rfc822\r\n\r\n" + enclosed,
    )
    parsed = parse_mail(mail(b"Content-Type: multipart/mixed; boundary=out", body))

    assert parsed.text == "Forwarding this."
    (attachment,) = parsed.attachments
    assert attachment.content_type == "message/rfc822"
    assert attachment.size_bytes == len(enclosed)
    assert attachment.sha256 == hashlib.sha256(enclosed).hexdigest()


def test_unquoted_outlook_boundary_with_equals_sign_splits_the_parts() -> None:
    boundary = b"----=_NextPart_000_0093_01C81419.EB75E850"
    body = multipart(
        boundary,
        b"Content-Type: text/plain\r\n\r\nplain words",
        b"Content-Type: text/html\r\n\r\n<p>html words</p>",
    )
    raw = mail(b"Content-Type: multipart/alternative; boundary=" + boundary, body)

    parsed = parse_mail(raw)

    assert (parsed.text, parsed.html) == ("plain words", "<p>html words</p>")


def test_unquoted_filename_with_spaces_is_kept_whole() -> None:
    body = multipart(b"b3", b"Content-Type: text/plain; name=This is a test.txt\r\n\r\nhello")
    parsed = parse_mail(mail(b"Content-Type: multipart/mixed; boundary=b3", body))

    assert [item.name for item in parsed.attachments] == ["This is a test.txt"]


def test_truncated_multipart_keeps_what_arrived() -> None:
    body = multipart(
        b"cut",
        b"Content-Type: text/plain\r\n\r\nhello there",
        b"Content-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\nJVBERi0xLjQK\r\nJVBERi",
        close=False,
    )
    parsed = parse_mail(mail(b"Content-Type: multipart/mixed; boundary=cut", body))

    assert parsed.text == "hello there"
    assert [item.name for item in parsed.attachments] == ["a.pdf"]
    assert any("CloseBoundaryNotFoundDefect" in defect for defect in parsed.defects)


def test_multipart_without_its_boundary_is_read_as_text() -> None:
    raw = mail(b"Content-Type: multipart/mixed; boundary=nowhere", b"just words\r\n")

    parsed = parse_mail(raw)

    assert parsed.text == "just words\r\n"
    assert any("StartBoundaryNotFoundDefect" in defect for defect in parsed.defects)


def test_html_only_mail_body_text_comes_from_the_html() -> None:
    html = b"<html><head><style>p{}</style></head><body><p>Funds&nbsp;missing</p></body></html>"
    parsed = parse_mail(mail(b"Content-Type: text/html; charset=utf-8", html))

    assert parsed.text == ""
    assert body_text(parsed) == "Funds missing"


def test_body_text_prefers_the_text_part_with_unix_line_ends() -> None:
    body = multipart(
        b"alt",
        b"Content-Type: text/plain\r\n\r\nline one\r\nline two",
        b"Content-Type: text/html\r\n\r\n<p>other</p>",
    )
    parsed = parse_mail(mail(b"Content-Type: multipart/alternative; boundary=alt", body))

    assert body_text(parsed) == "line one\nline two"


# --- hostile input ----------------------------------------------------------------------


def test_zero_byte_message_gives_empty_fields_and_a_defect() -> None:
    parsed = parse_mail(b"")

    assert (parsed.subject, parsed.text, parsed.html, parsed.from_) == ("", "", "", None)
    assert parsed.attachments == ()
    assert parsed.defects == ("empty message",)


@pytest.mark.parametrize("seed", range(5))
def test_binary_garbage_gives_empty_fields_and_a_defect(seed: int) -> None:
    garbage = b"\x00" + random.Random(seed).randbytes(4096)

    parsed = parse_mail(garbage)

    assert (parsed.subject, parsed.text, parsed.from_, parsed.headers) == ("", "", None, {})
    assert parsed.defects


@pytest.mark.parametrize("seed", range(20))
def test_mutated_messages_never_raise_or_leak_surrogates(seed: int) -> None:
    rng = random.Random(seed)
    sample = bytearray(
        mail(
            b'Subject: =?utf-8?q?caf=C3=A9?=\r\nContent-Type: multipart/mixed; boundary="m"',
            multipart(
                b"m",
                b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + FRENCH.encode(),
                b"Content-Type: application/pdf; name=x.pdf\r\nContent-Transfer-Encoding: "
                b"base64\r\n\r\nJVBERi0xLjQK",
            ),
        )
    )
    for _ in range(40):
        sample[rng.randrange(len(sample))] = rng.randrange(256)

    parsed = parse_mail(bytes(sample))

    assert not any(has_lone_surrogate(text) for text in all_strings(parsed))


def enclosed_chain(depth: int) -> bytes:
    raw = b"Subject: innermost\r\n\r\ndeep words\r\n"
    for level in range(depth):
        raw = b"Subject: level %d\r\nContent-Type: message/rfc822\r\n\r\n" % level + raw
    return b"From: user@example.com\r\n" + raw


def multipart_chain(depth: int) -> bytes:
    inner = b"Content-Type: text/plain\r\n\r\ndeep words"
    for level in range(depth):
        boundary = b"n%d" % level
        inner = (
            b"Content-Type: multipart/mixed; boundary="
            + boundary
            + b"\r\n\r\n"
            + multipart(boundary, inner)
        )
    return b"From: user@example.com\r\nSubject: level top\r\n" + inner


@pytest.mark.parametrize("chain", [enclosed_chain, multipart_chain])
def test_message_nested_a_thousand_times_is_read_without_exhausting_the_stack(
    chain: Callable[[int], bytes],
) -> None:
    parsed = parse_mail(chain(1000))

    assert parsed.from_ == Address(name="", address="user@example.com")
    assert parsed.subject.startswith("level")
    assert any("nested" in defect for defect in parsed.defects)


def test_multipart_nesting_beyond_the_walk_limit_is_reported_not_read() -> None:
    parsed = parse_mail(multipart_chain(100))

    assert parsed.text == ""
    assert any("nested deeper than" in defect for defect in parsed.defects)


def test_thirty_megabyte_message_parses_whole() -> None:
    payload = random.Random(30).randbytes(15 * 1024 * 1024)
    text = "".join(f"Строка {number}: the quick brown fox.\r\n" for number in range(250_000))
    body = multipart(
        b"big",
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + text.encode(),
        b"Content-Type: application/octet-stream; name=blob.bin\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(payload),
    )
    raw = mail(b"Content-Type: multipart/mixed; boundary=big", body)
    assert len(raw) > 30 * 1024 * 1024

    parsed = parse_mail(raw)

    assert parsed.text == text
    (attachment,) = parsed.attachments
    assert attachment.size_bytes == len(payload)
    assert attachment.sha256 == hashlib.sha256(payload).hexdigest()


# --- html_to_text -----------------------------------------------------------------------


def test_html_to_text_drops_head_scripts_and_styles() -> None:
    html = (
        "<html><head><title>Title</title><style>p {color: red}</style></head>"
        "<body><script>alert('x')</script><p>Visible</p><noscript>shown</noscript></body></html>"
    )

    assert html_to_text(html) == "Visible\n\nshown"


def test_html_to_text_breaks_lines_at_blocks_and_br_and_collapses_blank_runs() -> None:
    html = "<div>one</div><div>two<br>three</div><p>para</p><br><br><br><br><p>after</p>"

    assert html_to_text(html) == "one\ntwo\nthree\n\npara\n\nafter"


def test_html_to_text_marks_list_items_and_nests_them() -> None:
    html = "<ul><li>first</li><li><p>second</p></li><li>third<ul><li>inner</li></ul></li></ul>"

    assert html_to_text(html) == "- first\n- second\n- third\n  - inner"


def test_html_to_text_decodes_entities_and_collapses_source_whitespace() -> None:
    html = "<p>Fish &amp; chips&nbsp;&lt;3 &#8364;5\n   and   &eacute;clairs</p>"

    assert html_to_text(html) == "Fish & chips <3 €5 and éclairs"


def test_html_to_text_adds_the_url_only_when_the_link_text_does_not_say_it() -> None:
    html = (
        '<p><a href="https://example.com/reset?t=1">Reset password</a> or '
        '<a href="https://example.com/">example.com</a> or '
        '<a href="mailto:help@example.com">help@example.com</a> '
        '<a href="#top">top</a></p>'
    )

    assert html_to_text(html) == (
        "Reset password (https://example.com/reset?t=1) or example.com or help@example.com top"
    )


def test_html_to_text_keeps_preformatted_text() -> None:
    html = "<p>Log:</p><pre>  line 1\n    line 2\n</pre><p>end</p>"

    assert html_to_text(html) == "Log:\n\n  line 1\n    line 2\n\nend"


def test_html_to_text_handles_very_deep_nesting() -> None:
    html = "<div>" * 5000 + "deep" + "</div>" * 5000

    assert html_to_text(html) == "deep"


@pytest.mark.parametrize("html", ["", "   ", "<html></html>", "<!-- only a comment -->"])
def test_html_to_text_of_nothing_is_empty(html: str) -> None:
    assert html_to_text(html) == ""
