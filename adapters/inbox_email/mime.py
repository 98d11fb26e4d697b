"""Raw RFC 822 bytes to a :class:`ParsedMail`: headers decoded, bodies in text, never a crash.

The standard library parser builds the MIME tree with ``compat32``, which keeps header values
as written, and this module decodes only the headers and text parts it uses; the RFC 5322
address parser of ``policy.default`` reads the address headers that are not in a simple
shape, and ``policy.default`` parses again whatever ``compat32`` cannot read (none of the
corpora; ``policy.default`` throughout cost five times as much, DESIGN.md "Where the time
goes"). The tree is read defensively. Text whose declared charset is unknown or wrong is
recovered with charset-normalizer, raw 8-bit header bytes are repaired as they are parsed,
and every repair is written down in :attr:`ParsedMail.defects` so a person can see what was
guessed.
"""

from __future__ import annotations

import binascii
import codecs
import hashlib
import io
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email import errors as email_errors
from email import policy as email_policy
from email.generator import BytesGenerator
from email.headerregistry import Address as HeaderAddress
from email.headerregistry import AddressHeader, BaseHeader
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import Compat32, EmailPolicy
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Final, cast

import charset_normalizer

from inbox_daemon.errors import MessageError
from inbox_daemon.interfaces import Attachment
from inbox_email.html_text import html_to_text

logger = logging.getLogger(__name__)

#: How deep multipart containers are followed; deeper parts are reported, not read.
MAX_PART_DEPTH: Final = 32
#: At most this many defect notes are kept; a pathological message can produce thousands.
MAX_DEFECTS: Final = 64
#: How much of the raw message is scanned for declared charsets (hints for 8-bit headers).
_HINT_SCAN_BYTES: Final = 64 * 1024

# What policy.default's header and parameter parsers are known to raise on hostile input.
_HEADER_ERRORS: Final = (
    ValueError,
    TypeError,
    IndexError,
    AttributeError,
    LookupError,
    email_errors.MessageError,
)

# Labels that name a codec but not a charset: decoding with them turns text into escapes
# or lone surrogates rather than characters.
_NOT_CHARSETS: Final = frozenset(
    {"unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined"}
)
# Mailers label text with a charset while writing a superset of it; these supersets decode
# everything the labelled charset does, identically, so they are tried before guessing.
_SUPERSETS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "gb2312": ("gb18030",),
        "gbk": ("gb18030",),
        "euc_kr": ("cp949",),
        "shift_jis": ("cp932",),
        "euc_jp": ("euc_jis_2004",),
        "iso2022_jp": ("iso2022_jp_ext", "iso2022_jp_2"),
        "big5": ("big5hkscs",),
    }
)
# How often mail text is in each charset, most common first. charset-normalizer orders
# equally plausible guesses alphabetically (cp1250 before cp1252, cp1125 before cp1251);
# among ties the charset a mailer is likelier to have used wins.
_COMMON_CHARSETS: Final = (
    "utf_8", "cp1252", "latin_1", "iso8859_15", "cp1251", "koi8_r", "gb18030", "gbk",
    "gb2312", "big5", "cp932", "shift_jis", "euc_jp", "iso2022_jp", "cp949", "euc_kr",
    "cp1250", "iso8859_2", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp874",
)  # fmt: skip
# Scores (chaos, coherence) closer than this count as a tie between detected charsets.
_TIE: Final = 0.01
# UTF-16/32 and UTF-7 never travel unlabelled in mail, but short 8-bit text often "looks"
# like them to a detector; excluding them avoids absurd guesses.
_DETECTION_EXCLUDED: Final = [
    "utf_16",
    "utf_16_be",
    "utf_16_le",
    "utf_32",
    "utf_32_be",
    "utf_32_le",
    "utf_7",
]

_PARAMETERISED_HEADERS: Final = frozenset({"content-type", "content-disposition"})
# Writes an enclosed message back byte for byte: source headers are not refolded.
_AS_WRITTEN: Final = email_policy.default.clone(refold_source="none", utf8=True)

