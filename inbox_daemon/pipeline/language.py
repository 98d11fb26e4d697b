# ruff: noqa: RUF001, RUF002, RUF003 - letters of many scripts are this module's data, not look-alikes.
"""The language of a message's own words, as a langdetect code (``en``, ``zh-tw``) or ``und``.

The decision goes from cheap to costly, and most messages never reach the statistical model:

1. Only the sender's words count: lines from a sign-off ("Regards,", "Saludos,", "С уважением")
   down are a signature, and confidentiality disclaimers are dropped. URLs, e-mail addresses,
   @handles, #tags, $cashtags, tickers and other all-caps acronyms, hashes, addresses and numbers
   say nothing about a language and are removed. Shouted text is lower-cased instead, since
   there the capitals are the words.
2. The remaining letters are counted per script and weighed as words (a Han character is
   about a word, an English word about five letters), so the script of most of the words wins:
   Chinese with English terms is Chinese.
3. A script that belongs to one language answers at once (Hangul: ko, Kana: ja, Thai: th ...).
   Han is told apart as zh-cn or zh-tw by characters that exist in only one script form
   (kana among it make it ja), Arabic script by the letters Persian and Urdu add, Cyrillic
   first by letters only one language uses (ў: be, ђ ћ: sr ...).
4. Latin and other Cyrillic text is scored against short lists of each language's commonest
   words and the letters that only it uses (ñ, ã, ğ, ß; і ї є ґ, ы э ё ...); Vietnamese shows
   by its tone marks. A clear winner is the answer; short texts are decided this way, or not
   at all.
5. Otherwise langdetect decides, restricted to the profiles of the script's languages, seeded
   (so the same text always gets the same answer), and biased by the word scores; an answer
   it is not sure of is ``und``. About one message in forty gets this far.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

from langdetect import DetectorFactory, LangDetectException
from langdetect.detector_factory import PROFILES_DIRECTORY

logger = logging.getLogger(__name__)

#: The result for text too short or too mixed to tell.
UNDETERMINED: Final = "und"

# Only the start of a long text is read: a language shows in its first paragraphs, and this
# bounds the work on a megabyte-sized body.
_MAX_INPUT_CHARS: Final = 8_000
# What langdetect is given at most (its cost grows with the text it samples from).
_MAX_MODEL_CHARS: Final = 1_000
# Fewer letters than this are too short for langdetect (left to itself it answers "cy" for
# "hola" and "withdrawal").
_MIN_MODEL_LETTERS: Final = 12
# Below this the statistical answer is a guess.
_MIN_MODEL_CONFIDENCE: Final = 0.5
# langdetect averages this many random walks; its default 7 gave the same answers here, slower.
_MODEL_TRIALS: Final = 3
# How much one word-list hit raises a language's prior probability in langdetect.
_PRIOR_PER_HIT: Final = 2.0
# The leading script must have this many words' worth of letters.
_MIN_WORDS: Final = 0.9

# Latin-script profiles langdetect may answer with. Left out: languages whose profiles mostly
# win on short English or unaccented text by accident (Tagalog, Somali, Swahili, Welsh,
# Afrikaans) and are rare in support mail; non-Latin scripts are decided before langdetect.
_LATIN_MODEL_LANGUAGES: Final = (
    "ca", "cs", "da", "de", "en", "es", "et", "fi", "fr", "hr", "hu", "id", "it",
    "lt", "lv", "nl", "no", "pl", "pt", "ro", "sk", "sl", "sq", "sv", "tr", "vi",
)  # fmt: skip

# --- step 1: what is not the sender's own words -------------------------------------------------

# Every repetition that could rescan a run of letters is bounded or anchored at the run's start,
# so the work stays linear in the length of the text.
_NOISE_RE: Final = re.compile(
    r"(?:https?://|www\.)\S+"  # URLs
    r"|[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}"  # e-mail addresses
    r"|[@#$][\w-]+"  # handles, hashtags, cashtags
    r"|\b[\w-]{1,63}(?:\.[\w-]{1,63}){0,8}\.(?:com|net|org|io|xyz|app|info|co|me|news|ai|dev)\b"
    r"|\b(?=[A-Za-z]{0,64}[0-9])[A-Za-z0-9]{16,}\b"  # hashes, addresses, keys, txids
    # numbers, and tokens with digits (2FA, TRC20, 4G, v5.12), but not the letters next to them
    # in scripts without spaces ("5時間")
    r"|(?<![A-Za-z])[A-Za-z]{0,20}[0-9][A-Za-z0-9.,:/%_-]*",
)
# All-caps tokens in ordinary text are tickers and acronyms (KYC, API, USDT).
_ACRONYM_RE: Final = re.compile(r"\b[A-Z]{2,}s?\b")
# Tickers, currency codes and acronyms, removed from shouted text before it is lower-cased
# (not those that are also words, such as LINK, NEAR or TON).
_TICKERS: Final = (
    "BTC", "ETH", "USDT", "USDC", "SOL", "BNB", "XRP", "DOGE", "ADA", "TRX", "AVAX", "LTC",
    "SHIB", "BCH", "XLM", "ATOM", "MATIC", "ARB", "SUI", "PEPE", "DAI", "BUSD", "EUR", "USD",
    "GBP", "JPY", "UID", "KYC", "API", "TXID",
)  # fmt: skip
_TICKER_RE: Final = re.compile(r"\b(?:" + "|".join(_TICKERS) + r")s?\b")

# A line that closes a message; what follows it is the signature.
_SIGN_OFFS: Final = frozenset(
    {
        "regards", "best regards", "kind regards", "warm regards", "best", "thanks", "thank you",
        "many thanks", "cheers", "sincerely", "yours sincerely", "br",
        "saludos", "saludos cordiales", "un saludo", "atentamente", "gracias", "muchas gracias",
        "atenciosamente", "att", "abraços", "obrigado", "obrigada", "cumprimentos",
        "cordialement", "bien cordialement", "merci", "bien à vous",
        "mit freundlichen grüßen", "viele grüße", "beste grüße", "freundliche grüße", "lg", "vg",
        "cordiali saluti", "distinti saluti", "grazie", "met vriendelijke groet", "groeten",
        "с уважением", "спасибо", "з повагою", "дякую",
        "saygılarımla", "teşekkürler", "iyi çalışmalar", "trân trọng", "cảm ơn",
        "terima kasih", "salam", "hormat saya", "pozdrawiam",
    }
)  # fmt: skip
_SIGN_OFF_PUNCTUATION: Final = " \t,.!;:-–—"
# A sign-off closes something: this much text must stand above it.
_MIN_CHARS_ABOVE_SIGN_OFF: Final = 30
# The subject of a reply or a forward ("Re: …", "AW: …", "回复：…") is the original's, quoted.
_REPLY_SUBJECT_RE: Final = re.compile(
    r"\s*(?:re|aw|sv|vs|wg|fw|fwd|tr|rv|enc|odp|ynt|antw|回复|回覆|答复|转发|轉寄|返信|転送)"
    r"\s*(?:\[\d+\])?\s*[:：]",
    re.IGNORECASE,
)
# A confidentiality disclaimer names both the secrecy and the addressee, in one paragraph.
_SECRECY_RE: Final = re.compile(
    r"confidenti|confidencial|confidenzial|riservat|vertraulich|vertrouwelijk"
    r"|конфиденциальн|конфіденційн|gizli|機密|保密",
)
_ADDRESSEE_RE: Final = re.compile(
    r"recipient|addressee|intended|destinat|empfänger|adressat|geadresseerde"
    r"|получател|адресат|одержувач|alıcı|受信者|收件人",
)
_MIN_DISCLAIMER_CHARS: Final = 60

# --- step 2: scripts ------------------------------------------------------------------------

# Each script with its letters and how many letters make a word, on average, in its languages.
_SCRIPTS: Final[Mapping[str, tuple[str, float]]] = {
    "latin": ("A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff", 5.0),
    "cyrillic": ("\u0400-\u0481\u048a-\u052f", 6.0),
    "greek": ("\u0370-\u0373\u0376-\u03ff\u1f00-\u1fff", 6.0),
    "arabic": ("\u0620-\u064a\u066e-\u06d3\u06d5\u06fa-\u06ff\u0750-\u077f\ufb50-\ufdff", 4.5),
    "hebrew": ("\u05d0-\u05f2", 4.5),
    "devanagari": ("\u0900-\u0963\u0971-\u097f", 4.0),
    "bengali": ("\u0980-\u09e3", 4.0),
    "gurmukhi": ("\u0a00-\u0a63", 4.0),
    "gujarati": ("\u0a80-\u0ae3", 4.0),
    "tamil": ("\u0b80-\u0be3", 6.0),
    "telugu": ("\u0c00-\u0c63", 6.0),
    "kannada": ("\u0c80-\u0ce3", 6.0),
    "malayalam": ("\u0d00-\u0d63", 7.0),
    "sinhala": ("\u0d80-\u0dff", 5.0),
    "thai": ("\u0e01-\u0e4e", 5.0),
    "lao": ("\u0e80-\u0ecd", 5.0),
    "myanmar": ("\u1000-\u103f\u1050-\u109f", 5.0),
    "georgian": ("\u10a0-\u10ff", 6.0),
    "armenian": ("\u0531-\u0587", 6.0),
    "ethiopic": ("\u1200-\u137f", 3.0),
    "khmer": ("\u1780-\u17d3", 5.0),
    "hangul": ("\u1100-\u11ff\u3131-\u318e\uac00-\ud7a3", 2.5),
    # Kana and Han are one group: Japanese writes with both, and the group is told apart later.
    "cjk": ("\u3041-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff\uff66-\uff9d"
            "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f", 1.2),
}  # fmt: skip
_ASCII_LETTER_RE: Final = re.compile("[A-Za-z]")
_SCRIPT_RE: Final = re.compile("|".join(f"(?P<{n}>[{c}]+)" for n, (c, _) in _SCRIPTS.items()))

# Scripts written by one language here (Devanagari is mostly Hindi in support mail).
_SCRIPT_LANGUAGE: Final[Mapping[str, str]] = {
    "greek": "el", "hebrew": "he", "devanagari": "hi", "bengali": "bn", "gurmukhi": "pa",
    "gujarati": "gu", "tamil": "ta", "telugu": "te", "kannada": "kn", "malayalam": "ml",
    "sinhala": "si", "thai": "th", "lao": "lo", "myanmar": "my", "georgian": "ka",
    "armenian": "hy", "ethiopic": "am", "khmer": "km", "hangul": "ko",
}  # fmt: skip

# --- step 3: within a script ------------------------------------------------------------------

_KANA_RE: Final = re.compile("[\u3041-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff\uff66-\uff9d]")
_CJK_RE: Final = re.compile(f"[{_SCRIPTS['cjk'][0]}]+")
# A Chinese text may borrow a kana or two ("の"); Japanese has far more.
_MIN_KANA_SHARE: Final = 0.1

# Frequent characters that exist in one script form only: the simplified ones are not written in
# traditional text, and the traditional ones are not written in simplified text. (A simplified
# form that is also a traditional character of its own, such as 后 or 里, is left out; its
# traditional counterpart, 後 or 裡, still counts.)
_SIMPLIFIED_ONLY: Final = frozenset(
    "这个们说时来为会国过还没对发问请谢钱币账帐户号现转额单订认证码开关无经处务结买卖价资产"
    "进实种么吗难题该让给从点东边长见间应样机电话网页显录纪报税记块链冻锁补偿盗审帮马烦总"
    "统图员与业两丢亏亲优传络门车钟级线闪动绑邮验设败状态风险银错误"
)
_TRADITIONAL_ONLY: Final = frozenset(
    "這個們說時來為會國過還沒對發問請謝錢幣賬帳戶號現轉額單訂認證碼開關無經處務結買賣價資產"
    "進實種麼嗎難題該讓給從點東邊長見間應樣機電話網頁顯錄紀報稅記塊鏈凍鎖補償盜審幫馬煩總"
    "統圖員與業兩丟虧親優傳絡門車鐘級線閃動綁郵驗設敗狀態風險銀錯誤後裡臺準餘註髮麵"
)

# Cyrillic letters that only one language here uses, checked in this order.
_CYRILLIC_MARKERS: Final = (
    ("be", frozenset("ўЎ")),
    ("mk", frozenset("ѓќѕЃЌЅ")),
    ("sr", frozenset("ђћЂЋ")),
    ("kk", frozenset("әғқңөұһӘҒҚҢӨҰҺ")),
)
# Without those, Russian, Ukrainian and Bulgarian are told by their words and letters (step 4),
# or by langdetect among these.
_CYRILLIC_MODEL_LANGUAGES: Final = ("bg", "mk", "ru", "uk")
# Arabic-script letters of Urdu, then of Persian (ک and ی are Persian's forms of ك and ي).
_URDU_LETTERS: Final = frozenset("ٹڈڑںےۓھہ")
_PERSIAN_LETTERS: Final = frozenset("پچژگکی")
_ARABIC_FORMS: Final = frozenset("كيىة")

# --- step 4: Latin-script words and letters -----------------------------------------------------

# The commonest words of each language, and words of support mail, as they are typed (lower
# case, split at apostrophes and hyphens; Vietnamese also without its accents). A word may be in
# several lists; only a clear lead counts.
_COMMON_WORDS: Final[Mapping[str, str]] = {
    "en": "the and you your my me it its this that to of in on for with not have has had can "
    "what how why when who where which please but been be are is was do does did from we our us "
    "they them there their would could should will any some got get after since about just "
    "still only already again yet all out up if or at by so as no one more than then now also "
    "like know want need help thanks thank hi hello hey anyone nothing same guys account "
    "withdrawal withdraw deposit deposited don didn doesn isn wasn haven couldn won ve ll",
    "es": "el la los las de que y en no mi mis por para con una un es está hace desde pero "
    "como qué cómo hola gracias ya muy sin hay yo cuenta del al lo su sus tengo puedo "
    "ayuda también cuando porque donde ahora ayer hoy necesito estoy soy eso esto "
    "nada todo me le se si favor quiero puede pueden tiene hacer saber dice deja hice "
    "estaba retiro retiros "
    "depósito horas días",
    "pt": "o os do da dos das em no na nos um uma é não você vocês meu minha seu sua com para "
    "por mas já até ainda isso isto está são estou tenho consigo hoje ontem obrigado obrigada "
    "olá oi conta pelo pela ao também quando onde depois agora fazer pode podem preciso nada "
    "tudo eu ele ela foi pra e que de se me quero tem saber diz deixa fiz estava saque "
    "depósito horas dias",
    "fr": "le la les des du et est je j tu vous nous il ils elle une un pas ne n sur dans pour "
    "avec mais où qui ce cette mon ma mes votre vos bonjour merci alors toujours depuis aussi "
    "très ai suis c qu ça au aux de que en si peux veux faire compte retrait dépôt",
    "de": "der die das und ist ich nicht ein eine einen mit auf für von zu den dem sie wir "
    "hallo danke bitte mein meine noch auch aber oder wie wenn bei nach seit immer schon kann "
    "habe hat wird sind im zum zur keine kein dass guten jetzt gestern heute mir mich ihr ihre "
    "uns es was möchte haben machen konto auszahlung einzahlung",
    "it": "il lo la le gli di che e è non un una per con del della dei delle sono ho ha mi ti "
    "si ma come ciao grazie buongiorno ancora anche questo questa mio mia nel nella alla dal "
    "perché cosa sul ieri oggi più già l d posso voglio fare conto prelievo deposito",
    "nl": "de het een en van ik is niet dat die op te met voor mijn je zijn er maar om ook nog "
    "naar bij kan heb wel geen dit wat hoe hallo bedankt alvast graag sinds jullie kunnen "
    "wordt worden rekening opname storting",
    "tr": "bir ve bu için çok ama da de ne var yok ben sen lütfen merhaba teşekkürler değil "
    "ile gibi kadar daha neden nasıl hâlâ hala şey hiç sonra önce yardım hesap hesabım para "
    "çekim çekimi yatırma mı mi mu mü",
    "id": "saya aku yang dan di ini itu tidak sudah belum ada untuk dengan ke dari akan bisa "
    "boleh tolong kak min ya iya juga masih kalau kalo terus trus apa kenapa gimana mau sama "
    "aja udah nggak ngga gak ga tapi tp karena akun kami kita anda terima kasih dong masuk "
    "sih deh nih kok gitu gini banget emang bikin pake lagi buat jadi lebih yg mas om bang "
    "gan mantap",
    "ms": "saya yang dan di ini itu tidak sudah belum ada untuk dengan ke dari akan boleh "
    "tolong akaun wang mahu sahaja kerana nak tak dah awak macam masih terima kasih masuk "
    "betul sikit korang",
    "vi": "khong ko duoc dc roi chua cua minh toi ban tien nap rut sao vay nhe oi nhung thi "
    "lam gi nay khi dang se bi nao giup khoan tieng gio ngay nhan thay mang voi cho va la",
    "ru": "и в не на я что с по это как но он мне мой моя мои меня вы вас уже все всё был была "
    "нет есть когда почему где ещё еще сейчас здравствуйте спасибо пожалуйста помогите вывод "
    "средств деньги аккаунт счёт счет",
    "uk": "і в не на я що з по це як але він мені мій моя мої мене ви вас вже все був була "
    "немає є коли чому де ще зараз добрий дякую ласка допоможіть вивід кошти гроші "
    "акаунт рахунок",
    "bg": "и в не на аз че с по това как но той ми мой моя мои мен вие вас вече всичко беше "
    "няма е са съм ще кога защо къде още сега здравейте благодаря моля помогнете теглене пари "
    "акаунт сметка",
    "pl": "nie jest się na w z do to że mam konto dzień dobry proszę dziękuję czy jak ale już "
    "jeszcze od moje mój wypłata za co",
}
# Letters (and marks) that only one of the listed languages uses; each counts as a hit.
_LETTER_LANGUAGE: Final[Mapping[str, str]] = {
    "ñ": "es", "¿": "es", "¡": "es", "ã": "pt", "õ": "pt", "ß": "de", "ğ": "tr", "ı": "tr",
    "ş": "tr", "œ": "fr", "ł": "pl", "ą": "pl", "ę": "pl", "ś": "pl", "ź": "pl", "ż": "pl",
    "ы": "ru", "э": "ru", "ё": "ru", "і": "uk", "ї": "uk", "є": "uk", "ґ": "uk", "ъ": "bg",
}  # fmt: skip
_WORD_RE: Final = re.compile(r"[^\W\d_]+")
# Vietnamese's tone marks on vowels (Latin Extended Additional) and its own letters.
_VIETNAMESE_RE: Final = re.compile("[\u1ea0-\u1ef9\u01a0\u01a1\u01af\u01b0\u0110\u0111]")
_MIN_VIETNAMESE_LETTERS: Final = 2
# A word-list answer needs this many hits and a lead of this factor over the runner-up.
_MIN_HITS: Final = 2
_MIN_LEAD: Final = 2.0
# ... and to be at least this share of the words (a list's words are most of any sentence).
_MIN_COVERAGE: Final = 0.2
# Messages of at most this many words may be told by one hit.
_MAX_SHORT_WORDS: Final = 6


def _by_word(lists: Mapping[str, str]) -> Mapping[str, tuple[str, ...]]:
    table: dict[str, dict[str, None]] = {}  # a dict as an ordered set
    for language, words in lists.items():
        for word in words.split():
            table.setdefault(word, {})[language] = None
    return {word: tuple(languages) for word, languages in table.items()}


_WORD_LANGUAGES: Final = _by_word(_COMMON_WORDS)
_CYRILLIC_LANGUAGES: Final = frozenset(_CYRILLIC_MODEL_LANGUAGES)
_LATIN_LANGUAGES: Final = frozenset(_COMMON_WORDS) - _CYRILLIC_LANGUAGES


def detect_language(text: str) -> str:
    """The language of the sender's words in ``text``.

    Args:
        text: the subject and the visible text of a message, one after the other.

    Returns:
        A langdetect language code (``en``, ``pt``, ``zh-cn``, ``zh-tw``, ``uk``, ...), or
        ``UNDETERMINED`` when the text is too short or too mixed to tell. The same text always
        gives the same answer.
    """
    text = unicodedata.normalize("NFC", text[:_MAX_INPUT_CHARS])
    own = _without_noise(_own_lines(_without_reply_subject(text)))
    script = _leading_script(own)
    if script is None:
        return UNDETERMINED
    if script == "latin":
        return _latin_language(own)
    if script == "cjk":
        return _chinese_or_japanese(own)
    if script == "cyrillic":
        return _cyrillic_language(own)
    if script == "arabic":
        return _arabic_script_language(own)
    return _SCRIPT_LANGUAGE[script]


def _without_reply_subject(text: str) -> str:
    """``text`` without its first line when that is a reply's subject and enough text follows."""
    subject, newline, body = text.partition("\n")
    replied = newline and _REPLY_SUBJECT_RE.match(subject)
    return body if replied and sum(map(str.isalpha, body)) >= _MIN_MODEL_LETTERS else text


