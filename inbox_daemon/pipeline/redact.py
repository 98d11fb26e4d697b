# ruff: noqa: RUF001 - the labels are multilingual text (fullwidth colons, Cyrillic) on purpose
"""Remove secrets from message text before anything is stored or logged.

Five kinds of secret are replaced by ``[REDACTED:<kind>]`` (POLICY.md, "Secrets"):

- ``seed_phrase``: a run of at least 12 consecutive BIP39 English words, whatever separates
  them (spaces, commas, line breaks, numbering such as ``1.`` or ``2)``), in any case. The
  12-24 word windows of the run whose BIP39 checksum holds go, keeping up to four ordinary
  wordlist words around them ("seed phrase: ... please help"); otherwise the whole run goes.
- ``private_key``: 64 hex digits (``0x`` or not) or 85-90 base58 characters labelled as a
  private key, WIF keys, and extended private keys (``xprv``, ``tprv`` ...). Hex with no label,
  or whose nearest label is a transaction, hash, address or public key, is not a secret.
- ``otp_code``: 4 to 8 digits given as a 2FA, OTP, SMS or verification code. A bare "code"
  (``code``, ``код``, ``código`` ...) counts only for exactly six digits, and not after words
  such as "error" or "referral".
- ``password``: what follows a password label and a connector ("is", ":", "=", "es" ...) when
  it looks like a password (a digit, a symbol or mixed case), or when it stands alone at the
  end of its line after a colon.
- ``api_secret``: a long base62/base64 value (or a grouped base32 2FA key) labelled as a secret.

Only the value goes; the label stays, so staff still read "my password is
[REDACTED:password]". The function is pure; the wordlist is read once, on first use. Cheap
tests (a lower-case substring, a digit run, a long token) come before each costly regular
expression, because this runs on every message.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Final

from mnemonic import Mnemonic

#: Every kind of secret, in the order :attr:`Redaction.kinds` reports them.
KINDS: Final = ("seed_phrase", "private_key", "otp_code", "password", "api_secret")
# When findings overlap, the most specific label names the merged redaction: "clave secreta"
# is an API secret though "clave" alone may be a password, "one-time password" is a code.
_PRECEDENCE: Final = ("seed_phrase", "private_key", "api_secret", "otp_code", "password")

_SEED_LENGTHS: Final = (24, 21, 18, 15, 12)
_MIN_SEED_WORDS: Final = 12
# Above this many words a run goes whole: checking every window would cost seconds on a
# hostile megabyte of wordlist words, and two full phrases fit below it.
_MAX_CHECKED_RUN_WORDS: Final = 48
# At most this many ordinary wordlist words next to a phrase are kept ("seed phrase: ...").
_MAX_TRIMMED_WORDS: Final = 4
_KEY_CONTEXT_BEFORE_CHARS: Final = 80
_KEY_CONTEXT_AFTER_CHARS: Final = 40
_OTP_LABEL_WINDOW_CHARS: Final = 64
_DISQUALIFIER_WINDOW_CHARS: Final = 40

# Letters of the scripts written with spaces between words (Latin with Vietnamese, Greek,
# Cyrillic, Arabic): labels in these scripts must be whole words. Han, kana and Hangul labels
# match anywhere, since those scripts do not separate words.
_ALPHA: Final = "A-Za-z\u00c0-\u024f\u0370-\u03ff\u0400-\u052f\u0600-\u06ff\u1e00-\u1eff"
_B58: Final = "1-9A-HJ-NP-Za-km-z"


def _labels(spaced: tuple[str, ...], unspaced: tuple[str, ...] = ()) -> str:
    """One alternation: ``spaced`` labels as whole words, ``unspaced`` ones anywhere.

    A whole word has no letter or digit on either side, so ``pwd`` inside a random token such
    as ``x9pwd3`` is not a label.
    """
    return "|".join((rf"(?<![{_ALPHA}0-9])(?:{'|'.join(spaced)})(?![{_ALPHA}0-9])", *unspaced))


def _mentions(lowered: str, stems: Iterable[str]) -> bool:
    return any(map(lowered.__contains__, stems))


# --- seed phrases ---------------------------------------------------------------------------
# BIP39 English words are 3 to 8 ASCII letters. A candidate is 12 or more such words with only
# separators between them; each word and each gap can match one way only, so the scan stays
# linear on any input.
_SEED_WORD: Final = rf"[A-Za-z]{{3,8}}(?![{_ALPHA}])"
_SEED_GAP: Final = r"[\s,;.:()\[\]|/\\*#•·\-–—、，。；：0-9]{1,12}"
_SEED_CANDIDATE: Final = re.compile(
    rf"(?<![{_ALPHA}]){_SEED_WORD}(?:{_SEED_GAP}{_SEED_WORD}){{{_MIN_SEED_WORDS - 1},}}"
)
_ASCII_WORD: Final = re.compile("[A-Za-z]+")
# In ASCII text every separator of a phrase is whitespace, punctuation or a digit; turned into
# spaces, they leave each word of a phrase a token of its own.
_TO_SPACES: Final = str.maketrans(dict.fromkeys(string.punctuation + string.digits, " "))
_NUMBERING: Final = re.compile(r"\(?\d{1,2}[.):]?[ \t]{0,3}\Z")

# --- keys -----------------------------------------------------------------------------------
# Keys are maximal ASCII alphanumeric tokens of 51 characters or more (a WIF key is the
# shortest), told apart by shape, then by the label nearest to them.
_LONG_TOKEN: Final = re.compile(r"[0-9A-Za-z]{51,}")
_KEY_SHAPE: Final = re.compile(
    r"(?P<hex>(?:0[xX])?[0-9a-fA-F]{64})"
    rf"|(?P<extended>[xyztuvXYZUV]prv[{_B58}]{{100,108}})"
    rf"|(?P<wif>5[HJK][{_B58}]{{49}}|9[{_B58}]{{50}}|[KLc][{_B58}]{{51}})"
    rf"|(?P<base58>[{_B58}]{{85,90}})"
)
_PRIVATE_KEY_LABEL: Final = _labels(
    (
        r"priv(?:ate)?[\s_-]?keys?",
        r"wif",
        r"(?:приватн|закрыт|закрит)\w*\s+ключ\w*",
        r"clave\s+privada",
        r"chave\s+privada",
        r"[öo]zel\s+anahtar\w*",
        r"kh[óo]a\s+(?:ri[êe]ng|c[áa]\s+nh[âa]n)\w*",
        r"kunci\s+(?:privat|pribadi)",
        r"cl[ée]s?\s+priv[ée]es?",
        r"privat(?:e[rn]?)?\s*schl[üu]ssel",
        r"المفتاح\s+الخاص",
    ),
    (r"私钥|私鑰", r"개인\s*키|프라이빗\s*키", r"秘密鍵|プライベートキー"),
)
_SECRET_LABEL: Final = _labels(
    (
        r"(?:api|client|app)?[\s_-]?secret(?:[\s_-]?(?:access[\s_-]?)?key)?",
        r"setup\s+key",
        r"(?:2fa|totp|mfa|authenticator)\s+(?:key|secret)",
        r"секретн\w*\s+ключ\w*",
        r"clave\s+secreta",
        r"chave\s+secreta",
        r"gizli\s+anahtar\w*",
        r"kh[óo]a\s+b[íi]\s+m[ậa]t",
        r"kunci\s+rahasia",
        r"cl[ée]\s+secr[èe]te",
        r"geheim\w*\s*schl[üu]ssel",
        r"المفتاح\s+السري",
    ),
    (r"密钥|秘钥|密鑰", r"시크릿\s*키|비밀\s*키", r"シークレット\s*キー"),
)
# Every secret label holds one of these, lower-cased: a cheap test before the expression.
_SECRET_STEMS: Final = (
    "secr",
    "setup",
    "2fa",
    "totp",
    "mfa",
    "authenticator",
    "секрет",
    "gizli",
    "bí m",
    "bi m",
    "rahasia",
    "geheim",
    "السري",
    "密钥",
    "秘钥",
    "密鑰",
    "시크릿",
    "비밀",
    "シークレット",
)
_PUBLIC_LABEL: Final = _labels(
    (
        r"pub(?:lic)?[\s_-]?key",
        r"api[\s_-]?key",
        r"(?:access[\s_-]?)?key[\s_-]?id",
        r"tx(?:id|n|[\s_-]?hash|[\s_-]?id)?",
        r"hash\w*",
        r"transa[cçk]\w*",
        r"транзакц\w*",
        r"х[эе]ш\w*",
        r"i[şs]lem\w*",
        r"giao\s+d[ịi]ch",
        r"معاملة|المعاملة|تجزئة",
        r"address\w*|addr|adres\w*|direcci[óo]n|endere[çc]o|alamat|адрес\w*",
        r"đ[ịi]a\s+ch[ỉi]",
        r"block|blok|order|uid",
    ),
    (
        r"交易|哈希|公钥|地址",
        r"거래|트랜잭션|해시|주소",
        r"取引|トランザクション|ハッシュ|アドレス|公開鍵",
    ),
)
_KEY_CONTEXT: Final = re.compile(
    rf"(?P<private_key>{_PRIVATE_KEY_LABEL})|(?P<api_secret>{_SECRET_LABEL})"
    rf"|(?P<public>{_PUBLIC_LABEL})",
    re.IGNORECASE,
)

# --- labelled values: one-time codes, passwords, API secrets -----------------------------------
_CONNECTOR: Final = (
    r"(?:[:：=＝\-–—>→]"
    rf"|(?<![{_ALPHA}])(?:is|was|es|era|fue|é|foi|est|était|ist|war|lautet|là|adalah|ialah"
    rf"|yaitu|olarak|هو|هي)(?![{_ALPHA}])"
    r"|是|为|為|は|が|는|은|이|가)"
)
_OPEN_QUOTE: Final = r"[\"'“‘«「『]?"

# Six digits, maybe split "482 913", or 4 to 8 digits; not part of a longer number or amount.
_OTP_VALUE: Final = re.compile(r"\d{3}(?:[ -]?\d{3}(?![.,]?\d)|\d{1,5}(?![.,]?\d))")
_OTP_QUALIFIED: Final = _labels(
    (
        r"2fa(?:[\s-]?(?:code|kodu?|код))?",
        r"two[\s-]factor(?:\s+(?:authentication\s+)?code)?",
        r"otp(?:[\s-]?(?:code|kodu?|код))?|totp|mfa(?:\s+code)?|passcode",
        r"one[\s-]time\s+(?:pass(?:word|code)|code|pin)",
        r"(?:verification|verify|authentication|authenticator|auth|security|confirmation"
        r"|login|log-in|sign[\s-]in|sms|text|google\s+authenticator|ga|email|e-mail|withdrawal"
        r"|backup|recovery)[\s-]+code",
        r"(?:смс|sms|одноразов\w*|проверочн\w*|перевірочн\w*)[\s-]?код\w*",
        r"код\w*\s+(?:подтверждени\w*|підтвердженн\w*|верификац\w*|из\s+(?:смс|sms)"
        r"|з\s+(?:смс|sms)|безопасност\w*|доступа|авторизац\w*|2fa|otp|sms|смс|google|гугл)",
        r"c[óo]digo\s+(?:de\s+)?(?:verificaci[óo]n|verifica[çc][ãa]o|seguridad|seguran[çc]a"
        r"|confirmaci[óo]n|confirma[çc][ãa]o|autenticaci[óo]n|autentica[çc][ãa]o|acceso"
        r"|acesso|2fa|sms|otp)",
        r"(?:doğrulama|dogrulama|onay|güvenlik|guvenlik|sms|giriş|giris)\s+kodu?\w*",
        r"mã\s+(?:x[áa]c\s+(?:minh|th[ựu]c|nh[ậa]n)|otp|2fa|sms|b[ảa]o\s+m[ậa]t)",
        r"kode\s+(?:verifikasi|otp|2fa|sms|keamanan|konfirmasi|autentikasi)",
        r"code\s+(?:de\s+)?(?:v[ée]rification|confirmation|s[ée]curit[ée]|validation"
        r"|d['’]authentification|authentification|à\s+usage\s+unique|2fa|sms|otp)",
        r"(?:best[äa]tigungs|bestaetigungs|verifizierungs|sicherheits|authentifizierungs"
        r"|einmal|anmelde)code",
        r"(?:رمز|كود)\s+(?:التحقق|التأكيد|الأمان|التفعيل)",
    ),
    (
        r"验证码|驗證碼|校验码|动态码|动态密码|动态口令|短信码|安全码|确认码|认证码|一次性密码",
        r"인증\s*번호|인증\s*코드|보안\s*코드|확인\s*코드|승인\s*번호",
        r"(?:2FA|OTP|SMS|구글)\s*(?:코드|번호)",
        r"認証コード|確認コード|認証番号|確認番号|ワンタイムパスワード|ワンタイムコード"
        r"|セキュリティコード|(?:2FA|SMS)\s*コード",
    ),
)
# A bare "code" is a one-time code only when exactly six digits follow it.
_OTP_GENERIC: Final = _labels(
    (r"code", r"c[óo]digo", r"код", r"kod(?:u|um)?", r"kode", r"mã", r"رمز", r"كود"),
)
# Every one-time-code label holds one of these, lower-cased.
_OTP_STEMS: Final = (
    "code",
    "2fa",
    "otp",
    "mfa",
    "factor",
    "one-time",
    "one time",
    "код",
    "digo",
    "kod",
    "mã",
    "رمز",
    "كود",
    "码",
    "碼",
    "口令",
    "인증",
    "코드",
    "번호",
    "認証",
    "確認",
    "コード",
    "ワンタイム",
)
# Between a one-time-code label and its code: a possessive or "I received" ("kode OTP saya
# 482913", "mã OTP của bạn là 482913"), or up to four words before an explicit connector ("the
# code they sent me was 482913"), none of them naming another number ("2FA code and UID is").
_OTP_POSSESSIVE: Final = (
    r"\s+(?:saya|aku|ku|anda|kamu|của\s+(?:tôi|bạn|mình)|i\s+(?:got|received)|you\s+sent"
    rf"|received|sent)(?![{_ALPHA}])"
)
_OTP_WORDS: Final = (
    r"(?:\s+(?!(?:uid|id|order|phone|number|ticket|amount|balance|txid|tx|hash)"
    rf"(?![{_ALPHA}]))[^\W\d_]{{1,12}}){{1,4}}?"
)
# The label, words and connectors that end right where a digit run starts.
_OTP_LABEL_BEFORE: Final = re.compile(
    rf"(?:(?P<qualified>{_OTP_QUALIFIED})|(?P<generic>{_OTP_GENERIC}))"
    rf"(?:{_OTP_WORDS}(?:\s*{_CONNECTOR}){{1,3}}|(?:{_OTP_POSSESSIVE})?(?:\s*{_CONNECTOR}){{0,3}})"
    rf"\s*{_OPEN_QUOTE}\Z",
    re.IGNORECASE,
)
# Words that make a bare "code" something else when they come shortly before it: an error or
# API status ("the API returns code 200001"), a referral, promotion, postal or bank code.
_NOT_OTP_CONTEXT: Final = re.compile(
    _labels(
        (
            r"errors?|err|api|http|status|response|returns?|returned|exit|reason|close",
            r"referral|refer|invite|invitation|promo\w*|coupon|voucher|discount|bonus|gift",
            r"reference|ref|zip|postal|post|country|area|tax|bank|branch|swift|sort|card",
            r"anti-?phishing|tracking|product|order|qr|sku|item",
            r"ошибк\w*|реферальн\w*|промо\w*|пригласительн\w*|помилк\w*",
            r"hata|davet|referans|fehler|empfehlungs\w*|erreur|parrainage",
        ),
        (r"错误|邀请|推荐|エラー|招待|오류|에러|추천",),
    ),
    re.IGNORECASE,
)

_LOGIN_LABEL: Final = _labels(
    (
        r"pass(?:word|wd|phrase)?s?|pwd|pw|pin",
        r"парол[ьяюе]\w*",
        r"contrase[ñn]as?|clave",
        r"senhas?",
        r"[şs]ifre(?:m|miz|niz|si)?|parola(?:m)?",
        r"m[ậa]t\s+kh[ẩa]u",
        r"kata\s+sandi|sandi",
        r"mot\s+de\s+passe|mdp",
        r"passwort|kennwort",
        r"كلمة\s+(?:المرور|السر)",
    ),
    (r"密码|密碼", r"비밀번호|비번|패스워드", r"パスワード|暗証番号"),
)
# Every password label holds one of these, lower-cased ("şi̇fre" is "ŞİFRE" lower-cased).
_LOGIN_STEMS: Final = (
    "pass",
    "pw",
    "pin",
    "парол",
    "contrase",
    "clave",
    "senha",
    "şifre",
    "sifre",
    "şi̇fre",
    "parola",
    "khẩu",
    "khau",
    "sandi",
    "mdp",
    "kennwort",
    "كلمة",
    "密码",
    "密碼",
    "비밀번호",
    "비번",
    "패스워드",
    "パスワード",
    "暗証番号",
)
# Labels too common as ordinary words to count without a colon or an equals sign.
_STRICT_LOGIN_LABELS: Final = frozenset({"pass", "pw", "pin", "clave", "sandi", "mdp"})
_LOGIN_VALUE_CHAR: Final = (
    r"[^\s\"“”«»<>\u3000-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]"
)
_LOGIN: Final = re.compile(
    rf"(?P<label>{_LOGIN_LABEL})[\"']?"
    # A few words may sit between the label and an explicit connector ("password for the
    # app is ..."); without a connector the value must follow the label directly.
    rf"(?:(?:\s+[^\W\d_]{{1,15}}){{1,3}}?(?P<after_words>(?:\s*{_CONNECTOR}){{1,3}})"
    rf"|(?P<connector>(?:\s*{_CONNECTOR}){{1,3}})|)\s*"
    r"(?:[\"“«「『'](?P<quoted>[^\"'“”«»「」『』\n]{1,128})[\"'”»」』]"
    rf"|[\"“«「『']?(?P<value>{_LOGIN_VALUE_CHAR}{{1,128}}))",
    re.IGNORECASE,
)
_NOT_A_PASSWORD: Final = re.compile(
    r"(?:https?://|www\.)\S*|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|\d{1,2}:\d{2}(?::\d{2})?"
    r"|\[REDACTED:\w+\]?",  # our own marker: redacting twice changes nothing
    re.IGNORECASE,
)
_MASK_CHARS: Final = frozenset("*•·●xX#.")
_TRAILING_PUNCTUATION: Final = ".,;:)]}'’"

_API_SECRET: Final = re.compile(
    rf"(?:{_SECRET_LABEL})[\"']?(?:\s*{_CONNECTOR}){{0,3}}\s*{_OPEN_QUOTE}"
    r"(?P<value>[A-Z2-7]{4}(?:[ ][A-Z2-7]{4}){3,15}(?![A-Za-z0-9])"
    r"|[A-Za-z0-9+/_\-]{16,512}={0,2}(?![A-Za-z0-9+/_\-=]))",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Redaction:
    """A text with its secrets replaced, and how many of each kind were removed.

    Attributes:
        text: the text with each secret replaced by ``[REDACTED:<kind>]``.
        counts: kind -> how many secrets of that kind were removed (only kinds found).
    """

    text: str
    counts: Mapping[str, int]

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds found, in the order of :data:`KINDS`."""
        return tuple(kind for kind in KINDS if self.counts.get(kind))


