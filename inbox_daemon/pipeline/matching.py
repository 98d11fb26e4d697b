"""Keywords and patterns of the operator's rule files, matched the same way in every file.

Keywords are case-insensitive whole words or phrases; a trailing ``*`` lets the last word go
on ("withdraw*" matches "withdrawals", "çekim*" matches "çekimim"). In Chinese, Japanese,
Korean, Thai and Arabic, whose words take no spaces or carry attached particles, a keyword
matches anywhere. All the keywords of a file are looked up in one pass over the words of a
text (:class:`PhraseIndex`).

Patterns are Python regexes, case-insensitive and multi-line. A regex costs a scan of the
text, so :class:`Patterns` skips those written only in a script the text does not contain, and
those that need a literal the text does not hold: a pattern's literals (``\\b(sent|send)\\s+``
needs "sent" or "send") are read from the pattern by :func:`required_literals`, and a
:class:`PhraseIndex` finds which of them occur, with its keywords, in one pass over the text.

Text is NFKC-normalised first (:func:`normalised`), so full-width digits and letters match too.
"""

from __future__ import annotations

import importlib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any, Final, Protocol, cast

import ahocorasick

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
    #: Matched anywhere (Chinese, Japanese, Korean...), not only where a word starts.
    anywhere: bool
    owners: tuple[str, ...]


class PhraseIndex:
    """Finds which of many keywords, and of the literals some patterns need, occur in a text.

    Keywords and literals are each found in one pass over the text (Aho-Corasick, in C); a
    keyword found inside a word ("send" in "sender") is then dropped, as the keyword syntax
    of the module docstring says.

    Args:
        keywords: (keyword, owner) pairs; an owner is whatever the caller names (a term, a
            rule). Keyword syntax as in the module docstring.
        patterns: the :class:`Patterns` that will read the same texts; :meth:`literals_in`
            tells them which of the literals they need are there.
    """

    def __init__(
        self, keywords: Iterable[tuple[str, str]], patterns: Iterable[Patterns] = ()
    ) -> None:
        owners: dict[tuple[str, bool], list[str]] = defaultdict(list)
        for keyword, owner in keywords:
            text = fold(keyword.strip())
            prefix = text.endswith("*")
            text = text.rstrip("*").strip()
            if text and owner not in owners[text, prefix]:
                owners[text, prefix].append(owner)
        phrases: dict[str, list[_Phrase]] = defaultdict(list)
        for (text, prefix), names in owners.items():
            anywhere = _WORD.match(text) is None
            phrases[text].append(_Phrase(text, prefix, anywhere, tuple(names)))
        self._keywords = automaton_of({text: tuple(found) for text, found in phrases.items()})
        literals = frozenset().union(*(pattern.literals for pattern in patterns))
        self._literals = automaton_of({literal: literal for literal in literals})

    def search(self, folded: str) -> dict[str, str]:
        """The first keyword found for each owner, in ``folded`` text (see :func:`fold`)."""
        found: dict[str, str] = {}
        if self._keywords is None:
            return found
        for last, phrases in self._keywords.iter(folded):
            for phrase in phrases:
                start = last + 1 - len(phrase.text)
                if phrase.anywhere or (
                    (start == 0 or not _is_token_char(folded[start - 1]))
                    and _ends_well(folded, start, phrase)
                ):
                    for owner in phrase.owners:
                        found.setdefault(owner, phrase.text)
        return found

    def literals_in(self, text: str) -> frozenset[str]:
        """Which of the literals the patterns need occur in ``text`` (as the patterns read it)."""
        if self._literals is None:
            return frozenset()
        return frozenset(literal for _, literal in self._literals.iter(case_key(text)))


class Automaton(Protocol):
    """What :func:`automaton_of` gives: (index of the last character, value) per occurrence."""

    def iter(self, text: str) -> Iterator[tuple[int, Any]]: ...


def automaton_of(values: dict[str, Any]) -> Automaton | None:
    """An Aho-Corasick automaton finding every key of ``values``; ``None`` when there is none."""
    if not values:
        return None
    automaton = ahocorasick.Automaton()
    for key, value in values.items():
        automaton.add_word(key, value)
    automaton.make_automaton()
    return cast("Automaton", automaton)


