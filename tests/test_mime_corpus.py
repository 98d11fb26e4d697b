"""parse_mail over every message of the imap_tools corpus, compared with imap_tools' results.

The corpus (``../shared/corpora/email-imap_tools``, Apache-2.0, see its SOURCE.md) holds 113
raw messages and, for each, what imap_tools' ``MailMessage`` returns. None may make
parse_mail raise, and each compared field must equal imap_tools' value, except where our
definition differs on purpose: :data:`DEVIATIONS` names each such file and field, says why,
and states what we return instead. A declared deviation that no longer deviates fails too,
so the table stays true.

Comparison rules that hold for every file (our definitions, applied to imap_tools' side):

- ``subject``: ours is on one line (whitespace runs folded, ends stripped); so is theirs
  before comparing.
- ``html``: imap_tools rewrites the charset of the first ``<meta … content-type …>`` to
  utf-8 (README, SOURCE.md); the same rewrite is applied to ours.
- ``date``: their ``1900-01-01T00:00:00`` means "no usable date", i.e. our ``None``; their
  naive datetimes are UTC; ours are compared as UTC instants.
- The 19 files written with bare LF line ends were evidently turned into expectations from
  a CRLF checkout (``attachment_inline1.eml`` has ``\\n`` where its expectation says
  ``\\r\\n``), so for them ``text`` and ``html`` are compared with CRLF read as LF.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from inbox_email.mime import ParsedMail, parse_mail

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "email-imap_tools"
RAW = CORPUS / "raw"
EXPECTED = CORPUS / "expected"
MESSAGES = sorted(path.relative_to(RAW).as_posix() for path in RAW.glob("**/*.eml"))
FIELDS = ("subject", "from_", "to", "cc", "date", "text", "html", "attachments")

NO_DATE = "1900-01-01T00:00:00"
META_CONTENT_TYPE = re.compile(r"<\s*meta\s[^>]*?content-type[^>]*>", re.IGNORECASE)
META_CHARSET = re.compile(r"charset\s*=\s*[a-zA-Z0-9_:.+-]+", re.IGNORECASE)

# An attachment as compared: name, content type, size in bytes, sha256 of the content.
AttachmentRow = tuple[str, str, int, str]
Check = Callable[[Any, Any, bytes], bool]


@dataclass(frozen=True)
class Deviation:
    """Where our value differs from imap_tools' on purpose.

    Attributes:
        reason: why ours differs.
        check: given (ours, theirs, raw message bytes), whether ours is what we intend.
    """

    reason: str
    check: Check


# --- the checks a deviation can make ------------------------------------------------------


def equals(value: object) -> Check:
    """Ours is exactly ``value``."""
    return lambda ours, theirs, raw: bool(ours == value)


def strict_prefix_of_theirs() -> Check:
    """Ours is what theirs starts with: they append the parts of an enclosed message."""
    return lambda ours, theirs, raw: bool(theirs.startswith(ours) and len(ours) < len(theirs))


def recovered(snippet: str) -> Check:
    """Ours holds the recovered ``snippet``; stripped of non-ASCII both read the same.

    imap_tools decodes with ``errors="ignore"``, so its text is ours without the
    characters we recovered.
    """

    def check(ours: str, theirs: str, raw: bytes) -> bool:
        return snippet in ours and ascii_only(ours) == ascii_only(theirs)

    return check


def recovered_from_mislabel(snippet: str) -> Check:
    """Ours holds ``snippet``, which imap_tools' decoding with the wrong label garbled."""
    return lambda ours, theirs, raw: snippet in ours and snippet not in theirs


def first_attachments_with_enclosed_as_written(count: int) -> Check:
    """Ours are their first ``count`` attachments (the rest sit inside an enclosed message);
    message/rfc822 ones are the enclosed message as written in the raw bytes, others equal."""

    def check(ours: list[AttachmentRow], theirs: list[AttachmentRow], raw: bytes) -> bool:
        if len(ours) != count:
            return False
        return all(
            mine[:2] == their[:2]
            and (written_verbatim(raw, mine) if mine[1] == "message/rfc822" else mine == their)
            for mine, their in zip(ours, theirs, strict=False)
        )

    return check


def ascii_only(text: str) -> str:
    return "".join(char for char in text if char.isascii())


def written_verbatim(raw: bytes, row: AttachmentRow) -> bool:
    """Whether the attachment's bytes are a line-aligned slice of the raw message that ends
    where a MIME boundary delimiter begins."""
    _, _, size_bytes, sha256 = row
    for line_start in (match.end() for match in re.finditer(rb"\n", raw)):
        candidate = raw[line_start : line_start + size_bytes]
        after = raw[line_start + size_bytes : line_start + size_bytes + 4]
        delimited = after.startswith((b"\r\n--", b"\n--"))
        if delimited and hashlib.sha256(candidate).hexdigest() == sha256:
            return True
    return False


# --- what differs from imap_tools on purpose, file by file -------------------------------

