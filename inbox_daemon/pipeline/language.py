"""The language of a message: script fast paths first, then langdetect (seeded, deterministic)."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Final

from langdetect import DetectorFactory, LangDetectException, detect_langs

#: The result for text too short or too mixed to tell.
UNDETERMINED: Final = "und"

# langdetect is random unless seeded; a fixed seed makes the same text give the same answer.
DetectorFactory.seed = 0

_NOISE = re.compile(
    r"https?://\S+|www\.\S+|\S+@\S+\.\w+|[@#$]\w+|\b0x[0-9a-fA-F]+\b|\b[0-9a-fA-F]{16,}\b"
    r"|\b[A-Za-z0-9]{26,}\b|\b[A-Z]{2,6}\b|[\d.,:/%-]+",
)
_MIN_LETTERS: Final = 12
_MIN_CONFIDENCE: Final = 0.6

# Scripts that name one language outright; Han and Cyrillic need langdetect to tell apart.
_SCRIPT_LANGUAGE: Final = {
    "HANGUL": "ko",
    "HIRAGANA": "ja",
    "KATAKANA": "ja",
    "THAI": "th",
    "HEBREW": "he",
    "GREEK": "el",
    "GEORGIAN": "ka",
    "ARMENIAN": "hy",
    "DEVANAGARI": "hi",
}


def detect_language(text: str) -> str:
    """The language of ``text`` as a langdetect code (``en``, ``zh-cn``, ``pt``) or ``und``."""
    letters = _letters(_NOISE.sub(" ", text))
    if not letters:
        return UNDETERMINED
    scripts = Counter(_script(char) for char in letters)
    script, count = scripts.most_common(1)[0]
    if script in _SCRIPT_LANGUAGE and count * 2 >= len(letters):
        return _SCRIPT_LANGUAGE[script]
    if scripts["HIRAGANA"] + scripts["KATAKANA"] > 0 and script == "CJK":
        return "ja"
    if script == "CJK":
        return _chinese_variant(_NOISE.sub(" ", text))
    if len(letters) < _MIN_LETTERS:
        return UNDETERMINED
    return _langdetect(_NOISE.sub(" ", text))


def _letters(text: str) -> str:
    return "".join(char for char in text if char.isalpha())


def _script(char: str) -> str:
    name = unicodedata.name(char, "")
    return name.split(" ", 1)[0] if name else "UNKNOWN"


def _chinese_variant(text: str) -> str:
    # Han without Kana or Hangul is Chinese; langdetect only has to tell simplified from
    # traditional (left to itself it sometimes answers "ko" for traditional characters).
    try:
        candidates = detect_langs(text)
    except LangDetectException:
        return "zh-cn"
    return next((str(c.lang) for c in candidates if str(c.lang).startswith("zh")), "zh-cn")


def _langdetect(text: str) -> str:
    try:
        best = detect_langs(text)[0]
    except LangDetectException:
        return UNDETERMINED
    return str(best.lang) if best.prob >= _MIN_CONFIDENCE else UNDETERMINED
