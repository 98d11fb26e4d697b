# ruff: noqa: RUF001, RUF002, RUF003 - reply markers in many scripts (Cyrillic, CJK, fullwidth
# punctuation) are this module's data, not look-alike typos.
"""Plain-text bodies: cleaning, and the sender's own words without quoted history or signature.

Pure functions over strings, the same for every channel. The rules work line by line: each
line is classified once with string operations and short anchored regular expressions (none
with nested or overlapping repetition, and only lines of at most ``_MAX_MARKER_CHARS``
characters are ever matched against a marker), so the cost grows linearly with the input.

What counts as quoted history, in the order it is looked for:

- a separator line: ``-----Original Message-----``, ``---------- Forwarded message ---------``,
  ``Begin forwarded message:`` and their translations; everything below it is history;
- a header block: ``From:`` / ``Sent:`` or ``Date:`` / ``To:`` / ``Subject:`` lines (English,
  German, French, Spanish, Portuguese, Italian, Dutch, Scandinavian, Polish, Czech, Russian,
  Ukrainian, Chinese, Japanese, Korean, Turkish …), with the rule line above it if any; a block
  needs a From line, three kinds of header, and a Subject line, a rule line above it or an
  address in the From line, so a transfer described as "From: 0x… To: 0x… Date: …" is not
  mistaken for one;
- an attribution line (possibly wrapped over a few lines): "On … wrote:", "Le … a écrit :",
  "Am … schrieb …:", "El … escribió:", "Em … escreveu:", "… <x@y> написал(а):", "在 … 写道：",
  "… のメッセージ:", "… 작성:" …, or a bare "<date>, <name> <address>:" as Gmail writes in
  Russian and Japanese. It is dropped with the ``>`` quote block that follows it; followed by
  unquoted text (an HTML quote turned into text) a worded attribution ends the message;
- every ``>`` quoted line, wherever it stands: in an interleaved reply the sender's words are
  the unquoted lines between the quotes. A block of ``>>>`` lines alone is a pasted Python
  prompt or SMTP transcript, and stays.

The signature is cut at the last lines of what remains: the ``-- `` delimiter (or ``--``, or a
line of underscores as mailing-list footers use) when at most ``_SIGNATURE_MAX_LINES`` lines
follow it, a mobile footer ("Sent from my iPhone", "Von meinem iPhone gesendet", "发自我的iPhone",
"iPhoneから送信" …) among the last three lines, or a "-Name" sign-off on the last two.

Forwarded mail: a forwarded message's body *is* the content when the sender wrote nothing above
it; with words of their own above, those words are the visible text (the forwarded message
stays in ``full_text``). In general, when nothing of the sender's own is left, the quoted
message (below a separator, header block or attribution, or the ``>`` lines unquoted one
level) is processed again as the visible text, down to ``_MAX_FALLBACK_DEPTH`` levels.

Name-only signatures ("Thanks,\nJane Doe\nACME") are kept: without a delimiter they cannot be
told from the sender's words by rules, and keeping a few words costs less than losing some.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

# Lines longer than this are never markers (reply headers, separators and footers are short);
# it bounds the work any pattern can do on one line.
_MAX_MARKER_CHARS: Final = 500
# A mobile footer or sign-off is a short line.
_MAX_FOOTER_CHARS: Final = 100
# How many non-blank lines may follow a "-- " delimiter for it to start a signature.
_SIGNATURE_MAX_LINES: Final = 15
# How many footers may stand one above the other (a sign-off above a mailing-list footer).
_MAX_FOOTERS: Final = 3
# How far below its first line a header block may still show its other headers.
_HEADER_WINDOW_LINES: Final = 12
# How many lines one attribution may be wrapped over (HTML turned into text splits them).
_ATTRIBUTION_MAX_LINES: Final = 6
# How many times the quoted message may stand in for an empty reply (quotes in quotes).
_MAX_FALLBACK_DEPTH: Final = 4

_C0_CONTROLS_RE: Final = re.compile(r"[\x00-\x08\x0b-\x1f]")
_BLANK_RUN_RE: Final = re.compile(r"\n{4,}")

# Spaces that mail clients put into headers, and marks that are invisible there.
_PROBE_TRANSLATION: Final = str.maketrans(
    {"\u00a0": " ", "\u202f": " ", "\u2007": " ", "\u3000": " ", "\u200b": None,
     "\u200e": None, "\u200f": None, "\ufeff": None}
)  # fmt: skip

_SEPARATOR_LABELS: Final = frozenset(
    {
        # a quoted original
        "original message", "original-nachricht", "ursprüngliche nachricht",
        "message d'origine", "mensaje original", "mensagem original", "messaggio originale",
        "oorspronkelijk bericht", "originalmeddelande", "oprindelig meddelelse",
        "opprinnelig melding", "alkuperäinen viesti", "wiadomość oryginalna", "původní zpráva",
        "исходное сообщение", "оригинальное сообщение", "вихідне повідомлення", "orijinal ileti",
        "原始邮件", "原始郵件", "元のメッセージ", "원본 메시지",
        # a forwarded message
        "forwarded message", "weitergeleitete nachricht", "message transféré",
        "mensaje reenviado", "mensagem encaminhada", "messaggio inoltrato",
        "doorgestuurd bericht", "vidarebefordrat meddelande", "videresendt meddelelse",
        "wiadomość przekazana", "přeposlaná zpráva", "пересылаемое сообщение",
        "пересланное сообщение", "转发的邮件", "已转发邮件", "轉寄的郵件", "転送されたメッセージ",
        "전달된 메시지", "전달된 메일", "iletilen ileti",
        # Apple Mail's forwarding line, which ends in a colon instead of dashes
        "begin forwarded message", "anfang der weitergeleiteten nachricht",
        "début du message réexpédié", "inicio del mensaje reenviado",
        "início da mensagem reencaminhada", "inizio messaggio inoltrato",
        "begin doorgestuurd bericht", "начало переадресованного сообщения",
        "以下为转发的邮件", "以下是轉寄的郵件",
    }
)  # fmt: skip


def _roles(table: Mapping[str, Iterable[str]]) -> Mapping[str, str]:
    return {key: role for role, keys in table.items() for key in keys}


# Header names of a quoted message, lower-cased, by what they say.
_HEADER_ROLES: Final[Mapping[str, str]] = _roles(
    {
        "from": (
            "from", "von", "de", "от", "від", "od", "da", "van", "från", "fra", "lähettäjä",
            "kimden", "feladó", "afzender", "remetente", "mittente", "expéditeur", "absender",
            "发件人", "發件人", "寄件者", "寄件人", "差出人", "보낸 사람", "보낸사람",
        ),
        "date": (
            "sent", "date", "gesendet", "datum", "envoyé", "enviado", "enviada", "fecha", "data",
            "отправлено", "дата", "надіслано", "inviato", "verzonden", "skickat", "sendt",
            "wysłano", "wysłane", "odesláno", "lähetetty", "tarih", "gönderildi", "dátum",
            "发送时间", "日期", "時間", "傳送時間", "寄件日期", "送信日時", "日付", "보낸 날짜",
            "날짜",
        ),
        "to": (
            "to", "an", "à", "a", "para", "кому", "aan", "till", "til", "do", "komu", "kime",
            "vastaanottaja", "címzett", "收件人", "收件者", "宛先", "받는 사람", "받는사람",
        ),
        "subject": (
            "subject", "betreff", "objet", "asunto", "assunto", "oggetto", "тема", "onderwerp",
            "ämne", "emne", "temat", "předmět", "aihe", "konu", "tárgy", "主题", "主旨", "件名",
            "제목",
        ),
        "cc": ("cc", "bcc", "kopie", "копия", "kopia", "抄送", "副本", "참조"),
    }
)  # fmt: skip

# Attribution verbs that end the line ("… wrote:", "… 写道："), compared lower-cased; the
# words in Latin, Cyrillic or Greek script must stand alone.
_WORD_VERBS: Final = (
    "wrote", "writes", "a écrit", "escribió", "escreveu", "escribiu", "ha scritto", "schreef",
    "skrev", "kirjoitti", "napisał(a)", "napisała", "napisał", "pisze", "napsal(a)", "napsala",
    "napsal", "написал(а)", "написала", "написал", "пишет", "написав(ла)", "написав", "yazdı",
    "írta", "έγραψε", "đã viết", "menulis", "כתב", "كتب",
)  # fmt: skip
_SCRIPT_VERBS: Final = (
    "写道", "寫道", "書きました", "のメッセージ", "のメール", "작성", "작성하였습니다",
)  # fmt: skip
# Attribution verbs that stand mid-line ("Am …, schrieb Max <max@example.com>:").
_MID_VERBS: Final = ("schrieb", "schreef", "skrev")
_MID_VERB_RE: Final = re.compile(r"(?<![^\W\d_])(?:schrieb|schreef|skrev)(?![^\W\d_])", re.I)
# How an attribution's first line starts, before its date.
_LEAD_IN_RE: Final = re.compile(
    r"(?:on|le|am|el|em|il|il giorno|op|den|på|w dniu|dne|în|στις|às|no dia)\s|在|於|\d", re.I
)

_DIGIT_RE: Final = re.compile(r"\d")
_CLOCK_TIME_RE: Final = re.compile(r"(?<!\d)\d{1,2}[:.]\d{2}(?!\d)")

# Footers that mail apps add below a message written on a phone (matched whole, on one line).
_TOKENS: Final = r"(?: [^\s,;]+)"
_MOBILE_FOOTER_RE: Final = re.compile(
    "|".join(
        (
            rf"sent (?:from|with|via|using|on){_TOKENS}{{1,6}}",
            rf"get outlook for{_TOKENS}{{1,3}}",
            rf"(?:von meine[mr]?|vom){_TOKENS}{{1,5}} gesendet",
            rf"gesendet (?:von|mit|aus|über){_TOKENS}{{1,6}}",
            rf"envoyé (?:de|depuis|à partir de|avec|par){_TOKENS}{{1,6}}",
            rf"enviad[oa] (?:desde|do|de|da|con|com|pelo|vía|via){_TOKENS}{{1,6}}",
            rf"inviato (?:da|dal|dalla|con|tramite){_TOKENS}{{1,6}}",
            rf"(?:verzonden|verstuurd) (?:vanaf|met|via|van){_TOKENS}{{1,6}}",
            rf"(?:skickat|sendt) (?:från|fra){_TOKENS}{{1,6}}",
            rf"отправлено (?:с|со|из|через){_TOKENS}{{1,6}}",
            rf"надіслано (?:з|із|зі){_TOKENS}{{1,6}}",
            rf"wysłan[eoy] (?:z|ze){_TOKENS}{{1,6}}",
            rf"odesláno (?:z|ze){_TOKENS}{{1,6}}",
            rf"[^\s,;]+{_TOKENS}{{0,4}} gönderildi",
            r"(?:发自|發自|来自|來自)(?:我的)? ?[^\s,;，；]{1,30}" + _TOKENS + "{0,3}",
            r"(?:从|從)我的 ?[^,;，；]{1,30}?(?:发送|發送|傳送|发出)",
            r"[^,;、]{1,40}?から送信",
            r"[^,;]{1,40}?에서 보냄",
        )
    )
    + r"[.!。]?",
    re.IGNORECASE,
)
# An old-style sign-off: "-Abhishek Kona".
_DASH_NAME_RE: Final = re.compile(r"-[^\W\d_][\w.'’]*(?: [^\W\d_][\w.'’]*){0,2}")


@dataclass(frozen=True, slots=True)
class _Body:
    """A body's lines with what is looked up about each of them, worked out once.

    Attributes:
        lines: the lines, as cleaned.
        probes: each line as markers are matched against it (see :func:`_probe`).
        roles: the header each line is ("from", "date", "to", "subject", "cc"), if any.
        quoted: whether each line is ``>`` quoted.
    """

    lines: Sequence[str]
    probes: Sequence[str]
    roles: Sequence[str | None]
    quoted: Sequence[bool]

    @classmethod
    def of(cls, text: str) -> _Body:
        lines = text.split("\n")
        probes = [_probe(line) for line in lines]
        roles = [_header_role(probe) for probe in probes]
        return cls(lines, probes, roles, _quoted_lines(lines))


@dataclass(frozen=True, slots=True)
class _History:
    """Where a message's quoted history begins, and where the quoted message's body begins."""

    start: int
    body: int


@dataclass(frozen=True, slots=True)
class _Split:
    """A body's lines sorted into the sender's own, the ``>`` quoted, and the history below."""

    own: list[int]
    quoted: list[int]
    history: _History | None


def clean_text(text: str) -> str:
    """Normalise a plain-text body for storage and comparison.

    Unicode NFC; ``\\r\\n`` and lone ``\\r`` become ``\\n``; NUL and the other C0 control
    characters except ``\\n`` and ``\\t`` are removed; trailing whitespace is stripped from
    every line; runs of three or more blank lines collapse to two; the result is stripped.

    Args:
        text: any text.

    Returns:
        The cleaned text (empty when ``text`` holds nothing visible).
    """
    text = unicodedata.normalize("NFC", text)
    text = _C0_CONTROLS_RE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUN_RE.sub("\n\n\n", text).strip()


def visible_text(full_text: str) -> str:
    """The sender's own words: quoted replies, forwarded history and the signature removed.

    ``full_text`` with quoted replies, forwarded-history blocks and the signature removed, by
    the rules in this module's docstring; the result is cleaned as by :func:`clean_text`.

    Args:
        full_text: a plain-text message body, quotes and all.

    Returns:
        The visible text. When nothing of the sender's own remains (the mail is only a
        quote, a forward or a signature) it is the quoted message's own words, and failing
        those the cleaned ``full_text``: never empty unless ``full_text`` has nothing visible.
    """
    text = clean_text(full_text)
    return _visible(text, depth=0) or text


def own_words(full_text: str) -> str:
    """The sender's own words with no fallback: empty when the body is only quoted history.

    Args:
        full_text: a plain-text message body.

    Returns:
        What :func:`visible_text` keeps at its first pass, cleaned; possibly empty.
    """
    body = _Body.of(clean_text(full_text))
    return _own_words(body, _split(body))


def starts_with_header_block(text: str, *, after_rule: bool = False) -> bool:
    """Whether ``text`` begins with the header block of a quoted or forwarded message.

    Args:
        text: lines of text, the first of which should be a header ("From: …", "Von: …").
        after_rule: the text follows a horizontal rule, which lets a block without a Subject
            line count (Outlook and Windows Mail draw one above their header block).

    Returns:
        True for a block with a From line and at least three kinds of header.
    """
    first_line = text.split("\n", 1)[0]
    if _header_role(_probe(first_line)) is None:
        return False
    body = _Body.of("\n".join(text.split("\n", _HEADER_WINDOW_LINES)[:_HEADER_WINDOW_LINES]))
    return _header_block_end(body, 0, after_rule=after_rule) is not None


def _visible(text: str, depth: int) -> str:
    if not text:
        return ""
    body = _Body.of(text)
    split = _split(body)
    own = _own_words(body, split)
    if own or depth >= _MAX_FALLBACK_DEPTH:
        return own
    # Nothing of the sender's own: the quoted or forwarded message is the content.
    if split.history is not None:
        inner = "\n".join(body.lines[split.history.body :])
    else:
        inner = "\n".join(_unquote(body.lines[index]) for index in split.quoted)
    return _visible(clean_text(inner), depth + 1)


def _own_words(body: _Body, split: _Split) -> str:
    kept = _join(body.lines, split.own)
    return clean_text("\n".join(_without_signature(kept)))


def _split(body: _Body) -> _Split:
    own: list[int] = []
    quoted: list[int] = []
    for index in range(len(body.lines)):
        if body.quoted[index]:
            quoted.append(index)
            continue
        history = _history_at(body, index)
        if history is not None:
            return _Split(_before(own, history.start), quoted, history)
        attribution = _attribution_at(body, index)
        if attribution is not None:
            start, strong = attribution
            following = _next_filled(body, index + 1)
            if following is None or body.quoted[following]:
                own = _before(own, start)
                continue
            if strong:
                return _Split(_before(own, start), quoted, _History(start, following))
        own.append(index)
    return _Split(own, quoted, None)


def _quoted_lines(lines: Sequence[str]) -> list[bool]:
    """Which lines are ``>`` quoted.

    A block of lines that all start with ``>>>`` and say something is a Python prompt or an
    SMTP transcript pasted by the sender, not a quote: a real quote three levels deep comes
    with the levels above it.
    """
    quoted = [line.startswith(">") for line in lines]
    start = 0
    while start < len(lines):
        if not quoted[start]:
            start += 1
            continue
        end = start
        while end < len(lines) and quoted[end]:
            end += 1
        block = lines[start:end]
        if all(line.startswith(">>>") for line in block) and any(
            line.lstrip(">").strip() for line in block
        ):
            quoted[start:end] = [False] * (end - start)
        start = end
    return quoted


def _before(indices: list[int], limit: int) -> list[int]:
    """The indices below ``limit`` (lines already kept that turn out to start a quote)."""
    while indices and indices[-1] >= limit:
        indices.pop()
    return indices


def _join(lines: Sequence[str], indices: Sequence[int]) -> list[str]:
    """The kept lines, with the blank lines on either side of a removed block merged."""
    kept: list[str] = []
    previous = -1
    for index in indices:
        line = lines[index]
        gap = index != previous + 1
        if not line.strip() and kept and not kept[-1].strip() and gap:
            previous = index
            continue
        kept.append(line)
        previous = index
    return kept


def _unquote(line: str) -> str:
    """A ``>`` quoted line one level less quoted."""
    line = line[1:]
    return line[1:] if line.startswith(" ") else line


def _probe(line: str) -> str:
    """The line as markers are matched against it, or ``""`` when it is too long to be one."""
    if len(line) > _MAX_MARKER_CHARS:
        return ""
    return line.translate(_PROBE_TRANSLATION).strip()


def _next_filled(body: _Body, start: int) -> int | None:
    for index in range(start, len(body.lines)):
        if body.lines[index].strip():
            return index
    return None


# --- separators and header blocks ---------------------------------------------------------


def _history_at(body: _Body, index: int) -> _History | None:
    """The history that starts at line ``index``, by a separator line or a header block."""
    probe = body.probes[index]
    if not probe:
        return None
    if _is_separator(probe):
        following = _next_filled(body, index + 1)
        if following is None:
            return _History(index, len(body.lines))
        block_end = _header_block_end(body, following, after_rule=True)
        return _History(index, following if block_end is None else block_end)
    if body.roles[index] is None:
        return None
    rule = _rule_above(body, index)
    block_end = _header_block_end(body, index, after_rule=rule is not None)
    if block_end is None:
        return None
    return _History(index if rule is None else rule, block_end)


def _is_separator(probe: str) -> bool:
    if not probe.startswith(("--", "==", "__", "—")) and not probe.endswith((":", "：")):
        return False
    label = probe.strip("-=_*—– \t").rstrip(":：").strip().casefold().replace("’", "'")
    return label in _SEPARATOR_LABELS


def _is_rule(probe: str) -> bool:
    return len(probe) >= 5 and not probe.strip("-_=*—–~ ")


def _rule_above(body: _Body, index: int) -> int | None:
    """The horizontal rule line just above line ``index`` (blank lines between allowed)."""
    for above in range(index - 1, max(index - 4, -1), -1):
        probe = body.probes[above]
        if probe:
            return above if _is_rule(probe) else None
    return None


def _header_role(probe: str) -> str | None:
    """What a header line names ("from", "date", "to", "subject", "cc"), if it is one."""
    head = probe[:40]
    colon = head.find(":")
    wide = head.find("：")
    if wide > 0 and (colon < 0 or wide < colon):
        colon = wide
    if colon <= 0:
        return None
    key = head[:colon].strip(" *\t").casefold()
    return _HEADER_ROLES.get(key) or _HEADER_ROLES.get(" ".join(key.split()))


def _header_block_end(body: _Body, start: int, *, after_rule: bool) -> int | None:
    """The first line of the quoted body when a header block starts at ``start``, else None."""
    roles: dict[str, str] = {}
    last = start
    blanks = 0
    for index in range(start, min(start + _HEADER_WINDOW_LINES, len(body.lines))):
        if not body.probes[index]:
            blanks += 1
            if blanks >= 3:
                break
            continue
        blanks = 0
        role = body.roles[index]
        if role is not None:
            roles.setdefault(role, body.probes[index])
            last = index
    if not _is_header_set(roles, after_rule=after_rule):
        return None
    # The quoted body starts after the blank line that ends the block.
    blank = _next_blank(body, last + 1)
    return len(body.lines) if blank is None else blank + 1


def _is_header_set(roles: Mapping[str, str], *, after_rule: bool) -> bool:
    """Whether the headers found (role -> first line) make a quoted message's header block.

    A From line and three kinds of header, and something more that a person describing a
    transfer ("From: … To: … Date: …") would not write: a Subject line, a rule line above, or
    an address in the From line.
    """
    sender = roles.get("from")
    if sender is None or len(roles) < 3:
        return False
    return "subject" in roles or after_rule or "@" in sender


def _next_blank(body: _Body, start: int) -> int | None:
    for index in range(start, len(body.lines)):
        if not body.lines[index].strip():
            return index
    return None


# --- attribution lines --------------------------------------------------------------------


def _attribution_at(body: _Body, index: int) -> tuple[int, bool] | None:
    """An attribution ending at line ``index``: its first line, and whether it has a verb.

    One wrapped over several lines is recognised from its last line; the first line is the
    nearest one above that starts like an attribution ("On 1 May …", a date), else the
    shortest span that reads as one.
    """
    last = body.probes[index]
    if not last.endswith((":", "：")):
        return None
    ends_with_verb = _ends_with_verb(last.rstrip(":： "))
    fallback: tuple[int, bool] | None = None
    joined = ""
    for first in range(index, max(index - _ATTRIBUTION_MAX_LINES, -1), -1):
        probe = body.probes[first]
        if not probe or body.quoted[first]:
            break
        joined = f"{probe} {joined}" if joined else probe
        if len(joined) > _MAX_MARKER_CHARS:
            break
        kind = _attribution_kind(joined, ends_with_verb=ends_with_verb)
        if kind is None:
            continue
        if _starts_attribution(probe):
            return first, kind
        fallback = fallback or (first, kind)
    return fallback


def _ends_with_verb(text: str) -> bool:
    tail = text[-40:].casefold()
    if tail.endswith(_SCRIPT_VERBS):
        return True
    if not tail.endswith(_WORD_VERBS):
        return False
    verb = next(verb for verb in _WORD_VERBS if tail.endswith(verb))
    before = tail[: -len(verb)]
    return not before or not before[-1].isalpha()


def _attribution_kind(text: str, *, ends_with_verb: bool) -> bool | None:
    """True for a worded attribution, False for a bare "<date> <name> <address>:", else None."""
    has_address = "@" in text
    has_digit = _DIGIT_RE.search(text) is not None
    if not (has_address or has_digit):
        return None
    text = text.lstrip("-*> ").rstrip(":： ")
    dated_lead_in = has_digit and _LEAD_IN_RE.match(text) is not None
    if ends_with_verb and (has_address or dated_lead_in):
        return True
    if dated_lead_in and _has_mid_verb(text):
        return True
    if has_address and text.endswith(">") and "<" in text and _CLOCK_TIME_RE.search(text):
        # "26.06.2014, 14:41, "Alexander L" <abc@example.com>:" (Yandex, Gmail in Russian)
        return True
    if has_address and has_digit and len(text) <= 300:
        return False
    return None


def _has_mid_verb(text: str) -> bool:
    lowered = text.casefold()
    return any(verb in lowered for verb in _MID_VERBS) and bool(_MID_VERB_RE.search(text))


def _starts_attribution(probe: str) -> bool:
    probe = probe.lstrip("-*> ")
    return _LEAD_IN_RE.match(probe) is not None and _DIGIT_RE.search(probe) is not None


# --- signatures ---------------------------------------------------------------------------


def _without_signature(lines: list[str]) -> list[str]:
    """The lines above the signature (and above a footer under it), or all of them."""
    for _ in range(_MAX_FOOTERS):
        shorter = _above_signature(lines)
        if len(shorter) == len(lines):
            break
        lines = shorter
    return lines


def _above_signature(lines: list[str]) -> list[str]:
    cut: int | None = None
    filled = 0
    for index in range(len(lines) - 1, -1, -1):
        probe = _probe(lines[index])
        if not probe:
            continue
        filled += 1
        if filled > _SIGNATURE_MAX_LINES + 1:
            break
        if _starts_signature(probe, filled):
            cut = index
    return lines if cut is None else lines[:cut]


def _starts_signature(probe: str, from_bottom: int) -> bool:
    """Whether a line opens the signature, given it is the ``from_bottom``-th line from the end."""
    if probe == "--" or (len(probe) >= 2 and not probe.strip("_")):
        return True
    if len(probe) > _MAX_FOOTER_CHARS:
        return False
    if from_bottom <= 3 and _MOBILE_FOOTER_RE.fullmatch(probe):
        return True
    return from_bottom <= 2 and _is_dash_name(probe)


def _is_dash_name(probe: str) -> bool:
    """A "-Name" sign-off: a dash, then one to three capitalised words."""
    match = _DASH_NAME_RE.fullmatch(probe)
    return match is not None and all(word[0].isupper() for word in probe[1:].split())