ENCLOSED = (
    "imap_tools walks into an attached message (message/rfc822) and counts its text, html "
    "and attachments as the outer mail's; for us the enclosed message is one attachment"
)
AS_WRITTEN = (
    "imap_tools measures an enclosed message after re-serialising it with compat32 "
    "(headers refolded, line ends changed); ours is the enclosed message as written"
)
RECOVERED = (
    "mislabelled or unlabelled 8-bit text: imap_tools decodes with errors='ignore' and "
    "drops the bytes, we recover them (charset-normalizer / UTF-8)"
)

DEVIATIONS: dict[str, dict[str, Deviation]] = {
    "attachment_2_base64.eml": {
        # The two enclosed messages are (illegally) base64-encoded; the stdlib then reads
        # the base64 text as a header-less message body, which imap_tools reports as text.
        "text": Deviation(ENCLOSED, equals("")),
    },
    "attachment_7bit.eml": {
        "text": Deviation(ENCLOSED, strict_prefix_of_theirs()),
        "html": Deviation(ENCLOSED, equals("")),
        "attachments": Deviation(AS_WRITTEN, first_attachments_with_enclosed_as_written(1)),
    },
    "forwarded_message.eml": {
        # (With LF line ends and nothing to refold, both measure the enclosed message alike.)
        "text": Deviation(ENCLOSED, strict_prefix_of_theirs()),
        "html": Deviation(ENCLOSED, equals("")),
    },
    "attachment_8bit.eml": {
        "text": Deviation(ENCLOSED, strict_prefix_of_theirs()),
        "html": Deviation(ENCLOSED, strict_prefix_of_theirs()),
    },
    "attachment_emails/attachment_message_rfc822.eml": {
        "text": Deviation(ENCLOSED, equals("This is the first part.\r\n")),
        # broken.pdf is inside the enclosed message.
        "attachments": Deviation(
            f"{ENCLOSED}; {AS_WRITTEN}", first_attachments_with_enclosed_as_written(1)
        ),
    },
    "mime_emails/raw_email_with_mimepart_without_content_type.eml": {
        "text": Deviation(ENCLOSED, strict_prefix_of_theirs()),
        "attachments": Deviation(AS_WRITTEN, first_attachments_with_enclosed_as_written(1)),
    },
    "multipart_report_emails/multi_address_bounce1.eml": {
        "text": Deviation(ENCLOSED, strict_prefix_of_theirs()),
        "attachments": Deviation(AS_WRITTEN, first_attachments_with_enclosed_as_written(1)),
    },
    "multipart_report_emails/multi_address_bounce2.eml": {
        "text": Deviation(ENCLOSED, strict_prefix_of_theirs()),
        "attachments": Deviation(AS_WRITTEN, first_attachments_with_enclosed_as_written(1)),
    },
    "multipart_report_emails/multipart_report_multiple_status.eml": {
        # The bounce's explanation sits (malformed) inside its message/delivery-status
        # part, which is machine-readable status, not body; the rest is enclosed.
        "text": Deviation(ENCLOSED, equals("")),
        "html": Deviation(ENCLOSED, equals("")),
        "attachments": Deviation(
            f"{ENCLOSED}; {AS_WRITTEN}", first_attachments_with_enclosed_as_written(1)
        ),
    },
    "text_with_content_id.eml": {
        "attachments": Deviation(
            "an inline text/plain part with a Content-ID but no filename is body for us; "
            "imap_tools lists it as an attachment too (its text still agrees)",
            equals([]),
        ),
    },
    "error_emails/content_transfer_encoding_plain.eml": {
        "text": Deviation(RECOVERED, recovered("\u00ecIGTS\u00ee")),
    },
    "error_emails/invalid_subject_characters.eml": {
        "subject": Deviation(RECOVERED, recovered("Forma\u00e7\u00e3o")),
    },
    "plain_emails/raw_email6.eml": {
        "text": Deviation(RECOVERED, recovered("Envoy\u00e9 par le service")),
    },
    "error_emails/content_transfer_encoding_empty.eml": {
        # Labelled big5 but valid UTF-8 (of big5 mojibake): imap_tools' big5 reading
        # garbles it further; ours is the UTF-8 reading of the bytes.
        "html": Deviation(RECOVERED, recovered_from_mislabel("\u00b3n\u00c5\u00e9\u00ab")),
    },
    "rfc2822/example13.eml": {
        # Every header uses the obsolete "Name   : value" form, which the stdlib does not
        # read as headers; imap_tools then reports the whole input as text.
        "text": Deviation("a header-less input is not a message: no body is read", equals("")),
    },
    "rfc2822/example14.eml": {
        "subject": Deviation(
            "RFC 2047 section 6.2 keeps the white space between ordinary text and an "
            "encoded-word; imap_tools drops it ('Re: TESTテストテスト')",
            equals("Re: TEST テストテスト"),
        ),
    },
    "plain_emails/mix_caps_content_type.eml": {
        "from_": Deviation(
            "'From: Big Bug bb@bug.com': the local part with spaces is given in its "
            "RFC 5322 quoted form; imap_tools keeps it unquoted",
            equals('"Big Bug bb"@bug.com'),
        ),
    },
    "plain_emails/raw_email_with_at_display_name.eml": {
        # One of SOURCE.md's three files that Python 3.13 reads differently.
        "to": Deviation(
            "in 'Mikel@Lindsaar <raasdnil@gmail.com>' the address is the angle-addr and "
            "'Mikel@Lindsaar' its (unquoted) display name; imap_tools' compat32 splitter "
            "makes two addresses of it on Python <= 3.12",
            equals(["smith@gmail.com", "raasdnil@gmail.com", "tom@gmail.com"]),
        ),
    },
    "error_emails/missing_body.eml": {
        # One of SOURCE.md's three files that Python 3.13 reads differently.
        "to": Deviation(
            "'To: <Undisclosed-Recipient:@mailman.enron.com;>' names no mailbox; the "
            "compat32 splitter imap_tools uses makes an address of '@mailman.enron.com'",
            equals([""]),
        ),
    },
}