@dataclass(frozen=True, slots=True)
class _Finding:
    start: int
    end: int
    kind: str


_NOTHING: Final[Mapping[str, int]] = MappingProxyType({})


def redact(text: str) -> Redaction:
    """Replace every secret in ``text`` by ``[REDACTED:<kind>]``.

    Args:
        text: any text (a subject, a body); may be empty or hold lone surrogates.

    Returns:
        The redacted text and the number of secrets removed per kind; ``text`` itself, with
        empty counts, when it holds no secret.
    """
    lowered = text.lower()
    findings = [
        *_seed_phrases(text, lowered),
        *_keys(text),
        *_one_time_codes(text, lowered),
        *_passwords(text, lowered),
        *_api_secrets(text, lowered),
    ]
    if not findings:
        return Redaction(text, _NOTHING)
    return _applied(text, _merged(findings))


def _applied(text: str, findings: Sequence[_Finding]) -> Redaction:
    pieces: list[str] = []
    position = 0
    for finding in findings:
        pieces += (text[position : finding.start], f"[REDACTED:{finding.kind}]")
        position = finding.end
    pieces.append(text[position:])
    counts = Counter(finding.kind for finding in findings)
    ordered = {kind: counts[kind] for kind in KINDS if counts[kind]}
    return Redaction("".join(pieces), MappingProxyType(ordered))


