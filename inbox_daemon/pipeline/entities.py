# ruff: noqa: RUF001 - the vocabulary is multilingual text (fullwidth colons, dotless i) on purpose
"""Identifiers and topics a message quotes: the keys of deduplication and incidents.

``uids``, ``orders``, ``tx_hashes``, ``emails`` and ``handles`` identify a person or a
transaction; ``coins``, ``networks``, ``platforms``, ``directions`` (deposit, withdrawal) and
``symptoms`` (crash, login) describe a problem; ``hashtags``, ``cashtags`` and ``urls`` are what
a social post links to. Vocabulary covers the languages of the rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from .matching import automaton_of, is_word_char

_UID: Final = re.compile(
    r"(?:\bUID|用户ID|用戶ID|ユーザーID|아이디)\s*[:：#№]?\s*(\d{5,12})\b", re.IGNORECASE
)
_ORDER: Final = re.compile(
    r"\b(?:order|withdrawal|deposit|position|ticket)\s*(?:id|no\.?|number|#)\s*[:：#]?\s*([A-Z0-9][\w-]{5,})"
    r"|\b([A-Z]{1,3}-\d{6,})\b",
    re.IGNORECASE,
)
_TX_HASH: Final = re.compile(r"\b(0x[0-9a-fA-F]{64}|[0-9a-fA-F]{64})\b")
_EMAIL: Final = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_HANDLE: Final = re.compile(r"(?<![\w@])@(\w{2,32})")
_HASHTAG: Final = re.compile(r"(?<![\w#&])#(\w{1,100})")
_CASHTAG: Final = re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9]{0,11})(?![\w$])")
_URL: Final = re.compile(r"https?://[^\s<>\"'）)\]]{1,2000}")

_COINS: Final[Mapping[str, str]] = {
    **{
        ticker.lower(): ticker
        for ticker in (
            "BTC",
            "ETH",
            "USDT",
            "USDC",
            "BNB",
            "SOL",
            "XRP",
            "TRX",
            "TON",
            "DOGE",
            "ADA",
            "AVAX",
            "LTC",
            "DOT",
            "MATIC",
            "POL",
            "XLM",
            "ARB",
            "OP",
            "SHIB",
            "PEPE",
            "LINK",
            "ATOM",
            "NEAR",
            "APT",
            "SUI",
            "FIL",
            "ETC",
            "BCH",
            "DAI",
            "FDUSD",
            "XMR",
            "EOS",
            "ALGO",
            "HBAR",
            "WLD",
        )
    },
    "bitcoin": "BTC",
    "ethereum": "ETH",
    "ether": "ETH",
    "tether": "USDT",
    "solana": "SOL",
    "比特币": "BTC",
    "比特幣": "BTC",
    "以太坊": "ETH",
    "泰达币": "USDT",
    "瑞波币": "XRP",
    "биткоин": "BTC",
    "биткойн": "BTC",
    "эфир": "ETH",
    "비트코인": "BTC",
    "이더리움": "ETH",
    "ビットコイン": "BTC",
    "イーサリアム": "ETH",
}
_NETWORKS: Final[Mapping[str, str]] = {
    "trc20": "TRC20",
    "trc-20": "TRC20",
    "tron": "TRC20",
    "波场": "TRC20",
    "波場": "TRC20",
    "erc20": "ERC20",
    "erc-20": "ERC20",
    "bep20": "BEP20",
    "bep-20": "BEP20",
    "bsc": "BEP20",
    "bnb smart chain": "BEP20",
    "bep2": "BEP2",
    "spl": "SOL",
    "arbitrum": "ARBITRUM",
    "optimism": "OPTIMISM",
    "polygon": "POLYGON",
    "base": "BASE",
    "avax c-chain": "AVAXC",
    "c-chain": "AVAXC",
    "lightning": "LIGHTNING",
    "ton": "TON",
    "omni": "OMNI",
}
_PLATFORMS: Final[Mapping[str, str]] = {
    "android": "android",
    "安卓": "android",
    "андроид": "android",
    "안드로이드": "android",
    "ios": "ios",
    "iphone": "ios",
    "ipad": "ios",
    "苹果": "ios",
    "айфон": "ios",
    "web": "web",
    "website": "web",
    "browser": "web",
    "chrome": "web",
    "firefox": "web",
    "网页": "web",
    "сайт": "web",
    "windows": "desktop",
    "macos": "desktop",
    "desktop": "desktop",
}
_DIRECTIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "withdrawal": (
        "withdraw",
        "提币",
        "提幣",
        "提现",
        "提領",
        "出金",
        "вывод",
        "виведенн",
        "retiro",
        "retirar",
        "saque",
        "sacar",
        "çekim",
        "çekme",
        "rút",
        "출금",
        "penarikan",
        "tarik",
        "retrait",
        "auszahlung",
        "سحب",
    ),
    "deposit": (
        "deposit",
        "充值",
        "充幣",
        "入金",
        "入金",
        "пополнен",
        "депозит",
        "depósito",
        "deposito",
        "yatır",
        "nạp",
        "입금",
        "setor",
        "dépôt",
        "einzahlung",
        "إيداع",
        "поповненн",
    ),
}
_SYMPTOMS: Final[Mapping[str, tuple[str, ...]]] = {
    "crash": (
        "crash",
        "closes itself",
        "force close",
        "fecha sozinho",
        "se cierra",
        "se fecha",
        "kapanıyor",
        "çöküyor",
        "闪退",
        "閃退",
        "崩溃",
        "вылетает",
        "крашится",
        "закрывается",
        "vaziyor",
        "văng",
        "thoát ra",
        "튕",
        "落ちる",
        "クラッシュ",
        "plante",
        "stürzt ab",
        "keluar sendiri",
        "توقف",
        "вилітає",
    ),
    "login": (
        "cannot log in",
        "can't log in",
        "can't login",
        "cannot login",
        "login fails",
        "登录不了",
        "无法登录",
        "не могу войти",
        "no puedo iniciar sesión",
        "giriş yapamıyorum",
    ),
}


@dataclass(frozen=True, slots=True)
class Entities:
    """What a message quotes, each as a sorted tuple of normalised values."""

    uids: tuple[str, ...] = ()
    orders: tuple[str, ...] = ()
    tx_hashes: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    handles: tuple[str, ...] = ()
    coins: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    directions: tuple[str, ...] = ()
    symptoms: tuple[str, ...] = ()
    hashtags: tuple[str, ...] = ()
    cashtags: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, tuple[str, ...]]:
        """The non-empty kinds, for storage."""
        return {name: getattr(self, name) for name in self.__slots__ if getattr(self, name)}


def extract_entities(text: str) -> Entities:
    """The identifiers and topics quoted in ``text`` (subject and body)."""
    topics = _topics(text.lower())
    return Entities(
        uids=_sorted(match for match in _UID.findall(text)),
        orders=_sorted(a or b for a, b in _ORDER.findall(text)),
        tx_hashes=_sorted(match.lower().removeprefix("0x") for match in _TX_HASH.findall(text)),
        emails=_sorted(match.lower() for match in _found(_EMAIL, text, "@")),
        handles=_sorted(f"@{match.lower()}" for match in _found(_HANDLE, text, "@")),
        coins=topics["coins"],
        networks=topics["networks"],
        platforms=topics["platforms"],
        directions=topics["directions"],
        symptoms=topics["symptoms"],
        hashtags=_sorted(f"#{match.lower()}" for match in _found(_HASHTAG, text, "#")),
        cashtags=_sorted(f"${match.upper()}" for match in _found(_CASHTAG, text, "$")),
        urls=_sorted(match.rstrip(".,;:!?") for match in _found(_URL, text, "://")),
    )


def _found(pattern: re.Pattern[str], text: str, mark: str) -> list[str]:
    """What ``pattern`` finds in ``text``; no scan when the text lacks the ``mark`` every match
    holds (most texts quote no address, handle, tag or link)."""
    return pattern.findall(text) if mark in text else []


def _sorted(values: object) -> tuple[str, ...]:
    return tuple(sorted(set(values)))  # type: ignore[call-overload]


@dataclass(frozen=True, slots=True)
class _Term:
    """A word of the topic vocabulary: what it names, and how it must stand in a text."""

    kind: str
    value: str
    length: int
    #: Latin-script words count only as words of their own ("op" is no coin in "stop"), also
    #: as a $TICKER or #tag; other scripts, and the stems of directions and symptoms, anywhere.
    whole_word: bool


def _topic_terms() -> dict[str, tuple[_Term, ...]]:
    terms: dict[str, list[_Term]] = {}
    for kind, vocabulary in (("coins", _COINS), ("networks", _NETWORKS), ("platforms", _PLATFORMS)):
        for word, value in vocabulary.items():
            terms.setdefault(word, []).append(_Term(kind, value, len(word), word.isascii()))
    for kind, stems in (("directions", _DIRECTIONS), ("symptoms", _SYMPTOMS)):
        for name, words in stems.items():
            for word in words:
                terms.setdefault(word, []).append(_Term(kind, name, len(word), False))
    return {word: tuple(found) for word, found in terms.items()}


_TOPIC_KINDS: Final = ("coins", "networks", "platforms", "directions", "symptoms")
_TOPICS: Final = automaton_of(_topic_terms())


def _topics(lowered: str) -> dict[str, tuple[str, ...]]:
    """The coins, networks, platforms, directions and symptoms ``lowered`` text names, found
    in one pass (Aho-Corasick) over it."""
    found: dict[str, set[str]] = {kind: set() for kind in _TOPIC_KINDS}
    for last, terms in _TOPICS.iter(lowered) if _TOPICS is not None else ():
        for term in terms:
            if term.whole_word and not _stands_alone(lowered, last + 1 - term.length, last + 1):
                continue
            found[term.kind].add(term.value)
    return {kind: tuple(sorted(values)) for kind, values in found.items()}


def _stands_alone(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is a word of its own (no word character either side)."""
    return (start == 0 or not is_word_char(text[start - 1])) and (
        end == len(text) or not is_word_char(text[end])
    )