# --- the two sides, made comparable -------------------------------------------------------


def ours(parsed: ParsedMail, raw: bytes) -> dict[str, Any]:
    values: dict[str, Any] = {
        "subject": parsed.subject,
        "from_": parsed.from_.address if parsed.from_ else "",
        "to": [item.address for item in parsed.to],
        "cc": [item.address for item in parsed.cc],
        "date": parsed.date,
        "text": parsed.text,
        "html": with_meta_charset_utf8(parsed.html),
        "attachments": [
            (item.name, item.content_type, item.size_bytes, item.sha256)
            for item in parsed.attachments
        ],
    }
    return line_ends_read_as_lf(values) if b"\r" not in raw else values


def theirs(relative: str, raw: bytes) -> dict[str, Any]:
    expected = json.loads((EXPECTED / relative).with_suffix(".json").read_text("utf-8"))
    values: dict[str, Any] = {
        "subject": re.sub(r"\s+", " ", expected["subject"]).strip(),
        "from_": expected["from_"],
        "to": expected["to"],
        "cc": expected["cc"],
        "date": as_utc(expected["date"]),
        "text": expected["text"],
        "html": expected["html"],
        "attachments": [attachment_row(item) for item in expected["attachments"]],
    }
    return line_ends_read_as_lf(values) if b"\r" not in raw else values


def attachment_row(item: dict[str, str]) -> AttachmentRow:
    payload = base64.b64decode(item["payload_b64"])
    return (
        item["filename"],
        item["content_type"],
        len(payload),
        hashlib.sha256(payload).hexdigest(),
    )


def as_utc(value: str) -> datetime | None:
    if value == NO_DATE:
        return None
    moment = datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def with_meta_charset_utf8(html: str) -> str:
    """What imap_tools does to HTML: the first content-type meta tag says charset=utf-8."""
    tag = META_CONTENT_TYPE.search(html)
    if tag is None:
        return html
    return html.replace(tag.group(0), META_CHARSET.sub("charset=utf-8", tag.group(0), count=1))


def line_ends_read_as_lf(values: dict[str, Any]) -> dict[str, Any]:
    return {
        **values,
        "text": values["text"].replace("\r\n", "\n"),
        "html": values["html"].replace("\r\n", "\n"),
    }


def disagreements(relative: str) -> list[str]:
    """What is wrong with our parse of one corpus message, as readable lines."""
    raw = (RAW / relative).read_bytes()
    mine, their = ours(parse_mail(raw), raw), theirs(relative, raw)
    problems = []
    for name in FIELDS:
        deviation = DEVIATIONS.get(relative, {}).get(name)
        if deviation is None and mine[name] != their[name]:
            problems.append(f"{name}: ours {mine[name]!r:.300} != imap_tools {their[name]!r:.300}")
        elif deviation is not None and mine[name] == their[name]:
            problems.append(f"{name}: declared deviation no longer deviates ({deviation.reason})")
        elif deviation is not None and not deviation.check(mine[name], their[name], raw):
            problems.append(f"{name}: not as declared ({deviation.reason}): {mine[name]!r:.300}")
    return problems


# --- the tests ----------------------------------------------------------------------------


def test_corpus_holds_every_message_its_readme_lists() -> None:
    assert len(MESSAGES) == 113
    assert all((EXPECTED / name).with_suffix(".json").is_file() for name in MESSAGES)
    assert set(DEVIATIONS) <= set(MESSAGES)


@pytest.mark.parametrize("relative", MESSAGES)
def test_message_parses_as_imap_tools_does_or_as_declared(relative: str) -> None:
    assert disagreements(relative) == []


@pytest.mark.parametrize("relative", MESSAGES)
def test_message_parse_leaves_no_lone_surrogates(relative: str) -> None:
    parsed = parse_mail((RAW / relative).read_bytes())
    people = [parsed.from_, parsed.sender, *parsed.reply_to, *parsed.to, *parsed.cc]
    texts = [
        parsed.subject,
        parsed.text,
        parsed.html,
        *parsed.headers.values(),
        *parsed.defects,
        *(item.name for item in parsed.attachments),
        *(
            part
            for person in people
            if person is not None
            for part in (person.name, person.address)
        ),
    ]

    assert not [text for text in texts if re.search("[\ud800-\udfff]", text)]
    assert parsed.date is None or parsed.date.utcoffset() is not None