def _own_lines(text: str) -> str:
    """``text`` without a signature below a sign-off line, nor disclaimer paragraphs."""
    lines = text.splitlines()
    kept: list[str] = []
    kept_chars = 0
    for line in lines:
        probe = line.strip().rstrip(_SIGN_OFF_PUNCTUATION).lower()
        if kept_chars >= _MIN_CHARS_ABOVE_SIGN_OFF and probe in _SIGN_OFFS:
            break  # what a sign-off closes is the sender's; below it is their signature
        if _is_disclaimer(probe):
            continue
        kept.append(line)
        kept_chars += len(probe)
    return "\n".join(kept)


def _is_disclaimer(probe: str) -> bool:
    return (
        len(probe) >= _MIN_DISCLAIMER_CHARS
        and _SECRECY_RE.search(probe) is not None
        and _ADDRESSEE_RE.search(probe) is not None
    )


def _without_noise(text: str) -> str:
    """``text`` without the tokens that belong to no language."""
    # Most words are plain letters: only the others can hold noise, and are searched for it.
    text = " ".join(word if word.isalpha() else _NOISE_RE.sub(" ", word) for word in text.split())
    upper = sum(map(str.isupper, text))
    if upper > 2 * sum(map(str.islower, text)):
        # Shouted: the capitals are the words, so only known tickers go.
        return _TICKER_RE.sub(" ", text).lower()
    return _ACRONYM_RE.sub(" ", text)


