"""Triage quality and speed on the labelled development set, through `inbox-daemon triage`.

    python3 benchmarks/triage_quality.py [--input PATH] [--throughput 50000]

Prints, per field, accuracy and a confusion table against the labels; P1 recall; replies to
robots; secret recall and precision; duplicate and incident pair F1; and the command's
throughput on the set repeated to N distinct messages (new ids, senders, Message-IDs and a
varied word and renumbered UIDs in every copy, so no cache keyed on text makes it fast and no
copy repeats another), on one core.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from classify_quality import confusion  # noqa: E402 - run as a script: its folder is on sys.path

DEV_SET = ROOT.parent / "shared" / "corpora" / "triage-dev" / "messages.jsonl"
FIELDS = ("language", "category", "priority", "team", "should_autoreply")
LONG_NUMBER = re.compile(r"(?<![\w.])\d{5,12}(?![\w.])")
ROBOT_REASONS = {"auto-submitted", "bulk/list", "mailer-daemon bounce", "out-of-office"}


def run_triage(path: Path) -> tuple[list[dict], float]:
    command = [sys.executable, "-m", "inbox_daemon.cli", "triage", "--input", str(path)]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]  # one core, as the target says
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - started
    return [json.loads(line) for line in result.stdout.splitlines()], elapsed


def pair_f1(expected: set[frozenset[str]], predicted: set[frozenset[str]]) -> str:
    true_positive = len(expected & predicted)
    precision = true_positive / len(predicted) if predicted else 1.0
    recall = true_positive / len(expected) if expected else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return f"F1 {f1:.3f} (precision {precision:.3f}, recall {recall:.3f}, {len(expected)} pairs)"


def group_pairs(groups: dict[str, list[str]]) -> set[frozenset[str]]:
    return {frozenset(pair) for ids in groups.values() for pair in itertools.combinations(ids, 2)}


def report_fields(labels: dict[str, dict], results: dict[str, dict]) -> None:
    ids = list(labels)
    for field in FIELDS:
        expected = [str(labels[i][field]) for i in ids]
        predicted = [str(results[i][field]) for i in ids]
        correct = sum(e == p for e, p in zip(expected, predicted, strict=True))
        print(f"\n{field}: {correct}/{len(ids)} = {correct / len(ids):.1%}")
        print(confusion(expected, predicted))
        misses = [i for i, e, p in zip(ids, expected, predicted, strict=True) if e != p]
        print("  wrong:", " ".join(f"{i}({labels[i][field]}->{results[i][field]})" for i in misses))


def report_replies(labels: dict[str, dict], results: dict[str, dict]) -> None:
    p1 = [i for i in labels if labels[i]["priority"] == "P1"]
    found = sum(results[i]["priority"] == "P1" for i in p1)
    print(f"\nP1 recall: {found}/{len(p1)}")
    leaks = [
        i
        for i in labels
        if labels[i]["autoreply_reason"] in ROBOT_REASONS and results[i]["should_autoreply"]
    ]
    print(f"replies to auto-submitted / list / bounce / out-of-office mail: {len(leaks)} {leaks}")
    withheld = [i for i in labels if not labels[i]["should_autoreply"]]
    right = sum(labels[i]["autoreply_reason"] == results[i]["autoreply_reason"] for i in withheld)
    print(f"autoreply_reason right where withheld: {right}/{len(withheld)}")


def report_secrets(
    messages: dict[str, dict], labels: dict[str, dict], results: dict[str, dict]
) -> None:
    secrets = [(i, s) for i in labels for s in labels[i]["secrets"]]
    removed = sum(s not in results[i]["redacted_text"] for i, s in secrets)
    flagged = [i for i in results if results[i]["secrets_found"]]
    right = [i for i in flagged if labels[i]["secrets"]]
    print(
        f"\nsecret recall: {removed}/{len(secrets)}; "
        f"precision: {len(right)}/{len(flagged)} messages flagged had a secret"
    )
    unchanged = [
        i for i in labels if not labels[i]["secrets"] and "[REDACTED" in results[i]["redacted_text"]
    ]
    print(f"false redactions in messages without secrets: {unchanged}")


def report_grouping(labels: dict[str, dict], results: dict[str, dict]) -> None:
    expected_dups = {frozenset((i, lab["dup_of"])) for i, lab in labels.items() if lab["dup_of"]}
    predicted_dups = {
        frozenset((i, r["duplicate_of"])) for i, r in results.items() if r["duplicate_of"]
    }
    print(f"\nduplicate pairs: {pair_f1(expected_dups, predicted_dups)}")
    print("  missed:", sorted(tuple(sorted(p)) for p in expected_dups - predicted_dups))
    print("  extra: ", sorted(tuple(sorted(p)) for p in predicted_dups - expected_dups))
    expected_groups: dict[str, list[str]] = defaultdict(list)
    predicted_groups: dict[str, list[str]] = defaultdict(list)
    for i in labels:
        if labels[i]["incident"]:
            expected_groups[labels[i]["incident"]].append(i)
        if results[i]["incident"]:
            predicted_groups[results[i]["incident"]].append(i)
    print(f"incident pairs: {pair_f1(group_pairs(expected_groups), group_pairs(predicted_groups))}")
    print("  predicted incidents:", {k: v for k, v in predicted_groups.items()})


def distinct_copies(messages: list[dict], total: int) -> list[dict]:
    copies = []
    for n in range(total):
        item = dict(messages[n % len(messages)])
        round_ = n // len(messages)
        item["id"] = f"{item['id']}-r{round_}"
        item["sender"] = f"{item['sender']}.r{round_}"
        # Each copy quotes its own UIDs and order numbers, or every copy would be the same
        # person repeating themselves, which no real stream of distinct messages is.
        item["text"] = (
            LONG_NUMBER.sub(lambda m, r=round_: str(int(m.group()) + r), item["text"])
            + f" (ref {n})"
        )
        headers = dict(item.get("headers") or {})
        if "Message-ID" in headers:
            headers["Message-ID"] = headers["Message-ID"].replace("@", f".r{round_}@")
        item["headers"] = headers
        item.pop("label", None)
        copies.append(item)
    return copies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEV_SET)
    parser.add_argument("--throughput", type=int, default=50_000, help="0 to skip")
    args = parser.parse_args()
    messages = [
        json.loads(line)
        for line in args.input.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    labels = {m["id"]: m["label"] for m in messages}
    output, elapsed = run_triage(args.input)
    results = {r["id"]: r for r in output}
    print(f"triaged {len(results)} messages in {elapsed:.2f} s (including start-up)")
    report_fields(labels, results)
    report_replies(labels, results)
    report_secrets({m["id"]: m for m in messages}, labels, results)
    report_grouping(labels, results)
    if args.throughput:
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "many.jsonl"
            copies = distinct_copies(messages, args.throughput)
            path.write_text(
                "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in copies), encoding="utf-8"
            )
            _, elapsed = run_triage(path)
        print(
            f"\nthroughput: {args.throughput} messages in {elapsed:.1f} s = "
            f"{args.throughput / elapsed:,.0f} messages/s on one core "
            f"(cpu count {os.cpu_count()}, whole command including start-up)"
        )


if __name__ == "__main__":
    main()