def _merged(findings: list[_Finding]) -> list[_Finding]:
    """Overlapping findings become one redaction covering them all, so nothing leaks."""
    findings.sort(key=lambda finding: (finding.start, -finding.end))
    merged = [findings[0]]
    for finding in findings[1:]:
        last = merged[-1]
        if finding.start < last.end:
            kind = min(last.kind, finding.kind, key=_PRECEDENCE.index)
            merged[-1] = _Finding(last.start, max(last.end, finding.end), kind)
        else:
            merged.append(finding)
    return merged


# --- seed phrases ---------------------------------------------------------------------------


@cache
def _bip39_index() -> Mapping[str, int]:
    """The BIP39 English wordlist (from Trezor's ``mnemonic``), word -> index, read once."""
    return MappingProxyType({word: i for i, word in enumerate(Mnemonic("english").wordlist)})


def _seed_phrases(text: str, lowered: str) -> Iterator[_Finding]:
    index = _bip39_index()
    if not _may_hold_seed_phrase(lowered, index):
        return
    for candidate in _SEED_CANDIDATE.finditer(text):
        run: list[re.Match[str]] = []
        for word in _ASCII_WORD.finditer(text, candidate.start(), candidate.end()):
            if word.group().lower() in index:
                run.append(word)
            else:
                yield from _seed_run(text, run)
                run = []
        yield from _seed_run(text, run)