def _leading_script(text: str) -> str | None:
    """The script of most of the words in ``text``; None without letters or a clear leader."""
    if text.isascii():
        return "latin" if _ASCII_LETTER_RE.search(text) else None
    letters: Counter[str] = Counter()
    for match in _SCRIPT_RE.finditer(text):
        letters[match.lastgroup or ""] += len(match.group())
    words = {script: count / _SCRIPTS[script][1] for script, count in letters.items()}
    if not words:
        return None
    script = max(words, key=words.__getitem__)
    if words[script] * 2 <= sum(words.values()):
        return None  # too mixed to tell: no script has most of the words
    if script != "latin" and words[script] < _MIN_WORDS:
        return None  # too short (Latin text has its own, finer tests)
    return script


def _chinese_or_japanese(text: str) -> str:
    """``ja`` for Han with kana, else ``zh-tw`` or ``zh-cn`` by the characters' script form."""
    kana = len(_KANA_RE.findall(text))
    if kana >= 2 and kana >= _MIN_KANA_SHARE * _count_cjk(text):
        return "ja"
    simplified = sum(map(_SIMPLIFIED_ONLY.__contains__, text))
    traditional = sum(map(_TRADITIONAL_ONLY.__contains__, text))
    # Without telling characters, simplified is the likelier (and larger) readership.
    return "zh-tw" if traditional > simplified else "zh-cn"


