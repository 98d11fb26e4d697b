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
    lowered = text.lower()
    return Entities(
        uids=_sorted(match for match in _UID.findall(text)),
        orders=_sorted(a or b for a, b in _ORDER.findall(text)),
        tx_hashes=_sorted(match.lower().removeprefix("0x") for match in _TX_HASH.findall(text)),
        emails=_sorted(match.lower() for match in _EMAIL.findall(text)),
        handles=_sorted(f"@{match.lower()}" for match in _HANDLE.findall(text)),
        coins=_vocabulary(lowered, _COINS),
        networks=_vocabulary(lowered, _NETWORKS),
        platforms=_vocabulary(lowered, _PLATFORMS),
        directions=_stems(lowered, _DIRECTIONS),
        symptoms=_stems(lowered, _SYMPTOMS),
        hashtags=_sorted(f"#{match.lower()}" for match in _HASHTAG.findall(text)),
        cashtags=_sorted(f"${match.upper()}" for match in _CASHTAG.findall(text)),
        urls=_sorted(match.rstrip(".,;:!?") for match in _URL.findall(text)),
    )


def _sorted(values: object) -> tuple[str, ...]:
    return tuple(sorted(set(values)))  # type: ignore[call-overload]


def _vocabulary_pattern(vocabulary: Mapping[str, str]) -> re.Pattern[str]:
    # One search per vocabulary: Latin-script terms as whole words (also as $TICKER or #tag),
    # other scripts anywhere; the longest alternative first so "bep20" beats "bep2".
    terms = sorted(vocabulary, key=len, reverse=True)
    latin = "|".join(re.escape(term) for term in terms if term.isascii())
    other = "|".join(re.escape(term) for term in terms if not term.isascii())
    sources = [rf"(?<![\w])[$#]?({latin})(?!\w)"] + ([f"({other})"] if other else [])
    return re.compile("|".join(sources))


def _vocabulary(lowered: str, vocabulary: Mapping[str, str]) -> tuple[str, ...]:
    pattern = _VOCABULARY_PATTERNS[id(vocabulary)]
    found = {
        vocabulary[next(group for group in match if group)] for match in pattern.findall(lowered)
    }
    return tuple(sorted(found))


def _stems(lowered: str, stems: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(sorted(name for name, words in stems.items() if any(w in lowered for w in words)))


_VOCABULARY_PATTERNS: Final = {
    id(v): _vocabulary_pattern(v) for v in (_COINS, _NETWORKS, _PLATFORMS)
}
