"""Category, priority and team by the operator's rules (``config/rules.toml``), with reasons.

A rule names a category and a priority and fires when any of its keywords (case-insensitive;
whole words for Latin-script keywords) or regular expressions occurs in the subject or text.
The category with the highest total weight wins; its highest-priority rule sets the priority;
the team follows from ``[routing]`` by category and priority. No rule firing means
``other``/``P4``, routed like any other category.
"""

from __future__ import annotations

import re
import tomllib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, ValidationError, field_validator

from ..config import FrozenModel
from ..errors import ConfigError
from ..interfaces import Classification, InboundMessage

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


class RuleSpec(FrozenModel):
    """One ``[[rules]]`` entry."""

    name: Annotated[str, Field(min_length=1)]
    category: str
    priority: Priority = "P4"
    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    weight: Annotated[float, Field(gt=0)] = 1.0

    @field_validator("category")
    @classmethod
    def _known_category(cls, category: str) -> str:
        if category not in CATEGORIES:
            raise ValueError(f"unknown category; expected one of: {', '.join(CATEGORIES)}")
        return category


class RouteSpec(FrozenModel):
    """One ``[[routing]]`` entry: the team for a category, optionally only at some priorities."""

    category: str
    team: str
    priorities: tuple[Priority, ...] = ("P1", "P2", "P3", "P4")


class RulesFile(FrozenModel):
    """The whole rules file."""

    rules: tuple[RuleSpec, ...] = ()
    routing: tuple[RouteSpec, ...] = ()
    default_team: str = "customer_service"


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    spec: RuleSpec
    matchers: tuple[re.Pattern[str], ...]


class RulesClassifier:
    """The :class:`~inbox_daemon.interfaces.Classifier` driven by ``rules.toml``."""

    def __init__(self, rules: RulesFile, *, path: str = "rules.toml") -> None:
        self._rules = tuple(_compile(spec, index, path) for index, spec in enumerate(rules.rules))
        self._routing = rules.routing
        self._default_team = rules.default_team

    def classify(self, message: InboundMessage, language: str) -> Classification:
        """Category, priority and team of ``message`` with the names of the rules that fired."""
        haystack = f"{message.subject}\n{message.text}"
        fired = [rule.spec for rule in self._rules if _fires(rule, haystack)]
        if not fired:
            return self._route("other", "P4", ("category other: no rule matched",))
        totals: dict[str, float] = defaultdict(float)
        for spec in fired:
            totals[spec.category] += spec.weight
        category = max(totals, key=lambda name: (totals[name], -CATEGORIES.index(name)))
        winners = [spec for spec in fired if spec.category == category]
        priority = min(spec.priority for spec in winners)
        reasons = (
            f"category {category}: rules {', '.join(spec.name for spec in winners)}",
            f"priority {priority}: rule {next(s.name for s in winners if s.priority == priority)}",
        )
        return self._route(category, priority, reasons)

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


def _compile(spec: RuleSpec, index: int, path: str) -> _CompiledRule:
    matchers = [_keyword_pattern(keyword) for keyword in spec.keywords]
    for pattern in spec.patterns:
        try:
            matchers.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:
            key = f"rules[{index}].patterns (rule {spec.name!r})"
            raise ConfigError(
                f"bad regular expression {pattern!r}: {exc}", path=path, key=key
            ) from exc
    return _CompiledRule(spec, tuple(matchers))


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    # Latin-script keywords match whole words ("api" must not fire on "rapid"); CJK and
    # other scripts without spaces between words match anywhere.
    escaped = re.escape(keyword)
    if keyword.isascii():
        return re.compile(rf"(?<!\w){escaped}(?!\w)", re.IGNORECASE)
    return re.compile(escaped, re.IGNORECASE)


def _fires(rule: _CompiledRule, haystack: str) -> bool:
    return any(matcher.search(haystack) for matcher in rule.matchers)