def _count_cjk(text: str) -> int:
    return sum(len(match) for match in _CJK_RE.findall(text))


def _cyrillic_language(text: str) -> str:
    """The language of a Cyrillic text by its letters and commonest words, else by langdetect."""
    letters = frozenset(text)
    for language, markers in _CYRILLIC_MARKERS:
        if letters & markers:
            return language
    hits = _Hits.of(text, _CYRILLIC_LANGUAGES)
    winner = hits.clear_winner()
    if winner is not None:
        return winner
    if sum(map(str.isalpha, text)) < _MIN_MODEL_LETTERS:
        return "ru"  # the most written of them, and a short text has nothing else to go on
    language = _model_language(text, hits, _CYRILLIC_MODEL_LANGUAGES)
    return "ru" if language == UNDETERMINED else language


def _arabic_script_language(text: str) -> str:
    """``ur``, ``fa`` or ``ar`` by the letters Urdu and Persian add to the Arabic alphabet."""
    if _count(text, _URDU_LETTERS):
        return "ur"
    if _count(text, _PERSIAN_LETTERS) > _count(text, _ARABIC_FORMS):
        return "fa"
    return "ar"


def _count(text: str, letters: frozenset[str]) -> int:
    return sum(map(letters.__contains__, text))


def _latin_language(text: str) -> str:
    """The language of a Latin-script text: by its words where clear, else by langdetect."""
    if len(_VIETNAMESE_RE.findall(text)) >= _MIN_VIETNAMESE_LETTERS:
        return "vi"
    hits = _Hits.of(text, _LATIN_LANGUAGES)
    winner = hits.clear_winner()
    if winner is not None:
        return winner
    if sum(map(str.isalpha, text)) < _MIN_MODEL_LETTERS:
        return UNDETERMINED
    return _model_language(text, hits, _LATIN_MODEL_LANGUAGES)