def _is_token_char(char: str) -> bool:
    """A character of a word of a spaced script (what :data:`_WORD` matches)."""
    return is_word_char(char) and not _ANYWHERE_SCRIPT.match(char)


def _ends_well(folded: str, at: int, phrase: _Phrase) -> bool:
    """Whether the phrase found at ``at`` ends a word (or may go on: "withdraw*", "list $")."""
    end = at + len(phrase.text)
    if phrase.prefix or end >= len(folded) or not is_word_char(phrase.text[-1]):
        return True
    return not is_word_char(folded[end]) or bool(_ANYWHERE_SCRIPT.match(folded[end]))


def is_word_char(char: str) -> bool:
    """What a regex's ``\\w`` matches: a letter or digit of any script, or ``_``."""
    return char.isalnum() or char == "_"


class Patterns:
    """An owner's regexes, grouped by the script they are written in.

    A regex that needs a literal (see :func:`required_literals`) is kept apart with it, so
    that a text without the literal is not scanned; the others of a script share one regex.

    Raises:
        ValueError: naming the pattern that is not a valid regular expression.
    """

    __slots__ = ("_groups", "complete", "literals")

    def __init__(self, patterns: Sequence[str]) -> None:
        plain: dict[str, list[str]] = defaultdict(list)
        groups: list[tuple[str, re.Pattern[str], frozenset[str] | None]] = []
        for pattern in patterns:
            needs = required_literals(pattern)
            if needs is None:
                plain[_script_of(pattern)].append(pattern)
            elif (regex := regex_of([pattern])) is not None:
                groups.append((_script_of(pattern), regex, needs))
        groups.extend(
            (script, regex, None)
            for script, sources in plain.items()
            if (regex := regex_of(sources)) is not None
        )
        self._groups = tuple(groups)
        #: Every literal one of the regexes needs (:meth:`PhraseIndex.literals_in` looks).
        self.literals = frozenset().union(*(needs for *_, needs in groups if needs))
        #: True when no regex can match without one of :attr:`literals` (or there is none).
        self.complete = not plain

    def __bool__(self) -> bool:
        return bool(self._groups)

    def search(
        self, text: str, scripts: frozenset[str], literals: frozenset[str] | None = None
    ) -> str | None:
        """What one of the regexes matched in ``text``, or ``None``.

        ``scripts`` are the text's :func:`scripts_of`; ``literals``, when given, are the
        :attr:`literals` that occur in it (:meth:`PhraseIndex.literals_in`).
        """
        for script, regex, needs in self._groups:
            if script != "any" and script not in scripts:
                continue
            if needs is not None and literals is not None and needs.isdisjoint(literals):
                continue
            if found := regex.search(text):
                return found[0]
        return None


# What a regex needs is read with the re module's own parser and case table. They are
# internal: should they change, no literal is required and every regex simply runs.
try:
    _sre: Any = importlib.import_module("re._parser")
    _CASES: Any = importlib.import_module("re._casefix")._EXTRA_CASES
except (ImportError, AttributeError):  # pragma: no cover - another Python
    _sre = _CASES = None

# "İ" is the one letter whose lower case is two characters; re matches it to "i".
_BEFORE_LOWER: Final = {0x130: "i"}
#: Letters re takes as the same letter ignoring case that lower() keeps apart (dotless i and
#: i, long s and s, final and medial sigma): each maps to one of its kind.
_SAME_LETTER: Final[dict[int, str]] = {}
if _CASES is not None:
    for _code, _others in _CASES.items():
        _kind = min(chr(_code), *map(chr, _others))
        for _char in (chr(_code), *map(chr, _others)):
            _SAME_LETTER[ord(_char)] = min(_kind, _SAME_LETTER.get(ord(_char), _kind))
