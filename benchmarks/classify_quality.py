"""Category, priority and team quality of the rules classifier on the labelled development set.

    python3 benchmarks/classify_quality.py [--input PATH] [--rules PATH] [--errors]

Builds each message as the pipeline does (text cleaned; for e-mail, quoted history and the
signature removed; headers lower-cased), detects its language, classifies it with the rules
file and prints, per field, accuracy and a confusion table against the labels; P1 recall and
precision; accuracy per labelled language; and the classifier's time per message (the
classifier alone, after the language is known). ``--errors`` lists every disagreement with the
reasons the classifier gave.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inbox_daemon.evaluation import message_from_line  # noqa: E402
from inbox_daemon.interfaces import Classification, InboundMessage  # noqa: E402
from inbox_daemon.pipeline.classify import load_rules  # noqa: E402
from inbox_daemon.pipeline.language import detect_language  # noqa: E402

DEV_SET = ROOT.parent / "shared" / "corpora" / "triage-dev" / "messages.jsonl"
RULES = ROOT / "config" / "rules.toml"
FIELDS = ("category", "priority", "team")
START = datetime(2026, 11, 23, tzinfo=UTC)
TIMING_ROUNDS = 20
# Hostile and long texts: the time per message must stay linear in the text's length.
WORST_CASES = {
    "6,000 chars of '1,000,'": "1,000," * 1_000,
    "6,000 chars of '1.000.'": "1.000." * 1_000,
    "6,000-char complaint": "My 2 BTC withdrawal is pending for 3 days, nobody answers. " * 100,
    "6,000 chars of Chinese": "提币三天了还没到账\uff0c" * 600,
    "6,000 question marks": "?" * 6_000,
}


@dataclass(frozen=True, slots=True)
class Labelled:
    """One development-set line: the message as the pipeline sees it and its labels."""

    id: str
    message: InboundMessage
    label: Mapping[str, Any]


def read_set(path: Path) -> Iterator[Labelled]:
    """The labelled messages of a JSONL file in the development set's format."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            if line.strip():
                item = json.loads(line)
                yield Labelled(
                    str(item["id"]),
                    message_from_line(item, START + timedelta(minutes=number)),
                    item.get("label", {}),
                )


def confusion(expected: Sequence[str], predicted: Sequence[str]) -> str:
    """A confusion table, expected labels down, predicted across."""
    labels = sorted(set(expected) | set(predicted))
    counts = Counter(zip(expected, predicted, strict=True))
    width = max(len(label) for label in labels) + 1
    head = " " * width + " ".join(f"{label[:6]:>6}" for label in labels)
    rows = [head] + [
        f"{row:<{width}}" + " ".join(f"{counts[row, col] or '.':>6}" for col in labels)
        for row in labels
    ]
    return "\n".join(rows)


def report(items: Sequence[Labelled], results: Sequence[Classification]) -> None:
    """Print per-field accuracy and confusion, P1 recall and per-language accuracy."""
    for field in FIELDS:
        expected = [str(item.label[field]) for item in items]
        predicted = [str(getattr(result, field)) for result in results]
        right = sum(e == p for e, p in zip(expected, predicted, strict=True))
        print(f"\n{field}: {right}/{len(items)} = {right / len(items):.1%}")
        print(confusion(expected, predicted))
    p1_expected = {item.id for item in items if item.label["priority"] == "P1"}
    p1_found = {item.id for item, r in zip(items, results, strict=True) if r.priority == "P1"}
    print(
        f"\nP1 recall {len(p1_expected & p1_found)}/{len(p1_expected)}, "
        f"precision {len(p1_expected & p1_found)}/{len(p1_found)}; "
        f"missed: {sorted(p1_expected - p1_found) or 'none'}"
    )
    by_language: dict[str, list[bool]] = defaultdict(list)
    for item, result in zip(items, results, strict=True):
        exact = all(str(item.label[f]) == str(getattr(result, f)) for f in FIELDS)
        by_language[str(item.label.get("language", "?"))].append(exact)
    print("\nall three fields right, by labelled language:")
    for language, marks in sorted(by_language.items(), key=lambda kv: -len(kv[1])):
        print(f"  {language:<6} {sum(marks):>3}/{len(marks):<3} {sum(marks) / len(marks):.0%}")


def show_errors(items: Sequence[Labelled], results: Sequence[Classification]) -> None:
    """Print every message whose labels disagree, with the classifier's reasons."""
    for item, result in zip(items, results, strict=True):
        expected = tuple(str(item.label[f]) for f in FIELDS)
        predicted = tuple(str(getattr(result, f)) for f in FIELDS)
        if expected != predicted:
            print(f"\n{item.id} expected {'/'.join(expected)} got {'/'.join(predicted)}")
            print(f"  {item.message.subject!r} {item.message.text[:160]!r}")
            for reason in result.reasons:
                print(f"  - {reason}")


def main() -> None:
    """Measure the rules on the development set."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", type=Path, default=DEV_SET)
    parser.add_argument("--rules", type=Path, default=RULES)
    parser.add_argument("--errors", action="store_true", help="list every disagreement")
    args = parser.parse_args()
    classifier = load_rules(args.rules)
    items = list(read_set(args.input))
    languages = [detect_language(f"{i.message.subject}\n{i.message.text}") for i in items]
    results = [
        classifier.classify(item.message, language)
        for item, language in zip(items, languages, strict=True)
    ]
    report(items, results)
    if args.errors:
        show_errors(items, results)
    rounds_ms = []
    for _ in range(TIMING_ROUNDS):
        started = time.perf_counter()
        for item, language in zip(items, languages, strict=True):
            classifier.classify(item.message, language)
        rounds_ms.append((time.perf_counter() - started) * 1000 / len(items))
    best_ms, median_ms = min(rounds_ms), statistics.median(rounds_ms)
    for name, text in WORST_CASES.items():
        hostile = replace(items[0].message, subject="", text=text)
        started = time.perf_counter()
        classifier.classify(hostile, "und")
        print(f"worst case {name}: {(time.perf_counter() - started) * 1000:.1f} ms")
    print(
        f"\nclassify: {best_ms:.3f} ms per message at best, {median_ms:.3f} median "
        f"({TIMING_ROUNDS} rounds of {len(items)} messages)"
    )


if __name__ == "__main__":
    main()