@dataclass(frozen=True, slots=True)
class _Hits:
    """The common words and telling letters of each language found in a text."""

    #: Hits per language.
    by_language: Counter[str]
    #: The languages of each hit (a word may be common in several).
    languages_per_hit: tuple[tuple[str, ...], ...]
    #: How many words the text has.
    word_count: int

    @classmethod
    def of(cls, text: str, languages: frozenset[str]) -> _Hits:
        """The hits in ``text`` of ``languages`` (those written in the text's script)."""
        lowered = text.lower()
        words = _WORD_RE.findall(lowered)
        per_hit = [_WORD_LANGUAGES[word] for word in words if word in _WORD_LANGUAGES]
        for letter, language in _LETTER_LANGUAGE.items():
            if letter in lowered:
                per_hit.extend([(language,)] * lowered.count(letter))
        # Filtered in order (not as sets), so that ties rank the same way in every process.
        ours = (tuple(language for language in hit if language in languages) for hit in per_hit)
        kept = tuple(hit for hit in ours if hit)
        by_language = Counter(language for hit in kept for language in hit)
        return cls(by_language, kept, len(words))

    def clear_winner(self) -> str | None:
        """The language with a clear lead, if any.

        The lead is taken over the hits that the runner-up does not share, so that words two
        close languages both use (Spanish and Portuguese "para", Indonesian and Malay "saya")
        neither help nor hide the words that tell them apart.
        """
        ranked = self.by_language.most_common(2)
        if not ranked:
            return None
        language, best = ranked[0]
        runner_up, second = ranked[1] if len(ranked) > 1 else ("", 0)
        own = sum(1 for languages in self.languages_per_hit if runner_up not in languages)
        others = second - (best - own)  # the runner-up's hits that the leader does not share
        if own <= others or own < _MIN_LEAD * others:
            return None
        if best >= _MIN_HITS and best >= _MIN_COVERAGE * self.word_count:
            return language
        # A message of a few words ("hola", "withdrawal??") is told by the words of one language.
        return language if others == 0 and self.word_count <= _MAX_SHORT_WORDS else None


