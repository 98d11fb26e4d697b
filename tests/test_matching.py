"""The shared keyword and pattern matcher: one pass for keywords, literals before regexes."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from inbox_daemon.pipeline.matching import (
    Patterns,
    PhraseIndex,
    case_key,
    normalised,
    required_literals,
    scripts_of,
)

ROOT = Path(__file__).resolve().parents[1]
DEV_SET = ROOT.parent / "shared" / "corpora" / "triage-dev" / "messages.jsonl"
FRESH_SET = ROOT / "tests" / "data" / "triage-fresh.jsonl"


@pytest.mark.parametrize(
    ("pattern", "needs"),
    [
        (r"\b(sent|send)\s+\d", {"sent", "send"}),
        (r"(whale|price) alert\b", {"whale alert", "price alert"}),
        (r"(转|轉)了\s*\d", {"转了", "轉了"}),
        (r"\bonly\s+\d[\d.,]{0,20}\s+arrived", {"arrived"}),
        (r"^\s*RT @\w+", {"rt @"}),
        (r"\bİstanbul", {"istanbul"}),
        # Every branch needs one of its own (its rarest): the set is their union.
        (r"\b(withdrawal\w* failed|deposit\w* missing)", {"withdrawal", " missing"}),
    ],
)
def test_required_literals_are_what_every_match_holds(pattern: str, needs: set[str]) -> None:
    assert required_literals(pattern) == needs


@pytest.mark.parametrize(
    "pattern",
    [
        r"\b\d{6}\b",  # classes and repeats only
        r"(sent|\d+)",  # one branch needs no literal
        r"(?:a|b)\s+(?:c|d)",  # only common single letters
        r"\b(on|to|in)\b",  # short, common words: not worth looking for
        r"(unclosed",  # not a regex: nothing required, and Patterns reports it
    ],
)
def test_no_literal_is_required_when_none_is_worth_it(pattern: str) -> None:
    assert required_literals(pattern) is None


@pytest.mark.parametrize(
    ("literal", "text"),
    [
        ("sıfır", "SIFIR"),  # dotless i, as re matches it ignoring case
        ("istanbul", "İSTANBUL"),
        ("smart", "ſmart"),  # long s
        ("σος", "ΣΟΣ"),  # final and medial sigma
    ],
)
def test_case_key_agrees_with_re_ignorecase(literal: str, text: str) -> None:
    assert re.search(re.escape(literal), text, re.IGNORECASE)
    assert case_key(literal) in case_key(text)


def _rule_patterns() -> list[str]:
    patterns: list[str] = []
    for name in ("rules.toml", "reply_rules.toml"):
        document = tomllib.loads((ROOT / "config" / name).read_text(encoding="utf-8"))
        for term in document.get("terms", {}).values():
            patterns.extend(term.get("patterns", ()))
        for rule in (*document.get("rules", ()), *document.get("withhold", ())):
            patterns.extend(rule.get("patterns", ()))
    return patterns


def _texts() -> list[str]:
    texts = []
    for path in (DEV_SET, FRESH_SET):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                item = json.loads(line)
                texts.append(normalised(f"{item.get('subject') or ''}\n{item['text']}"))
    return texts


def test_the_literal_pass_never_hides_a_match_of_the_shipped_rules() -> None:
    """Every shipped pattern finds, behind the literal pass, exactly what it finds alone."""
    patterns = _rule_patterns()
    texts = _texts()
    assert len(patterns) > 100 and len(texts) > 400
    compiled = [Patterns([pattern]) for pattern in patterns]
    index = PhraseIndex((), patterns=compiled)
    assert sum(bool(each.literals) for each in compiled) > len(patterns) // 2
    for text in texts:
        scripts, literals = scripts_of(text), index.literals_in(text)
        for pattern, each in zip(patterns, compiled, strict=True):
            # Without ``literals`` every regex runs: the reference answer.
            assert each.search(text, scripts, literals) == each.search(text, scripts), (
                pattern,
                text,
            )


def test_keywords_match_whole_words_stems_and_unspaced_scripts() -> None:
    index = PhraseIndex(
        [
            ("send", "verb"),
            ("withdraw*", "stem"),
            ("not received", "phrase"),
            ("提现", "chinese"),
            ("$btc", "cashtag"),
        ]
    )
    assert index.search("the sender was not receivedx") == {}
    assert index.search("i send, withdrawals not received") == {
        "verb": "send",
        "stem": "withdraw",
        "phrase": "not received",
    }
    assert index.search("我的提现没到 $btc") == {"chinese": "提现", "cashtag": "$btc"}
    assert index.search("api提现") == {"chinese": "提现"}
    assert index.search("") == {}
    assert PhraseIndex(()).search("anything") == {}
    assert PhraseIndex(()).literals_in("anything") == frozenset()
