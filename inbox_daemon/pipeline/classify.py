"""Category, priority and team by the operator's rules (``config/rules.toml``), with reasons.

The rules file names **terms** (concepts such as "a deposit or withdrawal" or "it has not
arrived", each a list of multilingual keywords and regular expressions) and **rules**. A rule
fires when all of its conditions hold:

- one of its own ``keywords`` or ``patterns`` occurs in the subject or text (or one of its
  ``headers`` patterns matches an e-mail header line ``name: value``, or one of its
  ``senders`` patterns the sender's address or handle), when it has any;
- every term it ``requires`` occurs (``"a|b"``: either term), and no term under ``unless``
  (``"a+b"``: not both terms together);
- the largest amount quoted is worth at least ``min_usd`` and the longest wait quoted lasts at
  least ``min_hours``, when it sets them (read by :class:`QuantityReader`). The amount is read
  in the sender's own words, or, when they quote none, in what they quoted or forwarded (a
  bank's transfer confirmation).

Keywords are case-insensitive whole words or phrases; a trailing ``*`` lets the last word go on
("withdraw*" matches "withdrawals", "çekim*" matches "çekimim"). In Chinese, Japanese, Korean,
Thai and Arabic, whose words take no spaces or carry attached particles, a keyword matches
anywhere. Patterns are Python regexes, case-insensitive. Text is NFKC-normalised first, so
full-width digits and letters match too.

The winner: a **decisive** rule (machine mail told by its headers or sender) beats every other
rule; otherwise the category whose best rule has the highest priority wins (POLICY: "the one
with the highest priority wins"), then the one with the most total weight. That category's
best rule sets the priority, and ``[[routing]]`` gives the team. No rule firing means
``other``/``P4``. Every decision is written in ``reasons`` with the rule and what it matched.

Speed: all keywords of all terms and rules are looked up in one pass over the words of the
text (:class:`PhraseIndex`); a regex runs only when its owner's keywords did not already match,
its owner is still in question (a rule's required terms are checked first), and the text
contains the script the regex is written in. Only the first 6,000 characters are read.
"""

from __future__ import annotations

import re
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from ..config import FrozenModel
from ..errors import ConfigError
from ..interfaces import Classification, InboundMessage
from .hints import HintSpec
from .matching import UNSPACED, Patterns, PhraseIndex, fold, normalised, regex_of, scripts_of

CATEGORIES: Final = (
    "trading",
    "deposit_withdrawal",
    "kyc",
    "account_security",
    "promotions",
    "feature_request",
    "bug_report",
    "api",
    "other",
)
Priority = Literal["P1", "P2", "P3", "P4"]

# Only the start of a long text is read: the problem is stated early, and this bounds the work.
_MAX_TEXT_CHARS: Final = 6_000
# Evidence quoted in a reason is cut to this length: enough to recognise, short in a queue.
_EVIDENCE_CHARS: Final = 40
# The rest of a unit word in a spaced script ("hour" -> "hours"), shown in reasons.
_REST_OF_WORD: Final = f"(?-i:[^\\W\\d_{UNSPACED}]*)"
# After a one- or two-letter Latin word ("h", "k", "u"): no further letter of a spaced script,
# accented ones included, so the "h" of Vietnamese "hôm" (day) is not read as hours; a digit
# or a Chinese, Japanese or Korean character may follow ("3h后").
_SHORT_WORD_END: Final = f"(?-i:(?![^\\W\\d_{UNSPACED}]))"


class TermSpec(FrozenModel):
    """One ``[terms.NAME]`` entry: a concept that rules require or exclude."""

    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()


class RuleSpec(FrozenModel):
    """One ``[[rules]]`` entry."""

    name: Annotated[str, Field(min_length=1)]
    category: str
    priority: Priority = "P4"
    weight: Annotated[float, Field(gt=0)] = 1.0
    decisive: bool = False
    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    senders: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()
    min_usd: Annotated[float, Field(gt=0)] | None = None
    min_hours: Annotated[float, Field(gt=0)] | None = None

    @field_validator("category")
    @classmethod
    def _known_category(cls, category: str) -> str:
        if category not in CATEGORIES:
            raise ValueError(f"unknown category; expected one of: {', '.join(CATEGORIES)}")
        return category

    @model_validator(mode="after")
    def _has_a_condition(self) -> RuleSpec:
        if not (self.keywords or self.patterns or self.headers or self.senders or self.requires):
            raise ValueError("a rule needs keywords, patterns, headers, senders or requires")
        return self