@cache
def _model(languages: tuple[str, ...]) -> DetectorFactory:
    """langdetect restricted to ``languages``, built once (loading takes ~0.1 s)."""
    profiles = Path(PROFILES_DIRECTORY)
    factory = DetectorFactory()
    factory.load_json_profile(
        [(profiles / language).read_text(encoding="utf-8") for language in languages]
    )
    factory.set_seed(0)  # langdetect samples at random; a fixed seed makes it repeatable
    return factory


def _model_language(text: str, hits: _Hits, languages: tuple[str, ...]) -> str:
    """langdetect's answer among ``languages``, biased by ``hits``, or ``und`` if unsure."""
    detector = _model(languages).create()
    detector.n_trial = _MODEL_TRIALS
    detector.set_prior_map(
        {language: 1.0 + _PRIOR_PER_HIT * hits.by_language[language] for language in languages}
    )
    detector.append(text[:_MAX_MODEL_CHARS])
    try:
        ranked = detector.get_probabilities()
    except LangDetectException as error:  # no n-gram of any profile in the text
        logger.debug("langdetect found nothing to go on: %s", error)
        return UNDETERMINED
    if not ranked or ranked[0].prob < _MIN_MODEL_CONFIDENCE:
        return UNDETERMINED
    return str(ranked[0].lang)