def _may_hold_seed_phrase(lowered: str, index: Mapping[str, int]) -> bool:
    """False when ASCII text has no 12 wordlist words in a row: cheaper than the expression."""
    if not lowered.isascii():
        return True
    streak = 0
    for token in lowered.translate(_TO_SPACES).split():
        streak = streak + 1 if token in index else 0
        if streak >= _MIN_SEED_WORDS:
            return True
    return False


def _seed_run(text: str, run: Sequence[re.Match[str]]) -> Iterator[_Finding]:
    """The seed phrases in one run of consecutive wordlist words."""
    if len(run) < _MIN_SEED_WORDS:
        return
    for first, last in _seed_windows([word.group().lower() for word in run]):
        start = run[first].start()
        numbering = _NUMBERING.search(text, max(0, start - 8), start)
        if numbering is not None:  # the "1." of a numbered list goes with its phrase
            start = numbering.start()
        yield _Finding(start, run[last].end(), "seed_phrase")


def _seed_windows(words: Sequence[str]) -> list[tuple[int, int]]:
    """(first, last) word indexes to remove: the whole run unless its checksums say better.

    Ordinary wordlist words often touch a real phrase ("my seed phrase: ... please help"); the
    real phrase is a window of the run whose BIP39 checksum holds. Every such window goes, so a
    chance match (1 in 16 for 12 words) only removes more. Trimming is trusted only when it
    leaves a few words, so a phrase with a typo never loses a mere chance window.
    """
    whole = [(0, len(words) - 1)]
    if len(words) > _MAX_CHECKED_RUN_WORDS:
        return whole
    valid = [
        (first, first + length - 1)
        for length in _SEED_LENGTHS
        for first in range(len(words) - length + 1)
        if _checksum_holds(words[first : first + length])
    ]
    covered = {index for first, last in valid for index in range(first, last + 1)}
    return valid if len(words) - len(covered) <= _MAX_TRIMMED_WORDS else whole