# What, once lower-cased, needs more than lower(): a letter of those, or the dot of "İ".
_ODD_LETTER: Final = re.compile(
    "["
    + "".join(re.escape(chr(code)) for code, kind in _SAME_LETTER.items() if chr(code) != kind)
    + "\u0307]"
)
# Alternatives a literal may take before it is not worth tracking.
_MAX_ALTERNATIVES: Final = 64
# A literal must be this rare to be worth looking for: a likelihood, per text, of about
# 0.1 per character (a non-ASCII character counts twice), summed over the alternatives.
_MAX_LIKELIHOOD: Final = 0.01


def case_key(text: str) -> str:
    """``text`` as literals are compared: two strings re matches ignoring case get one key."""
    lowered = text.lower()
    if _ODD_LETTER.search(lowered) is None:
        return lowered
    return text.translate(_BEFORE_LOWER).lower().translate(_SAME_LETTER)


def required_literals(pattern: str) -> frozenset[str] | None:
    """Literals (see :func:`case_key`) one of which every match of ``pattern`` contains.

    ``None`` when there is no such set worth looking for: a match may be all classes and
    repeats, or only common short strings are required.
    """
    if _sre is None:
        return None
    try:
        tree = _sre.parse(pattern, re.IGNORECASE | re.MULTILINE)
        needs = _best(_needs(list(tree)))
    except (re.error, RecursionError, TypeError, ValueError):
        return None
    return frozenset(case_key(literal) for literal in needs) if needs else None


def _needs(items: list[tuple[Any, Any]]) -> list[frozenset[str]]:
    """Sets of strings of which a match of the sequence ``items`` holds one, each set."""
    found: list[frozenset[str]] = []
    run: frozenset[str] = frozenset({""})
    for op, av in items:
        exact = _exact((op, av))
        if exact is not None and len(run) * len(exact) <= _MAX_ALTERNATIVES:
            run = frozenset(a + b for a, b in product(run, exact))
            continue
        if "" not in run:
            found.append(run)
        run = frozenset({""})
        if op is _sre.SUBPATTERN:
            found.extend(_needs(av[-1]))
        elif op is _sre.ATOMIC_GROUP:
            found.extend(_needs(av))
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT) and av[0] >= 1:
            found.extend(_needs(av[2]))
        elif op is _sre.BRANCH:
            branches = [best for branch in av[1] if (best := _best(_needs(branch)))]
            if len(branches) == len(av[1]):
                found.append(frozenset().union(*branches))
    if "" not in run:
        found.append(run)
    return found


def _exact(item: tuple[Any, Any]) -> frozenset[str] | None:
    """Every string the item matches, when it is a literal or a few of them."""
    op, av = item
    if op is _sre.LITERAL:
        return frozenset({chr(av)})
    if op is _sre.IN and all(kind is _sre.LITERAL for kind, _ in av) and len(av) <= 8:
        return frozenset(chr(code) for _, code in av)
    if op is _sre.SUBPATTERN:
        return _exact_sequence(av[-1])
    if op is _sre.BRANCH:
        branches = [_exact_sequence(branch) for branch in av[1]]
        if all(branch is not None for branch in branches):
            union = frozenset().union(*(branch for branch in branches if branch is not None))
            return union if len(union) <= _MAX_ALTERNATIVES else None
    if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT) and av[0] == 0 and av[1] == 1:
        inner = _exact_sequence(av[2])
        return inner | {""} if inner is not None else None
    return None


def _exact_sequence(items: list[tuple[Any, Any]]) -> frozenset[str] | None:
    strings = frozenset({""})
    for item in items:
        part = _exact(item)
        if part is None or len(strings) * len(part) > _MAX_ALTERNATIVES:
            return None
        strings = frozenset(a + b for a, b in product(strings, part))
    return strings


def _best(candidates: list[frozenset[str]]) -> frozenset[str] | None:
    """The rarest of the candidate sets, if it is rare enough to be worth looking for."""
    scored = [(sum(map(_likelihood, strings)), strings) for strings in candidates if strings]
    if not scored:
        return None
    likelihood, strings = min(scored, key=lambda pair: pair[0])
    return strings if likelihood <= _MAX_LIKELIHOOD else None


def _likelihood(literal: str) -> float:
    weight = len(literal) + sum(not char.isascii() for char in literal)
    return float(0.1**weight)


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