_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")
_WHITESPACE_RUN_RE: Final = re.compile(r"\s+")
# RFC 2045 token: anything printable but space and tspecials.
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_LINE_BREAK_RE: Final = re.compile(r"\r\n|\r|\n")
_BASE64_RE: Final = re.compile(r"[A-Za-z0-9+/]*=*")
_CHARSET_HINT_RE: Final = re.compile(rb"""charset\s*=\s*["']?([A-Za-z0-9_.:+-]{1,40})""", re.I)
_ENCODED_WORD_RE: Final = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_COMMENT_RE: Final = re.compile(r"\([^()]*\)")
# A mailbox "display-name <addr-spec>" whose unquoted display name holds an "@".
_AT_IN_NAME_RE: Final = re.compile(
    r'(?P<lead>\s*)(?P<name>[^"<>()]*@[^"<>()]*?)(?P<addr>\s*<[^<>]*>\s*)'
)
# A dot-atom (RFC 5322 3.2.3) of printable ASCII, and an atom as a name may hold it (any
# non-ASCII letter too, as policy.default reads a UTF-8 name).
_DOT_ATOM: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_NAME_ATOM: Final = r"""[^\s()<>\[\]:;@\\,."\x00-\x1f\x7f]+"""
_SIMPLE_MAILBOX_RE: Final = re.compile(
    rf"[ \t]*(?:(?P<bare>{_DOT_ATOM}@{_DOT_ATOM})"
    rf"|(?:(?:\"(?P<quoted>[^\"\\\r\n]*)\""
    rf"|(?P<atoms>{_NAME_ATOM}(?: {_NAME_ATOM})*))(?P<gap>[ \t]*))?"
    rf"<(?P<spec>{_DOT_ATOM}@{_DOT_ATOM})>)[ \t]*"
)
_ADDR_SPEC_RE: Final = re.compile(r"[^\s<>,;:\"()]+@[^\s<>,;:\"()]+")
_ANGLE_ID_RE: Final = re.compile(r"<([^<>]*)>")
_FALLBACK_DATE_RE: Final = re.compile(
    r"(?P<day>\d{1,2})\s+(?P<month>[A-Za-z]{3})[a-z]*\.?\s+(?P<year>\d{4})\s+"
    r"(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?"
    r"(?:\s*(?P<sign>[+-])(?P<zone>\d{4}))?"
)
_MONTHS: Final = (
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox from an address header.

    Attributes:
        name: the decoded display name, ``""`` if none.
        address: the bare addr-spec as written, ``""`` when there is no usable one.
    """

    name: str
    address: str


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """What :func:`parse_mail` read from one raw message.

    Attributes:
        message_id: the normalised Message-ID (see :func:`normalise_message_id`).
        subject: the decoded subject on one line, ``""`` if absent.
        from_: the first From mailbox.
        sender: the Sender mailbox.
        reply_to: the Reply-To mailboxes.
        to: the To mailboxes.
        cc: the Cc mailboxes.
        date: the Date header in UTC; ``None`` when absent or unparsable.
        in_reply_to: the normalised In-Reply-To id.
        references: the normalised References ids, oldest first.
        headers: lower-cased name to decoded value; repeated fields joined with ``"\\n"``.
        text: every non-attachment ``text/plain`` part, decoded and joined.
        html: every non-attachment ``text/html`` part, decoded and joined.
        attachments: what was attached, in MIME order.
        defects: notes on what was wrong with the message and how it was recovered.
    """

    message_id: str | None
    subject: str
    from_: Address | None
    sender: Address | None
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    date: datetime | None
    in_reply_to: str | None
    references: tuple[str, ...]
    headers: Mapping[str, str]
    text: str
    html: str
    attachments: tuple[Attachment, ...]
    defects: tuple[str, ...]


def parse_mail(raw: bytes) -> ParsedMail:
    """Parse one raw RFC 822 message.

    Broken input is read as far as it makes sense and what was wrong is listed in
    :attr:`ParsedMail.defects`; an empty or header-less input gives empty fields.

    Args:
        raw: the message exactly as fetched.

    Returns:
        The decoded message.

    Raises:
        MessageError: the input could not be read as a message at all.
    """
    try:
        return _parse(raw)
    except MemoryError:
        raise
    except Exception as exc:
        # Everything above is written not to raise; reaching this is a parser bug, and
        # the contract turns it into a dead letter rather than a failed batch. The error
        # text may quote the message, so only its type is logged.
        logger.warning("cannot parse a %d-byte message: %s", len(raw), type(exc).__name__)
        raise MessageError(f"cannot parse message: {exc!r}") from exc


def normalise_message_id(value: str | None) -> str | None:
    """Reduce a Message-ID style value to a comparable id.

    Comments, angle brackets and whitespace are dropped and the domain part is lower-cased
    (the local part is case-sensitive): ``"<ABC@Example.COM>"`` becomes
    ``"ABC@example.com"``. Only the first id of a list is used.

    Args:
        value: a header value such as Message-ID or In-Reply-To.

    Returns:
        The id, or ``None`` when the value is empty or holds nothing that looks like an id.
    """
    if not value:
        return None
    text = _without_comments(_LINE_BREAK_RE.sub("", value)).strip()
    bracketed = _ANGLE_ID_RE.search(text)
    if bracketed is not None:
        text = "".join(bracketed.group(1).split())
    elif any(char.isspace() for char in text) or "<" in text or ">" in text:
        return None
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or not text.isprintable():
        return None
    return f"{local}@{domain.lower()}"


def body_text(mail: ParsedMail) -> str:
    """The plain text a person would read: the text parts, else the HTML parts as text.

    Line endings become ``"\\n"``.
    """
    if mail.text.strip():
        return _LINE_BREAK_RE.sub("\n", mail.text)
    if mail.html.strip():
        return html_to_text(mail.html)
    return ""


# --- the parse itself -------------------------------------------------------------------


class _Notes:
    """The defect list of one message: ordered, without repeats, bounded."""

    __slots__ = ("_items", "_seen")

    def __init__(self) -> None:
        self._items: list[str] = []
        self._seen: set[str] = set()

    def add(self, note: str) -> None:
        if note in self._seen:
            return
        self._seen.add(note)
        if len(self._items) < MAX_DEFECTS:
            self._items.append(note)
        elif len(self._items) == MAX_DEFECTS:
            self._items.append("more defects not listed")

    def add_stdlib(self, where: str, defects: Iterable[email_errors.MessageDefect]) -> None:
        for defect in defects:
            detail = str(defect) or (type(defect).__doc__ or "").strip().splitlines()[0]
            self.add(f"{where}: {type(defect).__name__}: {detail}")

    def as_tuple(self) -> tuple[str, ...]:
        return tuple(self._items)


@dataclass(frozen=True, slots=True)
class _Reading:
    """What the steps reading one message share.

    Attributes:
        notes: the defect list being written.
        hints: charsets the message declares, for bytes that carry no label.
        linesep: the line ending the message was written with.
    """

    notes: _Notes
    hints: tuple[str, ...]
    linesep: str


def _parse(raw: bytes) -> ParsedMail:
    notes = _Notes()
    if not raw.strip():
        notes.add("empty message")
        return _empty_mail(notes)
    start = raw[:_HINT_SCAN_BYTES]
    reading = _Reading(notes, _charset_hints(start), "\r\n" if b"\r\n" in start else "\n")
    try:
        return _parse_with(_FastPolicy(reading.hints), raw, reading)
    except MemoryError:
        raise
    except Exception as exc:
        # Not known to happen: compat32 reads what policy.default reads. Should a message
        # prove otherwise, the slower parser gets its chance before it is a dead letter.
        logger.info("compat32 could not read a message (%s); parsing it again", type(exc).__name__)
        reading = _Reading(_Notes(), reading.hints, reading.linesep)
        return _parse_with(_LenientPolicy(reading.hints), raw, reading)


def _parse_with(policy: _FastPolicy | _LenientPolicy, raw: bytes, reading: _Reading) -> ParsedMail:
    """Parse ``raw`` with ``policy`` and read the result (see :func:`_build`)."""
    notes = reading.notes
    try:
        message = BytesParser(policy=policy).parsebytes(raw)
    except RecursionError:
        # The stdlib parser recurses once per nested part; a hostile depth exhausts the
        # stack. The top-level header block is still worth reading.
        notes.add("message nested too deeply for the MIME parser; body not read")
        message = BytesParser(policy=policy).parsebytes(raw, headersonly=True)
        message.set_payload("")
    for repair in policy.repairs:
        notes.add(repair)
    if not message.keys():
        notes.add("no header fields: not an RFC 822 message")
        return _empty_mail(notes)
    return _build(message, reading)


def _build(message: Message, reading: _Reading) -> ParsedMail:
    fields = _raw_fields(message)
    headers = {
        name: "\n".join(_decode_words(value, reading, f"header {name}") for value in values)
        for name, values in fields.items()
    }
    body = _read_body(message, reading)
    reading.notes.add_stdlib("message", message.defects)
    subject = _decode_words(_first_value(fields, "subject") or "", reading, "header subject")
    return ParsedMail(
        message_id=normalise_message_id(_first_value(fields, "message-id")),
        subject=_WHITESPACE_RUN_RE.sub(" ", subject).strip(),
        from_=_first(_addresses(fields, "from", reading)),
        sender=_first(_addresses(fields, "sender", reading)),
        reply_to=_addresses(fields, "reply-to", reading),
        to=_addresses(fields, "to", reading),
        cc=_addresses(fields, "cc", reading),
        date=_parse_date(_first_value(fields, "date"), reading.notes),
        in_reply_to=normalise_message_id(_first_value(fields, "in-reply-to")),
        references=_references(_first_value(fields, "references")),
        headers=MappingProxyType(headers),
        text="".join(body.text),
        html="".join(body.html),
        attachments=tuple(body.attachments),
        defects=reading.notes.as_tuple(),
    )


def _empty_mail(notes: _Notes) -> ParsedMail:
    return ParsedMail(
        message_id=None,
        subject="",
        from_=None,
        sender=None,
        reply_to=(),
        to=(),
        cc=(),
        date=None,
        in_reply_to=None,
        references=(),
        headers=MappingProxyType({}),
        text="",
        html="",
        attachments=(),
        defects=notes.as_tuple(),
    )


def _first(addresses: tuple[Address, ...]) -> Address | None:
    return addresses[0] if addresses else None


def _charset_hints(start: bytes) -> tuple[str, ...]:
    """The charsets declared in the start of a message, most used first.

    Raw 8-bit header bytes carry no label; they are most often in the charset the same
    mailer declared for the body.
    """
    counts: dict[str, int] = {}
    for match in _CHARSET_HINT_RE.finditer(start):
        codec = _codec_name(match.group(1).decode("ascii"))
        if codec is not None and codec not in ("ascii", "utf-8"):
            counts[codec] = counts.get(codec, 0) + 1
    return tuple(sorted(counts, key=lambda codec: -counts[codec]))


class _FastPolicy(Compat32):
    """``compat32``, which keeps header values as the strings they were written as, plus the
    repairs of :func:`_repaired_header` made as each header is read from the source.

    ``policy.default`` builds a header object on every ``Message.get``, and the parser and
    this module ask for Content-Type and its parameters many times a part: with it, parsing
    was most of the cost of ingesting mail. Everything here reads raw values (RFC 2047
    words are decoded by :func:`_decode_words`, addresses by :func:`_address_list`).
    """

    charset_hints: tuple[str, ...]
    repairs: list[str]

    def __init__(self, charset_hints: tuple[str, ...]) -> None:
        """A policy for one message; ``charset_hints`` as for :func:`_repaired_header`."""
        super().__init__()
        # Policies refuse attribute assignment once built (clone() copies __dict__).
        object.__setattr__(self, "charset_hints", charset_hints)
        object.__setattr__(self, "repairs", [])

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        """Split a raw header into name and value, repairing the value."""
        name, value = super().header_source_parse(sourcelines)
        return name, _repaired_header(name, value, self.charset_hints, self.repairs)


class _LenientPolicy(EmailPolicy):
    """``policy.default`` with the repairs of :func:`_repaired_header`: the fallback for a
    message that :class:`_FastPolicy` cannot read."""

    charset_hints: tuple[str, ...]
    repairs: list[str]

    def __init__(self, charset_hints: tuple[str, ...]) -> None:
        """A policy for one message; ``charset_hints`` as for :func:`_repaired_header`."""
        super().__init__(
            header_factory=email_policy.default.header_factory, message_factory=EmailMessage
        )
        object.__setattr__(self, "charset_hints", charset_hints)
        object.__setattr__(self, "repairs", [])

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        """Split a raw header into name and value, repairing the value."""
        name, value = super().header_source_parse(sourcelines)
        return name, _repaired_header(name, value, self.charset_hints, self.repairs)


def _repaired_header(name: str, value: str, hints: tuple[str, ...], repairs: list[str]) -> str:
    """A header value as read from the source, with two repairs; each is noted in ``repairs``.

    Raw 8-bit bytes, which the parser smuggles through as lone surrogates, are decoded
    once here (trying ``hints``, the charsets the message declares, see
    :func:`_charset_hints`), so every later reader (addresses, filenames, parameters) sees
    real text. Unquoted MIME parameter values holding special characters (Outlook's
    ``boundary=----=_NextPart…``, ``name=My file.pdf``) are quoted, as every mail client
    reads them; a parameter parser would cut them at the first special character.
    """
    if _SURROGATE_RE.search(value) is not None:
        value, how = _recover(value.encode("utf-8", "surrogateescape"), hints)
        repairs.append(f"header {name.lower()}: raw 8-bit bytes decoded as {how}")
    if name.lower() in _PARAMETERISED_HEADERS:
        quoted = _quote_loose_parameters(value)
        if quoted != value:
            value = quoted
            repairs.append(f"header {name.lower()}: unquoted parameter with special characters")
    return value


def _quote_loose_parameters(value: str) -> str:
    """``value`` (a Content-Type or -Disposition) with loose parameter values quoted."""
    segments = _split_outside_quotes(value)
    return ";".join([segments[0], *(_quote_parameter(segment) for segment in segments[1:])])


def _split_outside_quotes(value: str, separator: str = ";") -> list[str]:
    """``value`` split at ``separator`` where it is not inside a quoted string."""
    if '"' not in value:
        return value.split(separator)
    segments: list[str] = []
    start, quoted, escaped = 0, False, False
    for index, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            segments.append(value[start:index])
            start = index + 1
    segments.append(value[start:])
    return segments


def _quote_parameter(segment: str) -> str:
    attribute, equals, raw_value = segment.partition("=")
    loose = raw_value.strip()
    if not equals or not loose or loose.startswith('"') or attribute.strip().endswith("*"):
        return segment  # not a parameter, already quoted, or RFC 2231 (never quoted)
    if _TOKEN_RE.fullmatch(_without_comments(loose).strip()):
        return segment
    escaped = loose.replace("\\", "\\\\").replace('"', '\\"')
    return f'{attribute}="{escaped}"'


# --- headers ----------------------------------------------------------------------------


def _raw_fields(message: Message) -> dict[str, list[str]]:
    """Header values as written (already repaired), unfolded, by lower-cased name."""
    fields: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        fields.setdefault(name.strip().lower(), []).append(_LINE_BREAK_RE.sub("", value).strip())
    return fields


def _first_value(fields: Mapping[str, list[str]], name: str) -> str | None:
    """The first occurrence of a field that should occur once (spam repeats Subject)."""
    values = fields.get(name)
    return values[0] if values else None


def _decode_words(value: str, reading: _Reading, where: str) -> str:
    """Decode the RFC 2047 encoded-words in ``value``, leaving the rest as written.

    Whitespace between adjacent encoded-words is dropped (RFC 2047 section 6.2), and
    adjacent words in one charset are joined before decoding, because mailers split
    multi-byte characters across words.
    """
    if "=?" not in value:
        return value
    pieces: list[str] = []
    pending: list[tuple[str, bytes]] = []
    position = 0
    for match in _ENCODED_WORD_RE.finditer(value):
        between = value[position : match.start()]
        position = match.end()
        if between and not (pending and between.isspace()):
            pieces.append(_flush_words(pending, reading, where))
            pieces.append(between)
        label, data = match.group(1).split("*", 1)[0], _word_bytes(match[2], match[3])
        if data is None:
            reading.notes.add(f"{where}: malformed encoded-word kept as written")
            pieces.extend((_flush_words(pending, reading, where), match.group(0)))
            continue
        if pending and pending[-1][0].lower() != label.lower():
            pieces.append(_flush_words(pending, reading, where))
        pending.append((label, data))
    pieces.extend((_flush_words(pending, reading, where), value[position:]))
    return "".join(pieces)


def _word_bytes(encoding: str, payload: str) -> bytes | None:
    """The bytes an encoded-word's payload stands for, or ``None`` if it is malformed."""
    try:
        if encoding in "bB":
            if _BASE64_RE.fullmatch(payload) is None:
                return None
            padded = payload + "=" * (-len(payload) % 4)
            return binascii.a2b_base64(padded.encode("ascii"))
        return binascii.a2b_qp(payload.encode("utf-8"), header=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


def _flush_words(pending: list[tuple[str, bytes]], reading: _Reading, where: str) -> str:
    """Decode and empty the run of same-charset encoded-words collected so far."""
    if not pending:
        return ""
    label = pending[0][0]
    data = b"".join(chunk for _, chunk in pending)
    pending.clear()
    text, note = _decode_bytes(data, label, reading.hints)
    if note is not None:
        reading.notes.add(f"{where}: {note}")
    return _scrub(text, reading.hints)


def _addresses(
    fields: Mapping[str, list[str]], name: str, reading: _Reading
) -> tuple[Address, ...]:
    found: list[Address] = []
    for value in fields.get(name, ()):
        found.extend(_address_list(name, value, reading))
    return tuple(item for item in found if item.name or item.address)


def _address_list(name: str, value: str, reading: _Reading) -> list[Address]:
    """The mailboxes of one address header: the common shapes read here, the rest by
    ``policy.default``."""
    mailboxes = _split_outside_quotes(value, ",")
    simple = _simple_mailboxes(mailboxes, reading, name)
    if simple is not None:
        return simple
    quoted = ",".join(_quote_display_name(item) for item in mailboxes)
    if quoted != value:
        reading.notes.add(f"header {name}: unquoted display name holding '@' read as a name")
    try:
        header = email_policy.default.header_factory(name, quoted)
    except _HEADER_ERRORS as exc:
        # Not known to happen; if it does, the addr-specs are still worth having.
        reading.notes.add(f"header {name}: address list unparsable ({type(exc).__name__})")
        return [Address(name="", address=spec) for spec in _ADDR_SPEC_RE.findall(value)]
    if isinstance(header, BaseHeader):
        reading.notes.add_stdlib(f"header {name}", header.defects)
    if not isinstance(header, AddressHeader):
        return []
    return [_address(item, reading, name) for item in header.addresses]


def _simple_mailboxes(
    mailboxes: Sequence[str], reading: _Reading, where: str
) -> list[Address] | None:
    """The mailboxes when each is in one of the shapes nearly all mail uses, else ``None``.

    The shapes (:data:`_SIMPLE_MAILBOX_RE`) are ``local@domain``, ``<local@domain>`` and
    ``Name <local@domain>`` with dot-atoms and a name of atoms or a plain quoted string:
    for them the RFC 5322 parser of ``policy.default``, the costliest step of parsing a
    mail, finds the same address and name and no defect. Anything else goes to it.
    """
    found: list[Address] = []
    for mailbox in mailboxes:
        match = _SIMPLE_MAILBOX_RE.fullmatch(mailbox)
        if match is None:
            return None
        spec = match["spec"] or match["bare"]
        if "=?" in spec:
            return None  # policy.default decodes an encoded-word even there, with a note
        display = match["quoted"] if match["quoted"] is not None else match["atoms"] or ""
        if "=?" in display and not (match["gap"] and _encoded_words_whole(match["atoms"])):
            return None  # policy.default has notes on such words for a person to see
        # A word our decoder has a note on gets policy.default's note instead.
        clean = _Reading(_Notes(), reading.hints, reading.linesep)
        name = _decode_words(display, clean, f"header {where}")
        if clean.notes.as_tuple():
            return None
        found.append(Address(name=name.strip(), address=spec))
    return found


def _encoded_words_whole(atoms: str | None) -> bool:
    """Whether each atom of a name that holds ``=?`` is one RFC 2047 encoded-word."""
    if atoms is None:
        return False
    return all(
        "=?" not in atom or _ENCODED_WORD_RE.fullmatch(atom) is not None for atom in atoms.split()
    )


def _quote_display_name(mailbox: str) -> str:
    """Quote an unquoted display name that holds "@": ``a@b <c@d>`` names ``c@d``.

    Left alone, the RFC 5322 parser takes ``a@b`` for the address and drops ``<c@d>``:
    the address a reply would go to, and the classic way to pass off a sender as another.
    """
    match = _AT_IN_NAME_RE.fullmatch(mailbox)
    if match is None:
        return mailbox
    name = match["name"].replace("\\", "\\\\").replace('"', '\\"')
    return f'{match["lead"]}"{name}"{match["addr"]}'


def _address(item: HeaderAddress, reading: _Reading, where: str) -> Address:
    name = _decode_words(_scrub(item.display_name, reading.hints), reading, f"header {where}")
    address = _scrub(item.addr_spec, reading.hints) if item.username and item.domain else ""
    if not address and not name:
        # A bare word where an address belongs ("To: support"): keep what was written.
        name = _scrub(item.username, reading.hints)
    return Address(name=name.strip(), address=address)


def _references(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    tokens = _ANGLE_ID_RE.findall(value) or value.replace(",", " ").split()
    ids = (normalise_message_id(f"<{token.strip('<>')}>") for token in tokens)
    return tuple(dict.fromkeys(msg_id for msg_id in ids if msg_id is not None))


def _without_comments(value: str) -> str:
    """``value`` without its RFC 5322 comments (nested ones included)."""
    previous = None
    while previous != value and "(" in value:
        previous, value = value, _COMMENT_RE.sub(" ", value)
    return value


def _parse_date(value: str | None, notes: _Notes) -> datetime | None:
    if value is None or not value.strip():
        return None
    try:
        parsed: datetime | None = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        parsed = _fallback_date(value)
    if parsed is None:
        notes.add(f"header date: not a date: {value[:60]!r}")
        return None
    if parsed.tzinfo is None:
        # RFC 5322 "-0000" (and a missing zone) means "UTC, origin's zone unknown".
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        notes.add(f"header date: out of range: {value[:60]!r}")
        return None


def _fallback_date(value: str) -> datetime | None:
    """Read ``day month year hh:mm[:ss] [zone]`` out of a Date that RFC 5322 rejects."""
    match = _FALLBACK_DATE_RE.search(value)
    if match is None or match["month"].lower() not in _MONTHS:
        return None
    zone = UTC
    if match["zone"]:
        offset = timedelta(hours=int(match["zone"][:2]), minutes=int(match["zone"][2:]))
        zone = timezone(-offset if match["sign"] == "-" else offset)
    try:
        return datetime(
            int(match["year"]),
            _MONTHS.index(match["month"].lower()) + 1,
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"] or 0),
            tzinfo=zone,
        )
    except ValueError:
        return None


# --- bodies and attachments -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PartInfo:
    content_type: str
    filename: str
    disposition: str | None
    has_content_id: bool
    charset: str | None

    @property
    def is_attachment(self) -> bool:
        """Named, attached, referenced by Content-ID or a whole message; not inline text."""
        if self.content_type == "message/rfc822" or self.filename:
            return True
        if self.disposition == "attachment":
            return True
        return self.has_content_id and not self.content_type.startswith("text/")


@dataclass(frozen=True, slots=True)
class _Body:
    text: list[str]
    html: list[str]
    attachments: list[Attachment]


def _read_body(message: Message, reading: _Reading) -> _Body:
    body = _Body(text=[], html=[], attachments=[])
    for number, (part, is_leaf) in enumerate(_walk(message, reading.notes)):
        where = "message" if number == 0 else f"part {number}"
        if is_leaf:
            try:
                _read_part(part, where, body, reading)
            except _HEADER_ERRORS as exc:
                reading.notes.add(f"{where}: unreadable, skipped ({type(exc).__name__}: {exc})")
        if number:  # the message's own defects are added with its headers'
            reading.notes.add_stdlib(where, part.defects)
    return body


def _walk(root: Message, notes: _Notes) -> Iterator[tuple[Message, bool]]:
    """Every part in MIME order and whether it is a leaf, without recursion, depth-bounded."""
    stack: list[tuple[Message, int]] = [(root, 0)]
    while stack:
        part, depth = stack.pop()
        is_leaf = not _is_container(part)
        yield part, is_leaf
        if is_leaf:
            continue
        if depth >= MAX_PART_DEPTH:
            notes.add(f"parts nested deeper than {MAX_PART_DEPTH} levels not read")
            continue
        children = part.get_payload()
        if isinstance(children, list):
            stack.extend(
                (child, depth + 1) for child in reversed(children) if isinstance(child, Message)
            )


def _is_container(part: Message) -> bool:
    # A message/rfc822 part is also "multipart" to the stdlib; it is one attachment here.
    try:
        return part.is_multipart() and part.get_content_maintype() == "multipart"
    except _HEADER_ERRORS:
        return False  # read as a leaf, where the same error is caught and noted


def _read_part(part: Message, where: str, body: _Body, reading: _Reading) -> None:
    info = _part_info(part)
    if info.is_attachment:
        body.attachments.append(_attachment(part, info, reading, where))
    elif info.content_type == "text/html":
        body.html.append(_part_text(part, info, reading.notes, where))
    elif info.content_type == "text/plain":
        body.text.append(_part_text(part, info, reading.notes, where))
    elif info.content_type.startswith("multipart/"):
        # A multipart whose boundary is missing or never appears: the stdlib leaves its
        # body unsplit. The words are still the sender's, so read them as plain text.
        text = _part_text(part, info, reading.notes, where)
        if text.strip():
            reading.notes.add(f"{where}: {info.content_type} without usable boundary read as text")
            body.text.append(text)


def _part_info(part: Message) -> _PartInfo:
    return _PartInfo(
        content_type=part.get_content_type(),
        filename=part.get_filename() or "",
        disposition=part.get_content_disposition(),
        has_content_id="content-id" in part,
        charset=part.get_content_charset(),
    )


def _part_text(part: Message, info: _PartInfo, notes: _Notes, where: str) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes) or not payload:
        return ""
    text, note = _decode_bytes(payload, info.charset, ())
    if note is not None:
        notes.add(f"{where} ({info.content_type}): {note}")
    return _scrub(text, ())


def _attachment(part: Message, info: _PartInfo, reading: _Reading, where: str) -> Attachment:
    data = _attachment_bytes(part, reading, where)
    name = _decode_words(_scrub(info.filename, reading.hints), reading, f"{where} filename")
    return Attachment(
        name=name.strip(),
        content_type=info.content_type,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _attachment_bytes(part: Message, reading: _Reading, where: str) -> bytes:
    """The attachment's content: the decoded payload, or the enclosed message as written."""
    if not part.is_multipart():
        payload = part.get_payload(decode=True)
        return payload if isinstance(payload, bytes) else b""
    try:
        data = _enclosed_bytes(part, reading.linesep)
    except RecursionError:
        reading.notes.add(f"{where}: enclosed message nested too deeply to measure")
        return b""
    # message/* may not be encoded (RFC 2046 5.2.1), but some mailers do; the parser then
    # took the encoded text for a header-less message.
    encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
    try:
        if encoding == "base64":
            return binascii.a2b_base64(data)
        if encoding == "quoted-printable":
            return binascii.a2b_qp(data)
    except binascii.Error:
        reading.notes.add(f"{where}: enclosed message's {encoding} is damaged; kept encoded")
    return data


def _enclosed_bytes(part: Message, linesep: str) -> bytes:
    """A message/rfc822 part's message written back as the bytes it was parsed from.

    Headers are not refolded and line endings are the source's, so the result is the
    source slice, except that a multipart ending without a final line break gets one (the
    parser keeps no trace of its absence).
    """
    buffer = io.BytesIO()
    generator = BytesGenerator(buffer, mangle_from_=False, policy=_AS_WRITTEN)
    for child in part.get_payload():
        if isinstance(child, Message):
            # An mbox "From " line is part of what was written; without one, none is made up.
            written_from = child.get_unixfrom() is not None
            # The generator reads raw header values only, which compat32 keeps as written.
            as_parsed = cast(EmailMessage, child)
            generator.flatten(as_parsed, unixfrom=written_from, linesep=linesep)
    return buffer.getvalue()


# --- charsets ---------------------------------------------------------------------------


def _codec_name(label: str | None) -> str | None:
    """Python's codec for a MIME charset label, or ``None`` if it names no charset."""
    if not label:
        return None
    name = label.strip().strip("\"'").split("*", 1)[0].lower()
    try:
        codec = codecs.lookup(name).name
    except (LookupError, ValueError):
        return None
    return None if codec in _NOT_CHARSETS else codec


def _decode_bytes(data: bytes, label: str | None, hints: Sequence[str]) -> tuple[str, str | None]:
    """Decode ``data`` labelled ``label``; the note says what was wrong, if anything."""
    codec = _codec_name(label)
    if codec is not None:
        for candidate in (codec, *_SUPERSETS.get(codec, ())):
            try:
                text = data.decode(candidate)
            except (UnicodeDecodeError, LookupError):
                continue
            return text, None if candidate == codec else f"labelled {label}, read as {candidate}"
        problem = f"not valid {label}"
    elif label:
        problem = f"unknown charset {label!r}"
    elif data.isascii():
        return data.decode("ascii"), None
    else:
        problem = "8-bit text without a charset"
    text, how = _recover(data, hints)
    return text, f"{problem}; decoded as {how}"


def _recover(data: bytes, hints: Sequence[str]) -> tuple[str, str]:
    """Decode unlabelled or mislabelled bytes; also says which charset was used."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass  # the usual case for mislabelled text: go on guessing
    for hint in hints:
        try:
            return data.decode(hint), f"{hint} (declared elsewhere in the message)"
        except (UnicodeDecodeError, LookupError):
            continue
    detected = _detect(data)
    if detected is not None:
        return detected[0], f"{detected[1]} (detected)"
    return data.decode("utf-8", "replace"), "utf-8 with undecodable bytes replaced"


def _detect(data: bytes) -> tuple[str, str] | None:
    """charset-normalizer's reading of ``data`` and its charset; ties go to commoner ones."""
    matches = charset_normalizer.from_bytes(data, cp_exclusion=_DETECTION_EXCLUDED)
    best = matches.best()
    if best is None:
        return None
    tied = [
        match
        for match in matches
        if abs(match.chaos - best.chaos) < _TIE and abs(match.coherence - best.coherence) < _TIE
    ]
    chosen = min(tied, key=lambda match: _commonness(match.could_be_from_charset))
    rank = _commonness(chosen.could_be_from_charset)
    return str(chosen), _COMMON_CHARSETS[rank] if rank < len(_COMMON_CHARSETS) else chosen.encoding


def _commonness(charsets: Iterable[str]) -> int:
    """The rank of the commonest of ``charsets`` in mail (lower is commoner)."""
    ranks = (_COMMON_CHARSETS.index(name) for name in charsets if name in _COMMON_CHARSETS)
    return min(ranks, default=len(_COMMON_CHARSETS))


def _scrub(text: str, hints: Sequence[str]) -> str:
    """``text`` without lone surrogates: escaped raw bytes are decoded, the rest replaced."""
    if _SURROGATE_RE.search(text) is None:
        return text
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        # Surrogates that are not escaped bytes (a UTF-7 or escape-codec artefact).
        return _SURROGATE_RE.sub("\ufffd", text)
    return _SURROGATE_RE.sub("\ufffd", _recover(data, hints)[0])