def _checksum_holds(words: Sequence[str]) -> bool:
    """Whether ``words`` (12 to 24 of them, a multiple of 3) carry a valid BIP39 checksum."""
    index = _bip39_index()
    bits = 0
    for word in words:
        bits = (bits << 11) | index[word]
    checksum_bits = len(words) * 11 // 33
    entropy_bytes = (len(words) * 11 - checksum_bits) // 8
    entropy = (bits >> checksum_bits).to_bytes(entropy_bytes, "big")
    expected = hashlib.sha256(entropy).digest()[0] >> (8 - checksum_bits)
    return bits & ((1 << checksum_bits) - 1) == expected


# --- private keys ---------------------------------------------------------------------------


def _keys(text: str) -> Iterator[_Finding]:
    for token in _LONG_TOKEN.finditer(text):
        shape = _KEY_SHAPE.fullmatch(text, token.start(), token.end())
        if shape is None:
            continue
        kind = _key_kind(text, shape)
        if kind is not None:
            yield _Finding(token.start(), token.end(), kind)


def _key_kind(text: str, shape: re.Match[str]) -> str | None:
    """What a key-shaped token is: its shape says for xprv and WIF, else its label does."""
    if shape.lastgroup == "extended":
        return "private_key"
    label = _nearest_key_label(text, shape.start(), shape.end())
    if label is None:
        # A WIF key's shape is label enough; bare hex is far more often a transaction hash.
        return "private_key" if shape.lastgroup == "wif" else None
    return None if label == "public" else label


