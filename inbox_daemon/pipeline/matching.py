"""Keywords and patterns of the operator's rule files, matched the same way in every file.

Keywords are case-insensitive whole words or phrases; a trailing ``*`` lets the last word go
on ("withdraw*" matches "withdrawals", "çekim*" matches "çekimim"). In Chinese, Japanese,
Korean, Thai and Arabic, whose words take no spaces or carry attached particles, a keyword
matches anywhere. All the keywords of a file are looked up in one pass over the words of a
text (:class:`PhraseIndex`).

Patterns are Python regexes, case-insensitive and multi-line. A regex costs a scan of the
text, so :class:`Patterns` skips those written only in a script the text does not contain.

Text is NFKC-normalised first (:func:`normalised`), so full-width digits and letters match too.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

# Scripts whose words take no spaces (Han, Kana, Thai) or attached particles (Hangul, Arabic):
# a keyword in them matches anywhere, not only at a word start.
UNSPACED: Final = (
    "\u0600-\u06ff\u0e00-\u0eff\u1100-\u11ff\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff"
)
_ANYWHERE_SCRIPT: Final = re.compile(f"[{UNSPACED}]")
# A word of a spaced script: a run of other word characters, so "API" is a word in "我的API一直".
_WORD: Final = re.compile(f"[^\\W{UNSPACED}]+")
# Keywords ending in "*" are filed under their first characters (one word may go on).
_STEM_KEY_CHARS: Final = 3
# A regex written only in one of these scripts can only match a text that contains it.
_SCRIPTS: Final = {
    "cyrillic": re.compile("[\u0400-\u04ff]"),
    "arabic": re.compile("[\u0600-\u06ff]"),
    "hangul": re.compile("[\u1100-\u11ff\uac00-\ud7af]"),
    "cjk": re.compile("[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]"),
}
_LATIN_LETTER: Final = re.compile("[A-Za-z\u00c0-\u024f]")
# What in a regex is syntax, not text: escapes ("\\w", "\\b") and group prefixes ("(?P<n>").
_REGEX_SYNTAX: Final = re.compile(r"\\.|\(\?P?<?[A-Za-z-]*[:>)]?")


def normalised(text: str) -> str:
    """``text`` as rules read it: NFKC, with typographic apostrophes made ASCII.

    NFKC makes full-width digits and letters ASCII ("３日" -> "3日"); the rules write the ASCII
    apostrophe ("didn\u2019t" -> "didn't").
    """
    return unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u02bc", "'")


def fold(text: str) -> str:
    """``text`` as keywords are compared: :func:`normalised`, then lower case."""
    return normalised(text).lower()


def scripts_of(text: str) -> frozenset[str]:
    """The non-Latin scripts that occur in ``text`` (``cyrillic``, ``arabic``, ...)."""
    return frozenset(name for name, probe in _SCRIPTS.items() if probe.search(text))


@dataclass(frozen=True, slots=True)
class _Phrase:
    text: str
    prefix: bool
    owners: tuple[str, ...]


class PhraseIndex:
    """Finds which of many keywords occur in a text, in one pass over its words.

    A keyword is filed under its first word, so a text word costs one dictionary look-up (and
    one more for keywords ending in ``*``); only keywords of several words are then compared
    further. Keywords in scripts matched anywhere are filed under their first character.

    Args:
        keywords: (keyword, owner) pairs; an owner is whatever the caller names (a term, a
            rule). Keyword syntax as in the module docstring.
    """

    def __init__(self, keywords: Iterable[tuple[str, str]]) -> None:
        owners: dict[tuple[str, bool], list[str]] = defaultdict(list)
        for keyword, owner in keywords:
            text = fold(keyword.strip())
            prefix = text.endswith("*")
            text = text.rstrip("*").strip()
            if text and owner not in owners[text, prefix]:
                owners[text, prefix].append(owner)
        self._by_word: dict[str, list[_Phrase]] = defaultdict(list)
        self._by_stem: dict[str, list[_Phrase]] = defaultdict(list)
        self._anywhere: dict[str, list[_Phrase]] = defaultdict(list)
        for (text, prefix), names in owners.items():
            self._file(_Phrase(text, prefix, tuple(names)))
        self._stem_sizes = tuple(sorted({len(key) for key in self._by_stem}))
        starts = "".join(re.escape(char) for char in self._anywhere)
        self._anywhere_start = re.compile(f"[{starts}]") if starts else None

    def _file(self, phrase: _Phrase) -> None:
        first = _WORD.match(phrase.text)
        if first is None:
            self._anywhere[phrase.text[0]].append(phrase)
        elif phrase.prefix and first[0] == phrase.text:
            self._by_stem[phrase.text[:_STEM_KEY_CHARS]].append(phrase)
        else:
            self._by_word[first[0]].append(phrase)

    def search(self, folded: str) -> dict[str, str]:
        """The first keyword found for each owner, in ``folded`` text (see :func:`fold`)."""
        found: dict[str, str] = {}
        by_word, by_stem, sizes = self._by_word, self._by_stem, self._stem_sizes
        for word in _WORD.finditer(folded):
            token = word[0]
            for phrase in by_word.get(token, ()):
                if phrase.text == token or (
                    folded.startswith(phrase.text, word.start())
                    and _ends_well(folded, word.start(), phrase)
                ):
                    _record(found, phrase)
            for size in sizes:
                for phrase in by_stem.get(token[:size], ()):
                    if token.startswith(phrase.text):
                        _record(found, phrase)
        for start in self._anywhere_start.finditer(folded) if self._anywhere_start else ():
            for phrase in self._anywhere[start[0]]:
                if folded.startswith(phrase.text, start.start()):
                    _record(found, phrase)
        return found


def _ends_well(folded: str, at: int, phrase: _Phrase) -> bool:
    """Whether the phrase found at ``at`` ends a word (or may go on: "withdraw*", "list $")."""
    end = at + len(phrase.text)
    if phrase.prefix or end >= len(folded) or not _is_word_char(phrase.text[-1]):
        return True
    return not _is_word_char(folded[end]) or bool(_ANYWHERE_SCRIPT.match(folded[end]))


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def _record(found: dict[str, str], phrase: _Phrase) -> None:
    for owner in phrase.owners:
        found.setdefault(owner, phrase.text)


class Patterns:
    """An owner's regexes, grouped by the script they are written in.

    Raises:
        ValueError: naming the pattern that is not a valid regular expression.
    """

    __slots__ = ("_groups",)

    def __init__(self, patterns: Sequence[str]) -> None:
        by_script: dict[str, list[str]] = defaultdict(list)
        for pattern in patterns:
            by_script[_script_of(pattern)].append(pattern)
        self._groups = tuple(
            (script, regex)
            for script, sources in by_script.items()
            if (regex := regex_of(sources)) is not None
        )

    def __bool__(self) -> bool:
        return bool(self._groups)

    def search(self, text: str, scripts: frozenset[str]) -> str | None:
        """What one of the regexes matched in ``text`` (whose :func:`scripts_of` are
        ``scripts``), or ``None``."""
        for script, regex in self._groups:
            if (script == "any" or script in scripts) and (found := regex.search(text)):
                return found[0]
        return None


def _script_of(pattern: str) -> str:
    """The one non-Latin script a regex is written in, or ``any`` when it uses several."""
    text = _REGEX_SYNTAX.sub("", pattern)
    used = {name for name, probe in _SCRIPTS.items() if probe.search(text)}
    if len(used) == 1 and not _LATIN_LETTER.search(text):
        return used.pop()
    return "any"


def regex_of(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One case-insensitive, multi-line regex for ``patterns``; ``None`` when empty.

    Raises:
        ValueError: naming the pattern that is not a valid regular expression.
    """
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"bad regular expression {pattern!r}: {exc}") from exc
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE | re.MULTILINE)
