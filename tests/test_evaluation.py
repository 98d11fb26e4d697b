"""`inbox-daemon triage` runs the real pipeline over a JSONL file and meets the triage bar."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
from collections import defaultdict
from pathlib import Path

import pytest

from inbox_daemon.cli import run_cli
from inbox_daemon.evaluation import settings_for, triage_file
from tests.conftest import CORPORA

DEV_SET = CORPORA / "triage-dev" / "messages.jsonl"
FIELDS = {
    "id",
    "language",
    "category",
    "priority",
    "team",
    "should_autoreply",
    "autoreply_reason",
    "redacted_text",
    "secrets_found",
    "duplicate_of",
    "incident",
    "reasons",
}
ROBOTS = {"auto-submitted", "bulk/list", "mailer-daemon bounce", "out-of-office"}


@pytest.fixture(scope="module")
def dev() -> tuple[dict[str, dict], dict[str, dict]]:
    messages = [json.loads(line) for line in DEV_SET.read_text(encoding="utf-8").splitlines()]
    out = io.StringIO()
    asyncio.run(
        triage_file(
            io.StringIO(DEV_SET.read_text(encoding="utf-8")), out, settings=settings_for(None)
        )
    )
    results = {r["id"]: r for r in map(json.loads, out.getvalue().splitlines())}
    return {m["id"]: m["label"] for m in messages}, results


def f1(expected: set[frozenset[str]], predicted: set[frozenset[str]]) -> float:
    hits = len(expected & predicted)
    if not hits:
        return 0.0
    precision, recall = hits / len(predicted), hits / len(expected)
    return 2 * precision * recall / (precision + recall)


def test_every_line_gets_one_result_with_every_field(dev) -> None:
    labels, results = dev
    assert list(results) == list(labels)
    assert all(set(result) == FIELDS for result in results.values())


def test_acknowledgment_decisions_meet_the_bar_and_never_answer_robots(dev) -> None:
    labels, results = dev
    right = sum(labels[i]["should_autoreply"] == results[i]["should_autoreply"] for i in labels)
    assert right / len(labels) >= 0.98
    robots = [i for i in labels if labels[i]["autoreply_reason"] in ROBOTS]
    assert robots
    assert not [i for i in robots if results[i]["should_autoreply"]]


def test_every_secret_is_redacted(dev) -> None:
    labels, results = dev
    secrets = [(i, s) for i in labels for s in labels[i]["secrets"]]
    assert secrets
    assert [(i, s) for i, s in secrets if s in results[i]["redacted_text"]] == []
    assert all(results[i]["secrets_found"] for i, _ in secrets)


def test_duplicates_and_incidents_are_grouped(dev) -> None:
    labels, results = dev
    expected = {frozenset((i, lab["dup_of"])) for i, lab in labels.items() if lab["dup_of"]}
    found = {frozenset((i, r["duplicate_of"])) for i, r in results.items() if r["duplicate_of"]}
    assert f1(expected, found) >= 0.9
    groups: dict[str, dict[str, list[str]]] = {
        "expected": defaultdict(list),
        "found": defaultdict(list),
    }
    for i in labels:
        if labels[i]["incident"]:
            groups["expected"][labels[i]["incident"]].append(i)
        if results[i]["incident"]:
            groups["found"][results[i]["incident"]].append(i)
    pairs = {
        name: {frozenset(p) for ids in g.values() for p in itertools.combinations(ids, 2)}
        for name, g in groups.items()
    }
    assert f1(pairs["expected"], pairs["found"]) >= 0.9


async def test_command_reads_a_file_and_rejects_a_bad_line(tmp_path: Path, capsys) -> None:
    good = tmp_path / "in.jsonl"
    good.write_text(
        json.dumps(
            {
                "id": "x1",
                "channel": "telegram",
                "subject": None,
                "text": "my withdrawal is stuck for 3 days",
                "sender": "@ana",
            }
        )
        + "\n"
    )
    assert await run_cli(["triage", "--input", str(good)]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["id"] == "x1"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x2"}\n')
    assert await run_cli(["triage", "--input", str(bad)]) == 2
    assert "line 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text",
    ["", "🙂🙂🙂", "https://example.com/x", "a" * 1_000_000, "broken \ud800 surrogate"],
)
async def test_hostile_text_is_triaged_without_error(text: str) -> None:
    line = json.dumps(
        {"id": "h", "channel": "email", "subject": "", "text": text, "sender": "h@example.net"}
    )
    out = io.StringIO()
    await triage_file(io.StringIO(line + "\n"), out, settings=settings_for(None))
    result = json.loads(out.getvalue())
    assert result["id"] == "h"


async def test_config_folder_may_be_given_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rules.toml").write_text(
        '[[rules]]\nname = "anything"\ncategory = "api"\npriority = "P3"\nkeywords = ["hello"]\n',
        encoding="utf-8",
    )
    line = {"id": "r", "channel": "telegram", "text": "hello there", "sender": "@r"}
    (tmp_path / "in.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert await run_cli(["triage", "--input", "in.jsonl", "--config", "rules"]) == 0
    assert json.loads(capsys.readouterr().out)["category"] == "api"