def _nearest_key_label(text: str, start: int, end: int) -> str | None:
    """The kind of the closest key label before ``start``, or else of the first after ``end``."""
    before = list(_KEY_CONTEXT.finditer(text, max(0, start - _KEY_CONTEXT_BEFORE_CHARS), start))
    found = before[-1] if before else _KEY_CONTEXT.search(text, end, end + _KEY_CONTEXT_AFTER_CHARS)
    return None if found is None else found.lastgroup


# --- one-time codes, passwords, API secrets ---------------------------------------------


def _one_time_codes(text: str, lowered: str) -> Iterator[_Finding]:
    if not _mentions(lowered, _OTP_STEMS):
        return
    for value in _OTP_VALUE.finditer(text):
        start = value.start()
        if start and text[start - 1].isascii() and text[start - 1].isalnum():
            continue  # the tail of a longer number or of an identifier such as "A482913"
        window_start = max(0, start - _OTP_LABEL_WINDOW_CHARS)
        if not _mentions(text[window_start:start].lower(), _OTP_STEMS):
            continue
        label = _OTP_LABEL_BEFORE.search(text, window_start, start)
        if label is not None and _is_one_time_code(text, label, value.group()):
            yield _Finding(start, value.end(), "otp_code")


def _is_one_time_code(text: str, label: re.Match[str], value: str) -> bool:
    """Qualified labels take any code; a bare "code" six digits, not soon after "error" etc."""
    if label.group("generic") is None:
        return True
    digits = sum(character.isdigit() for character in value)
    label_start = label.start("generic")
    window_start = max(0, label_start - _DISQUALIFIER_WINDOW_CHARS)
    return digits == 6 and _NOT_OTP_CONTEXT.search(text, window_start, label_start) is None