class RouteSpec(FrozenModel):
    """One ``[[routing]]`` entry: the team for a category, optionally only at some priorities."""

    category: str
    team: str
    priorities: tuple[Priority, ...] = ("P1", "P2", "P3", "P4")


class QuantitySpec(FrozenModel):
    """``[quantities]``: how amounts ("1.5 BTC") and waits ("3 days") are read.

    Attributes:
        prices_usd: rough USD value of one unit, by symbol (``BTC = 90000``).
        currency_names: other ways to write a symbol (``bitcoin``, ``€``, ``원``).
        multipliers: suffixes that scale a number (``k``, ``万``, ``juta``).
        implied_currency: scaling words that name the currency on their own ("25 juta" is
            rupiah, "50 triệu" is dong), by symbol.
        counters: words allowed between a number and its unit (``个``, ``개``).
        number_words: numbers written as words (``three``, ``trois``, ``三``).
        hour_units, day_units, week_units: unit words, matched as word starts ("hour"
            matches "hours"); Latin units of one or two letters must end the word.
        over_a_day: patterns that say more than a day has passed ("since Friday").
        not_elapsed_before, not_elapsed_after: words next to a duration that make it a
            limit or a schedule, not time already waited ("within 24 hours", "24小时内").
    """

    prices_usd: Mapping[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    currency_names: Mapping[str, str] = Field(default_factory=dict)
    multipliers: Mapping[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    implied_currency: Mapping[str, str] = Field(default_factory=dict)
    counters: tuple[str, ...] = ()
    number_words: Mapping[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    hour_units: tuple[str, ...] = ()
    day_units: tuple[str, ...] = ()
    week_units: tuple[str, ...] = ()
    over_a_day: tuple[str, ...] = ()
    not_elapsed_before: tuple[str, ...] = ()
    not_elapsed_after: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _names_known_symbols(self) -> QuantitySpec:
        for key, names in (
            ("currency_names", self.currency_names),
            ("implied_currency", self.implied_currency),
        ):
            unknown = sorted(set(names.values()) - set(self.prices_usd))
            if unknown:
                raise ValueError(f"{key} refer to symbols without a price: {unknown}")
        return self


class RulesFile(FrozenModel):
    """The whole rules file."""

    terms: Mapping[str, TermSpec] = Field(default_factory=dict)
    rules: tuple[RuleSpec, ...] = ()
    routing: tuple[RouteSpec, ...] = ()
    default_team: str = "customer_service"
    quantities: QuantitySpec = QuantitySpec()
    #: Help-centre articles for acknowledgments (hints.py reads and applies them).
    hints: tuple[HintSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class Amount:
    """An amount of money quoted in a message and its rough value."""

    text: str
    usd: float


@dataclass(frozen=True, slots=True)
class Wait:
    """A length of time quoted in a message ("3 days", "since Friday")."""

    text: str
    hours: float


class QuantityReader:
    """Finds the largest amount of money and the longest wait quoted in a text."""

    def __init__(self, spec: QuantitySpec) -> None:
        self._prices = {symbol.upper(): price for symbol, price in spec.prices_usd.items()}
        self._names = {fold(name): symbol.upper() for name, symbol in spec.currency_names.items()}
        self._multipliers = {fold(word): value for word, value in spec.multipliers.items()}
        self._words = {fold(word): value for word, value in spec.number_words.items()}
        self._amount = _amount_regex(spec)
        self._implied = {
            fold(word): symbol.upper() for word, symbol in spec.implied_currency.items()
        }
        self._implied_amount = _implied_amount_regex(spec)
        self._duration = _duration_regex(spec)
        self._over_a_day = Patterns(spec.over_a_day)
        before = _alternation(spec.not_elapsed_before)
        self._before = re.compile(rf"(?<!\w)(?:{before})\s*$", re.IGNORECASE) if before else None
        after = _alternation(spec.not_elapsed_after)
        self._after = re.compile(rf"\s*(?:{after})", re.IGNORECASE) if after else None

    def largest_amount(self, text: str) -> Amount | None:
        """The quoted amount worth the most in USD, or ``None`` when none has a known unit."""
        amounts = [*self._with_unit(text), *self._with_implied_unit(text)]
        return max(amounts, key=lambda amount: amount.usd, default=None)

    def _with_unit(self, text: str) -> Iterator[Amount]:
        """Amounts that name their currency or coin ("1.5 BTC", "€500", "一万U")."""
        for match in self._amount.finditer(text) if self._amount else ():
            number = self._value(match["n1"] or match["n2"])
            unit = fold(match["c1"] or match["c2"])
            symbol = self._names.get(unit, unit.upper())
            if number is None or symbol not in self._prices:
                continue
            scale = self._multipliers.get(fold(match["m1"] or match["m2"] or ""), 1.0)
            yield Amount(match[0].strip(), number * scale * self._prices[symbol])

    def _with_implied_unit(self, text: str) -> Iterator[Amount]:
        """Amounts whose scaling word names the currency ("25 juta" rupiah)."""
        for match in self._implied_amount.finditer(text) if self._implied_amount else ():
            number = self._value(match["n"])
            word = fold(match["w"])
            if number is not None:
                price = self._prices[self._implied[word]]
                yield Amount(match[0].strip(), number * self._multipliers.get(word, 1.0) * price)

    def _value(self, raw: str) -> float | None:
        """A number written in digits ("1,500") or as a word ("两")."""
        return _number(raw) or self._words.get(fold(raw))

    def longest_wait(self, text: str, scripts: frozenset[str] = frozenset()) -> Wait | None:
        """The longest time already waited that the text quotes, or ``None``."""
        best: Wait | None = None
        for match in self._duration.finditer(text) if self._duration else ():
            if self._not_elapsed(text, match.start(), match.end()):
                continue
            count = self._value(match["q"])
            unit_h = 1.0 if match["h"] else 24.0 if match["d"] else 168.0
            if count is not None and (best is None or count * unit_h > best.hours):
                best = Wait(match[0].strip(), count * unit_h)
        if best is None and (found := self._over_a_day.search(text, scripts or scripts_of(text))):
            best = Wait(found.strip(), 24.0)
        return best

    def _not_elapsed(self, text: str, start: int, end: int) -> bool:
        if self._before and self._before.search(text, max(0, start - 16), start):
            return True
        # The word after may be of any length ("24 saat içinde"): it is matched, not sliced.
        return bool(self._after and self._after.match(text, end))


@dataclass(frozen=True, slots=True)
class _Matcher:
    """What a term or a rule looks for in the text itself."""

    owner: str
    patterns: Patterns

    @property
    def signals(self) -> frozenset[str] | None:
        """What the text must hold for this to match: its keywords (found under the owner's
        name) or a literal its regexes need; ``None`` when a regex needs no literal."""
        if not self.patterns.complete:
            return None
        return self.patterns.literals | {self.owner}


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    spec: RuleSpec
    own: _Matcher | None
    headers: re.Pattern[str] | None
    senders: re.Pattern[str] | None
    requires: tuple[tuple[str, ...], ...]
    #: Combinations of terms that stop the rule, each when all its terms occur.
    unless: tuple[tuple[str, ...], ...]
    #: What the text must hold for the rule to fire, as keyword owners and literals (see
    #: :attr:`_Matcher.signals`): one of each set.
    gates: tuple[frozenset[str], ...]


@dataclass(frozen=True, slots=True)
class _Firing:
    rule: RuleSpec
    evidence: tuple[str, ...]
    detail: str = ""


class _View:
    """One message as the rules read it; matches and quantities are computed once, on demand."""

    __slots__ = (
        "_amount",
        "_found",
        "_quoted",
        "_reader",
        "_wait",
        "headers",
        "keywords",
        "literals",
        "scripts",
        "sender",
        "text",
    )

    def __init__(self, message: InboundMessage, index: PhraseIndex, reader: QuantityReader) -> None:
        self.text = normalised(f"{message.subject}\n{message.text}"[:_MAX_TEXT_CHARS])
        self.scripts = scripts_of(self.text)
        self.headers = "\n".join(
            f"{name.lower()}: {value}" for name, value in message.headers.items()
        )
        self.sender = message.sender.handle or message.sender.id
        #: What the sender quoted or forwarded, when the visible text leaves it out.
        self._quoted = message.full_text if message.full_text != message.text else ""
        found = index.search(self.text.lower())
        #: The owners whose keywords occur in the text.
        self.keywords = frozenset(found)
        #: The literals the patterns need that occur in the text.
        self.literals = index.literals_in(self.text)
        self._found: dict[str, str | None] = dict(found)
        self._reader = reader
        self._amount: Amount | Literal[False] | None = False
        self._wait: Wait | Literal[False] | None = False

    def find(self, matcher: _Matcher) -> str | None:
        """What ``matcher``'s keywords or, failing those, its patterns found (cached)."""
        if matcher.owner not in self._found:
            self._found[matcher.owner] = matcher.patterns.search(
                self.text, self.scripts, self.literals
            )
        return self._found[matcher.owner]

    def amount(self) -> Amount | None:
        """The largest amount in the sender's words, else in what they quoted (computed once).

        A forwarded bank confirmation or an earlier mail of the thread may hold the only
        amount: the own words come first, so an older figure never outbids them.
        """
        if self._amount is False:
            self._amount = self._reader.largest_amount(self.text)
            if self._amount is None and self._quoted:
                quoted = normalised(self._quoted[:_MAX_TEXT_CHARS])
                self._amount = self._reader.largest_amount(quoted)
        return self._amount

    def wait(self) -> Wait | None:
        """The longest wait quoted (computed once)."""
        if self._wait is False:
            self._wait = self._reader.longest_wait(self.text, self.scripts)
        return self._wait


class RulesClassifier:
    """The :class:`~inbox_daemon.interfaces.Classifier` driven by ``rules.toml``."""

    def __init__(self, rules: RulesFile, *, path: str = "rules.toml") -> None:
        self._terms = {name: _compile_term(name, term, path) for name, term in rules.terms.items()}
        try:
            self._reader = QuantityReader(rules.quantities)
        except ValueError as exc:
            raise ConfigError(str(exc), path=path, key="quantities") from exc
        self._rules = tuple(
            _compile_rule(spec, index, path, self._terms) for index, spec in enumerate(rules.rules)
        )
        # Rules are looked at only when the text holds one of their first gate's signals.
        self._ungated = frozenset(index for index, rule in enumerate(self._rules) if not rule.gates)
        self._by_signal: dict[str, list[int]] = defaultdict(list)
        for index, rule in enumerate(self._rules):
            for signal in rule.gates[0] if rule.gates else ():
                self._by_signal[signal].append(index)
        self._index = PhraseIndex(
            _keywords(rules),
            patterns=[
                *(term.patterns for term in self._terms.values()),
                *(rule.own.patterns for rule in self._rules if rule.own is not None),
            ],
        )
        self._routing = rules.routing
        self._default_team = rules.default_team

    def classify(self, message: InboundMessage, language: str) -> Classification:
        """Category, priority and team of ``message`` with the rules that decided them.

        ``language`` is not consulted: every rule lists its words in all supported languages,
        and a message mixing languages is matched in each.
        """
        view = _View(message, self._index, self._reader)
        signals = view.keywords | view.literals
        candidates = set(self._ungated)
        for signal in signals & self._by_signal.keys():
            candidates.update(self._by_signal[signal])
        fired = [
            firing
            for index in sorted(candidates)
            if (firing := self._fire(self._rules[index], view, signals)) is not None
        ]
        if not fired:
            return self._route("other", "P4", ("category other: no rule matched",))
        decisive = [firing for firing in fired if firing.rule.decisive]
        category, winners = _winner(decisive or fired)
        best = min(winners, key=lambda firing: firing.rule.priority)
        reasons = [
            f"category {category}: " + "; ".join(_explain(firing) for firing in winners),
            f"priority {best.rule.priority}: rule {best.rule.name}"
            + (f": {best.detail}" if best.detail else ""),
        ]
        losers = [firing for firing in fired if firing.rule.category != category]
        if losers:
            reasons.append("outranked: " + ", ".join(_label(firing) for firing in losers))
        return self._route(category, best.rule.priority, tuple(reasons))

    def _fire(self, rule: _CompiledRule, view: _View, signals: frozenset[str]) -> _Firing | None:
        if any(gate.isdisjoint(signals) for gate in rule.gates):
            return None  # a required term is missing, as the keyword and literal pass tells
        evidence: list[str] = []
        for alternatives in rule.requires:
            found = next(
                (hit for name in alternatives if (hit := view.find(self._terms[name]))), None
            )
            if found is None:
                return None
            evidence.append(found)
        own = _own_match(rule, view)
        if own is False:
            return None
        if any(
            all(view.find(self._terms[name]) is not None for name in names) for names in rule.unless
        ):
            return None
        detail = _quantity_detail(rule.spec, view)
        if detail is None:
            return None
        return _Firing(rule.spec, tuple(e for e in (own, *evidence) if e), detail)

    def _route(self, category: str, priority: str, reasons: tuple[str, ...]) -> Classification:
        for route in self._routing:
            if route.category == category and priority in route.priorities:
                reason = f"team {route.team}: routing for {category} at {priority}"
                return Classification(category, priority, route.team, (*reasons, reason))
        reason = f"team {self._default_team}: default team"
        return Classification(category, priority, self._default_team, (*reasons, reason))


def load_rules(path: Path) -> RulesClassifier:
    """Read and compile the rules file at ``path``.

    Raises:
        ConfigError: naming the file and the rule that is wrong.
    """
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=str(path)) from exc
    try:
        rules = RulesFile.model_validate(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ConfigError(error["msg"], path=str(path), key=_key(document, error["loc"])) from exc
    return RulesClassifier(rules, path=str(path))


def _key(document: Mapping[str, object], loc: Sequence[int | str]) -> str:
    key = ".".join(str(part) for part in loc)
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        entries = document.get("rules")
        if (
            isinstance(entries, list)
            and loc[1] < len(entries)
            and isinstance(entries[loc[1]], dict)
        ):
            key += f" (rule {entries[loc[1]].get('name', '?')!r})"
    return key


def _keywords(rules: RulesFile) -> Iterator[tuple[str, str]]:
    for name, term in rules.terms.items():
        yield from ((keyword, f"term:{name}") for keyword in term.keywords)
    for index, spec in enumerate(rules.rules):
        yield from ((keyword, f"rule:{index}") for keyword in spec.keywords)


def _compile_term(name: str, term: TermSpec, path: str) -> _Matcher:
    try:
        return _Matcher(f"term:{name}", Patterns(term.patterns))
    except ValueError as exc:
        raise ConfigError(str(exc), path=path, key=f"terms.{name}") from exc


def _compile_rule(
    spec: RuleSpec, index: int, path: str, terms: Mapping[str, _Matcher]
) -> _CompiledRule:
    key = f"rules[{index}] (rule {spec.name!r})"
    requires = tuple(tuple(part.strip() for part in entry.split("|")) for entry in spec.requires)
    unless = tuple(tuple(part.strip() for part in entry.split("+")) for entry in spec.unless)
    named = [name for names in (*requires, *unless) for name in names]
    unknown = [name for name in named if name not in terms]
    if unknown:
        raise ConfigError(
            f"unknown term {unknown[0]!r}; define it under [terms]", path=path, key=key
        )
    try:
        own = _Matcher(f"rule:{index}", Patterns(spec.patterns))
        headers = regex_of(spec.headers)
        senders = regex_of(spec.senders)
    except ValueError as exc:
        raise ConfigError(str(exc), path=path, key=key) from exc
    has_own = bool(spec.keywords or spec.patterns)
    needed = [[terms[name] for name in names] for names in requires]
    if has_own and headers is None and senders is None:
        needed.append([own])
    gates = tuple(gate for matchers in needed if (gate := _gate(matchers)) is not None)
    return _CompiledRule(spec, own if has_own else None, headers, senders, requires, unless, gates)


def _gate(matchers: Sequence[_Matcher]) -> frozenset[str] | None:
    """What the text must hold for one of ``matchers`` to match; ``None`` if unknowable.

    Owners ("term:...", "rule:...") and literals share one namespace: no literal looks like one.
    """
    signals = [matcher.signals for matcher in matchers]
    return frozenset().union(*(s for s in signals if s is not None)) if all(signals) else None


def _own_match(rule: _CompiledRule, view: _View) -> str | Literal[False] | None:
    """What the rule's own matchers found; ``False`` when it has some and none matched."""
    if rule.own is None and rule.headers is None and rule.senders is None:
        return None
    if rule.own is not None and (found := view.find(rule.own)):
        return found
    for regex, subject in ((rule.headers, view.headers), (rule.senders, view.sender)):
        if regex is not None and (hit := regex.search(subject)):
            return hit[0]
    return False


def _quantity_detail(spec: RuleSpec, view: _View) -> str | None:
    """Why the amount and wait conditions hold ("" when the rule has none), else ``None``."""
    parts: list[str] = []
    if spec.min_usd is not None:
        amount = view.amount()
        if amount is None or amount.usd < spec.min_usd:
            return None
        parts.append(f"{amount.text} (~{amount.usd:,.0f} USD)")
    if spec.min_hours is not None:
        wait = view.wait()
        if wait is None or wait.hours < spec.min_hours:
            return None
        parts.append(f"waiting {wait.text} (~{wait.hours:,.0f} h)")
    return ", ".join(parts)


def _winner(fired: Sequence[_Firing]) -> tuple[str, list[_Firing]]:
    """The winning category and its firings: highest priority, then total weight."""
    by_category: dict[str, list[_Firing]] = defaultdict(list)
    for firing in fired:
        by_category[firing.rule.category].append(firing)

    def rank(category: str) -> tuple[str, float, int]:
        firings = by_category[category]
        best = min(firing.rule.priority for firing in firings)
        return best, -sum(firing.rule.weight for firing in firings), CATEGORIES.index(category)

    category = min(by_category, key=rank)
    return category, by_category[category]


def _explain(firing: _Firing) -> str:
    quoted = " + ".join(f'"{_clip(text)}"' for text in firing.evidence)
    return f"rule {firing.rule.name} ({firing.rule.priority}) matched {quoted}"


def _label(firing: _Firing) -> str:
    return f"{firing.rule.name} ({firing.rule.category} {firing.rule.priority})"


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _EVIDENCE_CHARS else text[: _EVIDENCE_CHARS - 1] + "…"


def _alternation(words: Iterable[str]) -> str:
    """A regex alternation of ``words``, longest first; short Latin words must end a word."""
    parts = []
    for word in sorted({normalised(word) for word in words}, key=len, reverse=True):
        escaped = re.escape(word)
        short_latin = word.isascii() and word.isalpha() and len(word) <= 2
        parts.append(escaped + _SHORT_WORD_END if short_latin else escaped)
    return "|".join(parts)


# Every repeat is bounded: a run of "1,000,1,000,…" must not make the search quadratic.
_NUMBER: Final = r"\d{1,3}(?:[,.' \u00a0\u202f]\d{3}){1,5}(?:[.,]\d{1,8})?|\d{1,12}(?:[.,]\d{1,8})?"
# A number does not start inside a Latin or Cyrillic word ("TRC20", "v2") or another number
# ("1,000"), but may follow Chinese, Japanese or Korean text directly ("充值了3个ETH", "已经两天")
# and a comma or full stop that ends a clause (a full-width comma is "," once normalised).
_NOT_AFTER_WORD: Final = r"(?<![0-9A-Za-z\u00c0-\u024f\u0400-\u04ff])(?<!\d[.,])"


def _amount_regex(spec: QuantitySpec) -> re.Pattern[str] | None:
    """Amounts written "1.5 BTC", "2k $DOGE", "€500", "BTC 1.5개" or "一万U"."""
    names = [*spec.prices_usd, *spec.currency_names]
    if not names:
        return None
    # Letters-and-digits names ("BTC", "u") must end a word; the others may run on ("€5").
    # One look-ahead after the whole alternation: a large class costs a compile each time.
    ordered = sorted({normalised(name) for name in names}, key=len, reverse=True)
    words = "|".join(re.escape(name) for name in ordered if name.isascii() and name.isalnum())
    signs = "|".join(re.escape(name) for name in ordered if not (name.isascii() and name.isalnum()))
    currency = "|".join(
        part for part in (f"(?:{words}){_SHORT_WORD_END}" if words else "", signs) if part
    )
    scale = _alternation(spec.multipliers)
    counter = "|".join(re.escape(word) for word in spec.counters)
    scale1 = rf"(?:\s?(?P<m1>{scale}))?" if scale else "(?P<m1>)"
    scale2 = rf"(?:\s?(?P<m2>{scale}))?" if scale else "(?P<m2>)"
    counted = rf"(?:{counter})?" if counter else ""
    # A number word counts only before a scale or a counter ("一万U", "三个比特币"): "few" alone
    # before a coin is not an amount anyone quotes.
    words = _alternation(spec.number_words)
    follows = "|".join(part for part in (scale, counter) if part)
    worded = rf"|(?:{words})(?=\s?(?:{follows}))" if words and follows else ""
    forward = (
        rf"{_NOT_AFTER_WORD}(?P<n1>{_NUMBER}{worded}){scale1}\s*{counted}\s*\$?(?P<c1>{currency})"
    )
    backward = rf"(?<![a-z])(?P<c2>{currency})\s*(?P<n2>{_NUMBER}){scale2}"
    return re.compile(rf"{forward}|{backward}", re.IGNORECASE)


def _implied_amount_regex(spec: QuantitySpec) -> re.Pattern[str] | None:
    """Amounts written with a scaling word that names the currency: "25 juta", "50 triệu"."""
    implied = _alternation(spec.implied_currency)
    if not implied:
        return None
    words = _alternation(spec.number_words)
    number = rf"{_NUMBER}|{words}" if words else _NUMBER
    return re.compile(
        rf"{_NOT_AFTER_WORD}(?P<n>{number})\s?(?P<w>{implied}){_SHORT_WORD_END}", re.IGNORECASE
    )


def _duration_regex(spec: QuantitySpec) -> re.Pattern[str] | None:
    """Durations written "3 days", "48h", "三天", "3일째", "trois jours"."""
    if not (spec.hour_units or spec.day_units or spec.week_units):
        return None
    words = _alternation(spec.number_words)
    quantity = rf"(?P<q>\d{{1,6}}(?:[.,]\d{{1,3}})?{'|' + words if words else ''})"
    counter = "|".join(re.escape(word) for word in spec.counters)
    counted = rf"(?:{counter})?" if counter else ""
    units = "|".join(
        rf"(?P<{group}>{_alternation(unit_words)})"
        for group, unit_words in (
            ("h", spec.hour_units),
            ("d", spec.day_units),
            ("w", spec.week_units),
        )
        if unit_words
    )
    return re.compile(
        rf"{_NOT_AFTER_WORD}{quantity}\s*\+?\s*{counted}\s*(?:{units}){_REST_OF_WORD}",
        re.IGNORECASE,
    )


def _number(raw: str | None) -> float | None:
    """A written number: "25,000", "1 500", "0,9", "1.500.000" (thousands or a decimal)."""
    if not raw:
        return None
    digits = re.sub(r"[\s\u00a0\u202f']", "", raw)
    if not digits[:1].isdigit():
        return None
    separators = [char for char in digits if char in ",."]
    if separators:
        last = max(digits.rfind(","), digits.rfind("."))
        decimal = len(set(separators)) > 1 or (
            len(separators) == 1 and (len(digits) - last - 1 != 3 or digits[:last] == "0")
        )
        whole = re.sub(r"[,.]", "", digits[:last]) if decimal else re.sub(r"[,.]", "", digits)
        digits = f"{whole}.{digits[last + 1 :]}" if decimal else whole
    return float(digits)