def _passwords(text: str, lowered: str) -> Iterator[_Finding]:
    if not _mentions(lowered, _LOGIN_STEMS):
        return
    for match in _LOGIN.finditer(text):
        group = "quoted" if match.group("quoted") is not None else "value"
        start, end = match.span(group)
        if group == "value":
            end = start + len(match.group("value").rstrip(_TRAILING_PUNCTUATION))
        if _is_password(text, match, start, end):
            yield _Finding(start, end, "password")


def _is_password(text: str, match: re.Match[str], start: int, end: int) -> bool:
    """Whether ``text[start:end]``, after a password label, is a pasted password, not prose."""
    value = text[start:end]
    connector = match.group("connector") or match.group("after_words")
    explicit = connector is not None and any(sign in connector for sign in ":=：＝")
    if match.group("label").lower() in _STRICT_LOGIN_LABELS and not explicit:
        return False
    if len(value) < 4 or set(value) <= _MASK_CHARS or _NOT_A_PASSWORD.fullmatch(value):
        return False
    if explicit and _is_a_field(text, match.start(), end):
        return True  # "Password: sunshine" ending its line is a field, whatever it holds
    if connector is None and len(value) < 6:
        return False
    return _has_password_shape(value)


def _is_a_field(text: str, label_start: int, end: int) -> bool:
    """The value sits on its label's line and ends that line."""
    if "\n" in text[label_start:end]:
        return False
    rest = text[end : end + 4].lstrip(" \t.,;")
    return not rest or rest[0] in "\r\n"


def _has_password_shape(value: str) -> bool:
    """A digit, a symbol or mixed case: what prose ("is wrong", "es correcta") does not have."""
    has_digit = any(character.isdigit() for character in value)
    has_symbol = any(not character.isalnum() for character in value)
    mixed_case = any(c.isupper() for c in value[1:]) and any(c.islower() for c in value)
    return has_digit or has_symbol or mixed_case


def _api_secrets(text: str, lowered: str) -> Iterator[_Finding]:
    if not _mentions(lowered, _SECRET_STEMS):
        return
    for match in _API_SECRET.finditer(text):
        value = match.group("value")
        has_digit = any(character.isdigit() for character in value)
        has_letter = any(character.isalpha() for character in value)
        if has_digit and has_letter:
            yield _Finding(match.start("value"), match.end("value"), "api_secret")
