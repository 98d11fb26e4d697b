"""The queue's JSON API against a real aiohttp server on loopback, over SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from inbox_daemon.agents import add_agent, issue_token
from inbox_daemon.audit import Actor
from inbox_daemon.config import Settings, settings_from_document
from inbox_daemon.interfaces import Classification, FeedbackRecord, Identity, IncidentLink
from inbox_daemon.storage.batch import BatchPlan, SenderLimits, commit_batch
from inbox_daemon.storage.engine import create_engine, database_url
from inbox_daemon.storage.repository import acquire_lease, load_cursor
from inbox_daemon.storage.schema import queue_events, queue_items
from inbox_daemon.web.app import make_app
from inbox_daemon.web.server import start_web
from tests.factories import message, record

pytestmark = pytest.mark.timeout(60)

#: The staff of these tests: name -> (team, role). Leads see every team's items.
STAFF = {
    "ana": ("finance", "lead"),
    "ben": ("finance", "lead"),
    "bo": ("risk_control", "lead"),
    "Zoë": ("customer_service", "lead"),
    "cara": ("customer_service", "agent"),
    **{f"agent-{n}": ("finance", "lead") for n in range(6)},
}
OPERATOR = Actor("cli:test", "cli test@localhost")
SLA = {"P1": 900, "P2": 14400, "P3": 86400, "P4": 259200}
MAX_BODY_BYTES = 4096
ROUTES = [
    ("GET", "/api/v1/me"),
    ("GET", "/api/v1/items"),
    ("GET", "/api/v1/export"),
    ("GET", "/api/v1/items/FB-0000-0000"),
    ("POST", "/api/v1/items/FB-0000-0000/claim"),
    ("POST", "/api/v1/items/claim-next"),
    ("POST", "/api/v1/items/FB-0000-0000/resolve"),
    ("POST", "/api/v1/items/FB-0000-0000/reassign"),
    ("GET", "/api/v1/incidents"),
    ("GET", "/api/v1/incidents/1"),
]


def feedback(
    n: int,
    *,
    priority: str = "P2",
    team: str = "finance",
    sender: str = "alice@example.net",
    language: str = "en",
    category: str = "deposit_withdrawal",
    text: str = "My BTC withdrawal has been pending for two days.",
    **changes: Any,
) -> FeedbackRecord:
    """Record ``n``, received ``n`` minutes after the first, in a thread of its own."""
    msg = message(
        f"m{n}@example.net",
        thread_key=f"thread-{n}",
        sender=Identity("email", sender, sender, sender.split("@")[0].title()),
        subject=f"Problem {n}",
        text=text,
        full_text=f"{text}\n\n> quoted history",
        received_at=datetime(2026, 11, 23, 9, tzinfo=UTC) + timedelta(minutes=n),
    )
    labels = Classification(category, priority, team, (f"priority {priority}: rule test-{n}",))
    return replace(record(msg), classification=labels, language=language, **changes)


async def ingest(engine: AsyncEngine, *records: FeedbackRecord) -> list[str]:
    """Store ``records`` the way the daemon does: one batch commit."""
    now = datetime.now(UTC)
    assert await acquire_lease(engine, "support-mail", "test", ttl_s=3600, now=now)
    _, version = await load_cursor(engine, "support-mail")
    plan = BatchPlan(
        "support-mail", "test", records, (), version, {"n": 1}, SLA, SenderLimits(99, 99)
    )
    await commit_batch(engine, plan, now=now)
    return [r.reference for r in records]


async def snapshot(engine: AsyncEngine) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    async with engine.connect() as conn:
        items = (await conn.execute(select(queue_items).order_by(queue_items.c.id))).all()
        events = (await conn.execute(select(queue_events).order_by(queue_events.c.id))).all()
    return [tuple(row) for row in items], [tuple(row) for row in events]


@pytest.fixture
def settings(tmp_path: Path, database: str) -> Settings:
    document = {
        "config_version": 1,
        "storage": {"url": database},
        "web": {"max_body_bytes": MAX_BODY_BYTES},
    }
    return settings_from_document(document, tmp_path / "inbox.toml")


@pytest.fixture
async def tokens(engine: AsyncEngine) -> dict[str, str]:
    """The agents of :data:`STAFF`, each with a token of their own: name -> token."""
    issued = {}
    for name, (team, role) in STAFF.items():
        await add_agent(engine, name, team, role=role, actor=OPERATOR)
        issued[name] = (await issue_token(engine, name, ttl_days=1, actor=OPERATOR)).token
    return issued


def signed(tokens: dict[str, str], name: str) -> dict[str, str]:
    """The headers of a request signed in as ``name``."""
    return {"Authorization": f"Bearer {tokens[name]}"}


@pytest.fixture
async def url(engine: AsyncEngine, settings: Settings) -> AsyncIterator[str]:
    async with AsyncExitStack() as stack:
        server = await start_web(stack, engine, settings, port=0)
        yield server.url


@pytest.fixture
async def client(url: str, tokens: dict[str, str]) -> AsyncIterator[aiohttp.ClientSession]:
    """A session signed in as ana, a lead (who sees every team's items)."""
    headers = signed(tokens, "ana")
    async with aiohttp.ClientSession(base_url=url, headers=headers) as session:
        yield session


@pytest.fixture
async def queue(engine: AsyncEngine) -> dict[str, str]:
    """Five items (one of them in an incident with another) and a repeat with no item."""
    eth = IncidentLink("eth-withdrawals", "ETH withdrawals stuck")
    refs = await ingest(
        engine,
        feedback(1, priority="P1", sender="alice@example.net"),
        feedback(2, sender="bob@example.net", incident=eth),
        feedback(3, sender="carol@example.net", language="de", incident=eth),
        feedback(
            4,
            priority="P3",
            team="risk_control",
            category="account_security",
            sender="dave@example.net",
        ),
        feedback(
            5,
            priority="P4",
            team="customer_service",
            sender="erin@example.net",
            text="<script>alert(1)</script>",
        ),
    )
    [repeat] = await ingest(engine, feedback(6, sender="alice@example.net", duplicate_of=refs[0]))
    return dict(
        zip(("p1", "eth1", "eth2", "risk", "script", "repeat"), [*refs, repeat], strict=True)
    )


async def call(
    client: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    async with client.request(method, path, **kwargs) as response:
        assert response.content_type == "application/json", await response.text()
        return response.status, await response.json()


def assert_error(
    status: int, body: Any, expected_status: int, code: str, field: str | None
) -> None:
    assert status == expected_status, body
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"].get("field") == field, body


# --- probes and authentication -------------------------------------------------------------


async def test_health_and_readiness_answer_without_a_token(url: str) -> None:
    async with aiohttp.ClientSession(base_url=url) as anonymous:
        assert await call(anonymous, "GET", "/healthz") == (200, {"status": "ok"})
        assert await call(anonymous, "GET", "/readyz") == (200, {"status": "ready"})


async def test_readiness_is_503_on_an_unmigrated_database(
    tmp_path: Path, settings: Settings
) -> None:
    engine = create_engine(database_url(f"sqlite:///{tmp_path / 'blank.db'}", tmp_path))
    try:
        async with AsyncExitStack() as stack:
            server = await start_web(stack, engine, settings, port=0)
            async with aiohttp.ClientSession(base_url=server.url) as anonymous:
                status, body = await call(anonymous, "GET", "/readyz")
    finally:
        await engine.dispose()
    assert_error(status, body, 503, "not_migrated", None)
    assert "inbox-daemon migrate" in body["error"]["message"]


async def test_every_api_route_refuses_a_missing_or_wrong_token(
    url: str, engine: AsyncEngine, queue: dict[str, str], tokens: dict[str, str]
) -> None:
    before = await snapshot(engine)
    token = tokens["ana"]
    wrong_secret = token[:-1] + ("B" if token.endswith("A") else "A")  # well formed, wrong
    async with aiohttp.ClientSession(base_url=url) as anonymous:
        for method, path in ROUTES:
            path = path.replace("FB-0000-0000", queue["p1"])
            for headers, says in (
                ({}, "missing bearer token"),
                ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing bearer token"),
                ({"Authorization": f"Bearer {token}x"}, "not valid"),
                ({"Authorization": f"Bearer {wrong_secret}"}, "not valid"),
            ):
                async with anonymous.request(method, path, headers=headers, json={}) as response:
                    body = await response.json()
                    assert_error(response.status, body, 401, "unauthorized", "Authorization")
                    assert says in body["error"]["message"]
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert await snapshot(engine) == before


def test_a_shared_token_in_the_config_is_refused_with_the_way_forward(tmp_path: Path) -> None:
    from inbox_daemon.errors import ConfigError

    document = {"config_version": 1, "web": {"token_env": "INBOX_WEB_TOKEN"}}
    with pytest.raises(ConfigError, match=r"web.*token_env.*agents token NAME"):
        settings_from_document(document, tmp_path / "inbox.toml")


# --- listing -------------------------------------------------------------------------------


async def test_items_are_listed_most_urgent_first(
    client: aiohttp.ClientSession, queue: dict[str, str]
) -> None:
    status, body = await call(client, "GET", "/api/v1/items")
    assert status == 200
    assert [item["reference"] for item in body["items"]] == [
        queue[name] for name in ("p1", "eth1", "eth2", "risk", "script")
    ]
    assert body["next_cursor"] is None
    first = body["items"][0]
    assert (first["priority"], first["status"], first["team"]) == ("P1", "new", "finance")
    assert datetime.fromisoformat(first["due_at"]) - datetime.fromisoformat(
        first["created_at"]
    ) == timedelta(seconds=SLA["P1"])
    assert body["items"][-1]["text"] == "<script>alert(1)</script>"


async def test_listing_filters_by_every_field(
    client: aiohttp.ClientSession, queue: dict[str, str], tokens: dict[str, str]
) -> None:
    _, incidents = await call(client, "GET", "/api/v1/incidents")
    incident_id = incidents["incidents"][0]["id"]
    await call(client, "POST", f"/api/v1/items/{queue['risk']}/claim", headers=signed(tokens, "bo"))
    cases = {
        "team=risk_control": ["risk"],
        "priority=P2": ["eth1", "eth2"],
        "status=claimed": ["risk"],
        "status=open": ["p1", "eth1", "eth2", "risk", "script"],
        "status=new&team=finance": ["p1", "eth1", "eth2"],
        "channel=email&language=de": ["eth2"],
        "category=account_security": ["risk"],
        f"incident={incident_id}": ["eth1", "eth2"],
    }
    for query, expected in cases.items():
        status, body = await call(client, "GET", f"/api/v1/items?{query}")
        assert status == 200, body
        assert [item["reference"] for item in body["items"]] == [queue[n] for n in expected], query


async def test_cursor_pages_visit_every_item_once(
    client: aiohttp.ClientSession, queue: dict[str, str]
) -> None:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, body = await call(client, "GET", f"/api/v1/items?{query}")
        assert status == 200
        assert len(body["items"]) <= 2
        seen += [item["reference"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [queue[name] for name in ("p1", "eth1", "eth2", "risk", "script")]


@pytest.mark.parametrize(
    ("query", "field", "says"),
    [
        ("priority=P9", "priority", "P9"),
        ("status=done", "status", "done"),
        ("team=not%20a%20team", "team", "not a team"),
        ("language=%3Cscript%3E", "language", "<script>"),
        ("incident=abc", "incident", "abc"),
        ("incident=0", "incident", "0"),
        ("limit=0", "limit", "1 to 500"),
        ("limit=501", "limit", "1 to 500"),
        ("limit=ten", "limit", "ten"),
        ("cursor=bm90LWEtY3Vyc29y", "cursor", "not a cursor"),
        ("colour=red", "colour", "unknown filter"),
        ("team=finance&team=risk_control", "team", "more than once"),
        ("team=", "team", "leave it out"),
        ("team=%20finance", "team", "surrounding spaces"),
        ("incident=1_0", "incident", "1_0"),
    ],
)
async def test_a_bad_filter_is_a_400_naming_it(
    client: aiohttp.ClientSession, queue: dict[str, str], query: str, field: str, says: str
) -> None:
    status, body = await call(client, "GET", f"/api/v1/items?{query}")
    assert_error(status, body, 400, "invalid_input", field)
    assert says in body["error"]["message"]


# --- one item ------------------------------------------------------------------------------


async def test_an_item_shows_its_record_acknowledgment_thread_and_history(
    client: aiohttp.ClientSession, queue: dict[str, str], tokens: dict[str, str]
) -> None:
    await call(client, "POST", f"/api/v1/items/{queue['p1']}/claim", headers=signed(tokens, "Zoë"))
    status, detail = await call(client, "GET", f"/api/v1/items/{queue['p1'].lower()}")
    assert status == 200
    assert detail["item"]["reference"] == queue["p1"]
    assert detail["item"]["text"] == "My BTC withdrawal has been pending for two days."
    assert detail["full_text"].endswith("> quoted history")
    assert detail["reasons"] == ["priority P1: rule test-1"]
    assert detail["acknowledgment"]["decision"] == "send"
    assert detail["acknowledgment"]["outbox_state"] == "pending"
    [earlier] = detail["thread"]
    assert (earlier["reference"], earlier["relation"]) == (queue["repeat"], "sender")
    assert earlier["duplicate_of"] == queue["p1"]
    [claimed] = detail["history"]
    assert (claimed["actor"], claimed["action"], claimed["to_state"]) == ("Zoë", "claim", "claimed")


async def test_an_item_of_an_incident_shows_the_incident(
    client: aiohttp.ClientSession, queue: dict[str, str]
) -> None:
    _, detail = await call(client, "GET", f"/api/v1/items/{queue['eth2']}")
    assert detail["incident"]["title"] == "ETH withdrawals stuck"
    assert detail["incident"]["report_count"] == 2


async def test_unknown_and_malformed_references_are_named(
    client: aiohttp.ClientSession, queue: dict[str, str]
) -> None:
    status, body = await call(client, "GET", "/api/v1/items/FB-0000-0000")
    assert_error(status, body, 404, "not_found", None)
    assert "FB-0000-0000" in body["error"]["message"]
    status, body = await call(client, "GET", "/api/v1/items/nonsense")
    assert_error(status, body, 400, "invalid_input", "reference")
    status, body = await call(client, "GET", f"/api/v1/items/{queue['repeat']}")
    assert_error(status, body, 404, "not_found", None)
    assert f"repeats {queue['p1']}" in body["error"]["message"]
    status, body = await call(client, "GET", f"/api/v1/items/{queue['p1']}?full=1")
    assert_error(status, body, 400, "invalid_input", "full")


# --- claims and resolution -----------------------------------------------------------------


async def test_claim_then_resolve_by_the_holder(
    client: aiohttp.ClientSession,
    engine: AsyncEngine,
    queue: dict[str, str],
    tokens: dict[str, str],
) -> None:
    ref = queue["eth1"]
    status, item = await call(client, "POST", f"/api/v1/items/{ref}/claim")
    assert status == 200
    assert (item["status"], item["assignee"]) == ("claimed", "ana")
    assert datetime.fromisoformat(item["claim_expires_at"]) > datetime.now(UTC)

    before = await snapshot(engine)
    status, body = await call(
        client,
        "POST",
        f"/api/v1/items/{ref}/resolve",
        json={"note": "mine"},
        headers=signed(tokens, "ben"),
    )
    assert_error(status, body, 409, "conflict", None)
    assert "claimed by ana" in body["error"]["message"]
    assert await snapshot(engine) == before

    status, item = await call(
        client, "POST", f"/api/v1/items/{ref}/resolve", json={"note": "refunded"}
    )
    assert status == 200
    assert (item["status"], item["resolution_note"]) == ("resolved", "refunded")


async def test_claiming_or_resolving_a_resolved_item_is_a_conflict(
    client: aiohttp.ClientSession,
    engine: AsyncEngine,
    queue: dict[str, str],
    tokens: dict[str, str],
) -> None:
    ref = queue["risk"]
    status, _ = await call(client, "POST", f"/api/v1/items/{ref}/resolve")
    assert status == 200
    before = await snapshot(engine)
    for action in ("claim", "resolve"):
        status, body = await call(
            client, "POST", f"/api/v1/items/{ref}/{action}", headers=signed(tokens, "ben")
        )
        assert_error(status, body, 409, "conflict", None)
        assert "resolved" in body["error"]["message"]
    assert await snapshot(engine) == before


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "field"),
    [
        # Who acts is whom the token signs in; a body naming someone is refused.
        ({"json": {"agent": "ben"}}, 400, "invalid_input", "agent"),
        ({"json": {"priority": "P1"}}, 400, "invalid_input", "priority"),
        ({"json": ["ana"]}, 400, "invalid_input", "body"),
        (
            {"data": b"{agent: ana}", "headers": {"Content-Type": "application/json"}},
            400,
            "invalid_input",
            "body",
        ),
        (
            {
                "data": b"agent=ana",
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            },
            415,
            "unsupported_media_type",
            "body",
        ),
    ],
)
async def test_a_bad_claim_request_is_refused_and_changes_nothing(
    client: aiohttp.ClientSession,
    engine: AsyncEngine,
    queue: dict[str, str],
    kwargs: dict[str, Any],
    status: int,
    code: str,
    field: str,
) -> None:
    before = await snapshot(engine)
    got, body = await call(client, "POST", f"/api/v1/items/{queue['p1']}/claim", **kwargs)
    assert_error(got, body, status, code, field)
    assert await snapshot(engine) == before


async def test_an_oversized_body_is_413_and_changes_nothing(
    client: aiohttp.ClientSession, engine: AsyncEngine, queue: dict[str, str]
) -> None:
    before = await snapshot(engine)
    big = {"note": "x" * MAX_BODY_BYTES}
    status, body = await call(client, "POST", f"/api/v1/items/{queue['p1']}/resolve", json=big)
    assert_error(status, body, 413, "payload_too_large", "body")
    assert str(MAX_BODY_BYTES) in body["error"]["message"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: cut off while read
        yield b'{"note": "'
        for _ in range(8):
            yield b"x" * 1024
        yield b'"}'

    status, body = await call(
        client,
        "POST",
        f"/api/v1/items/{queue['p1']}/resolve",
        data=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert_error(status, body, 413, "payload_too_large", "body")
    assert await snapshot(engine) == before


async def test_claim_next_takes_the_most_urgent_waiting_item_of_a_team(
    client: aiohttp.ClientSession, queue: dict[str, str]
) -> None:
    taken = []
    for _ in range(3):
        status, item = await call(
            client, "POST", "/api/v1/items/claim-next", json={"team": "finance"}
        )
        assert status == 200
        taken.append(item["reference"])
    assert taken == [queue["p1"], queue["eth1"], queue["eth2"]]
    status, body = await call(client, "POST", "/api/v1/items/claim-next", json={"team": "finance"})
    assert_error(status, body, 404, "not_found", None)
    assert "finance" in body["error"]["message"]
    status, body = await call(client, "POST", "/api/v1/items/claim-next", json={})
    assert_error(status, body, 400, "invalid_input", "team")


async def test_two_agents_claiming_one_item_at_once_exactly_one_wins(
    client: aiohttp.ClientSession,
    engine: AsyncEngine,
    queue: dict[str, str],
    tokens: dict[str, str],
) -> None:
    ref = queue["p1"]
    agents = [f"agent-{n}" for n in range(6)]
    results = await asyncio.gather(
        *(
            call(client, "POST", f"/api/v1/items/{ref}/claim", headers=signed(tokens, agent))
            for agent in agents
        )
    )
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [409] * (len(agents) - 1)
    [winner] = [body["assignee"] for status, body in results if status == 200]
    _, detail = await call(client, "GET", f"/api/v1/items/{ref}")
    assert detail["item"]["assignee"] == winner
    assert [(e["action"], e["actor"]) for e in detail["history"]] == [("claim", winner)]


# --- incidents -----------------------------------------------------------------------------


async def test_incidents_are_listed_and_shown_with_their_reports(
    client: aiohttp.ClientSession, queue: dict[str, str]
) -> None:
    await call(client, "POST", f"/api/v1/items/{queue['eth1']}/claim")
    status, body = await call(client, "GET", "/api/v1/incidents")
    assert status == 200
    [incident] = body["incidents"]
    assert incident["title"] == "ETH withdrawals stuck"
    assert incident["report_count"] == 2
    assert incident["items"] == {"new": 1, "claimed": 1}

    status, detail = await call(client, "GET", f"/api/v1/incidents/{incident['id']}")
    assert status == 200
    assert detail["incident"] == incident
    reports = {report["reference"]: report for report in detail["reports"]}
    assert list(reports) == [queue["eth2"], queue["eth1"]]  # newest first
    assert (reports[queue["eth1"]]["status"], reports[queue["eth1"]]["assignee"]) == (
        "claimed",
        "ana",
    )

    status, body = await call(client, "GET", f"/api/v1/incidents/{incident['id'] + 99}")
    assert_error(status, body, 404, "not_found", None)
    status, body = await call(client, "GET", "/api/v1/incidents/eth")
    assert_error(status, body, 400, "invalid_input", "incident_id")
    status, body = await call(client, "GET", "/api/v1/incidents?limit=0")
    assert_error(status, body, 400, "invalid_input", "limit")
    status, body = await call(client, "GET", "/api/v1/incidents?status=open")
    assert_error(status, body, 400, "invalid_input", "status")


async def test_unknown_paths_and_methods_are_json_errors(client: aiohttp.ClientSession) -> None:
    status, body = await call(client, "GET", "/api/v1/tickets")
    assert_error(status, body, 404, "not_found", None)
    async with client.delete("/api/v1/items/FB-0000-0000") as response:
        body = await response.json()
        assert_error(response.status, body, 405, "method_not_allowed", None)
        assert "GET" in response.headers["Allow"]


# --- the OpenAPI document ------------------------------------------------------------------


async def openapi(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(base_url=url) as anonymous:  # public: it holds no data
        status, document = await call(anonymous, "GET", "/api/openapi.json")
    assert status == 200
    return document


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }


async def test_the_openapi_document_is_valid_and_names_every_route(
    url: str, engine: AsyncEngine, settings: Settings
) -> None:
    from openapi_spec_validator import validate

    document = await openapi(url)
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert documented_operations(document) == {
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/items"),
        ("GET", "/api/v1/export"),
        ("GET", "/api/v1/items/{reference}"),
        ("POST", "/api/v1/items/{reference}/claim"),
        ("POST", "/api/v1/items/claim-next"),
        ("POST", "/api/v1/items/{reference}/resolve"),
        ("POST", "/api/v1/items/{reference}/reassign"),
        ("GET", "/api/v1/incidents"),
        ("GET", "/api/v1/incidents/{incident_id}"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
    }
    served = {
        (route.method, route.resource.canonical)
        for route in make_app(engine, settings).router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/v1")
    }
    assert served == {op for op in documented_operations(document) if "/api/v1" in op[1]}


class ResponseChecker:
    """Validates real responses against the schema the document gives their status."""

    BASE = "urn:inbox-daemon:openapi"

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.registry = Registry().with_resource(self.BASE, DRAFT202012.create_resource(document))
        self.checked: set[tuple[str, str, int]] = set()

    def check(self, method: str, template: str, status: int, body: Any) -> None:
        path = ["paths", template, method.lower(), "responses"]
        assert str(status) in self.at(path), f"{method} {template}: {status} is undocumented"
        path.append(str(status))
        if "$ref" in self.at(path):
            path = self.at(path)["$ref"].removeprefix("#/").split("/")
        pointer = "/".join(
            part.replace("~", "~0").replace("/", "~1")
            for part in [*path, "content", "application/json", "schema"]
        )
        validator = jsonschema.Draft202012Validator(
            {"$ref": f"{self.BASE}#/{pointer}"},
            registry=self.registry,
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )
        validator.validate(body)
        self.checked.add((method, template, status))

    def at(self, path: list[str]) -> Any:
        node: Any = self.document
        for part in path:
            node = node[part]
        return node


async def test_real_responses_match_the_openapi_document(
    url: str, client: aiohttp.ClientSession, queue: dict[str, str], tokens: dict[str, str]
) -> None:
    checker = ResponseChecker(await openapi(url))
    _, incidents = await call(client, "GET", "/api/v1/incidents")
    incident = incidents["incidents"][0]["id"]
    ref, other, spare = queue["eth1"], queue["p1"], queue["script"]
    ben, cara = signed(tokens, "ben"), signed(tokens, "cara")
    text = {"data": "x", "headers": {"Content-Type": "text/plain"}}
    claim, resolve = "/api/v1/items/{reference}/claim", "/api/v1/items/{reference}/resolve"
    reassign, nxt = "/api/v1/items/{reference}/reassign", "/api/v1/items/claim-next"
    exchanges = [
        ("GET", "/healthz", "/healthz", {}),
        ("GET", "/readyz", "/readyz", {}),
        ("GET", "/api/v1/me", "/api/v1/me", {}),
        ("GET", "/api/v1/items", "/api/v1/items?limit=2", {}),
        ("GET", "/api/v1/items", "/api/v1/items?priority=P7", {}),
        ("GET", "/api/v1/export", "/api/v1/export?team=finance", {}),
        ("GET", "/api/v1/export", "/api/v1/export?limit=2", {}),
        ("GET", "/api/v1/items/{reference}", f"/api/v1/items/{ref}", {}),
        ("GET", "/api/v1/items/{reference}", "/api/v1/items/FB-0000-0000", {}),
        ("GET", "/api/v1/items/{reference}", "/api/v1/items/FB-1", {}),
        ("POST", claim, f"/api/v1/items/{ref}/claim", {}),
        ("POST", claim, f"/api/v1/items/{ref}/claim", {"headers": ben}),
        ("POST", claim, "/api/v1/items/FB-0000-0000/claim", {"headers": ben}),
        ("POST", claim, f"/api/v1/items/{ref}/claim", {"json": {"urgent": "yes"}}),
        ("POST", claim, f"/api/v1/items/{ref}/claim", text),
        ("POST", claim, f"/api/v1/items/{ref}/claim", {"json": {"x": "x" * MAX_BODY_BYTES}}),
        ("POST", resolve, f"/api/v1/items/{ref}/resolve", {"json": {"note": "done"}}),
        ("POST", resolve, f"/api/v1/items/{ref}/resolve", {}),
        ("POST", resolve, f"/api/v1/items/{ref}/resolve", {"json": {"agent": "ana"}}),
        ("POST", resolve, f"/api/v1/items/{ref}/resolve", text),
        (
            "POST",
            resolve,
            f"/api/v1/items/{ref}/resolve",
            {"json": {"note": "x" * MAX_BODY_BYTES}},
        ),
        ("POST", resolve, "/api/v1/items/FB-0000-0000/resolve", {}),
        ("POST", reassign, f"/api/v1/items/{spare}/reassign", {"json": {"assignee": "Zoë"}}),
        ("POST", reassign, f"/api/v1/items/{spare}/reassign", {"json": {"assignee": "Zoë"}}),
        ("POST", reassign, f"/api/v1/items/{spare}/reassign", {"json": {"team": "x y"}}),
        ("POST", reassign, f"/api/v1/items/{spare}/reassign", {"json": {}, "headers": cara}),
        ("POST", reassign, "/api/v1/items/FB-0000-0000/reassign", {"json": {"team": "ops"}}),
        ("POST", reassign, f"/api/v1/items/{spare}/reassign", text),
        (
            "POST",
            reassign,
            f"/api/v1/items/{spare}/reassign",
            {"json": {"team": "x" * MAX_BODY_BYTES}},
        ),
        ("POST", nxt, nxt, {"json": {"team": "risk_control"}}),
        ("POST", nxt, nxt, {"json": {"team": "risk_control"}}),
        ("POST", nxt, nxt, {"json": {}}),
        ("POST", nxt, nxt, text),
        ("POST", nxt, nxt, {"json": {"team": "x" * MAX_BODY_BYTES}}),
        ("GET", "/api/v1/incidents", "/api/v1/incidents", {}),
        ("GET", "/api/v1/incidents", "/api/v1/incidents?limit=-1", {}),
        ("GET", "/api/v1/incidents/{incident_id}", f"/api/v1/incidents/{incident}", {}),
        ("GET", "/api/v1/incidents/{incident_id}", "/api/v1/incidents/9999", {}),
        ("GET", "/api/v1/incidents/{incident_id}", "/api/v1/incidents/x", {}),
    ]
    for method, template, path, kwargs in exchanges:
        status, body = await call(client, method, path, **kwargs)
        checker.check(method, template, status, body)
    # Resolving an item someone else holds: 409, documented too.
    await call(client, "POST", f"/api/v1/items/{other}/claim")
    status, body = await call(client, "POST", f"/api/v1/items/{other}/resolve", headers=ben)
    checker.check("POST", resolve, status, body)
    async with aiohttp.ClientSession(base_url=url) as anonymous:
        for method, template in ROUTES:
            status, body = await call(anonymous, method, template.replace("FB-0000-0000", ref))
            documented = template.replace("FB-0000-0000", "{reference}").replace(
                "/incidents/1", "/incidents/{incident_id}"
            )
            checker.check(method, documented, status, body)
    documented_statuses = {
        (method, path, int(status))
        for path, operations in checker.document["paths"].items()
        for method_lower, operation in operations.items()
        for status in operation["responses"]
        for method in [method_lower.upper()]
        if status != "503"
    }
    assert documented_statuses - checker.checked == set()


@pytest.mark.timeout(120)
async def test_schemathesis_finds_nothing_wrong_with_the_running_app(
    engine: AsyncEngine,
    settings: Settings,
    client: aiohttp.ClientSession,
    queue: dict[str, str],
    tmp_path: Path,
    tokens: dict[str, str],
) -> None:
    _, incidents = await call(client, "GET", "/api/v1/incidents")
    # A body limit that holds the longest note the document allows even when each of its
    # 10,000 characters is escaped as a surrogate pair (12 bytes): that note is a 200 or a
    # 400, never a 413 that the document cannot promise for a valid length.
    web = settings.web.model_copy(update={"max_body_bytes": 256 * 1024})
    async with AsyncExitStack() as stack:
        server = await start_web(stack, engine, settings.model_copy(update={"web": web}), port=0)
        output = await schemathesis(server.url, tokens["ana"], queue["eth1"], incidents, tmp_path)
    assert "12 selected / 12 total" in output


async def schemathesis(url: str, token: str, reference: str, incidents: Any, tmp_path: Path) -> str:
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        "[parameters]\n"
        f'"path.reference" = "{reference}"\n'
        f'"path.incident_id" = {incidents["incidents"][0]["id"]}\n',
        encoding="utf-8",
    )
    # positive_data_acceptance is left out: OpenAPI cannot say that a cursor must be one the
    # API returned, nor that a reassignment's assignee must be an agent; refusing those
    # well-typed inputs with a 400 is the documented behaviour.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from schemathesis.cli import schemathesis; schemathesis()",
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{url}api/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        "15",
        "--seed",
        "20261123",
        "--workers",
        "1",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=100)
    assert process.returncode == 0, output.decode()
    return output.decode()


# --- the commands that serve it ------------------------------------------------------------


async def inbox_daemon(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "inbox_daemon.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )


async def read_until(stream: asyncio.StreamReader, marker: str, timeout_s: float) -> list[str]:
    lines: list[str] = []
    async with asyncio.timeout(timeout_s):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"stream ended before {marker!r}: {lines}")
            lines.append(line.rstrip("\n"))
            if marker in line:
                return lines


def web_config(tmp_path: Path, *, enabled: bool) -> Path:
    path = tmp_path / "inbox.toml"
    path.write_text(
        f"""
config_version = 1
[storage]
url = "sqlite:///./inbox.db"
[service]
log_format = "json"
log_level = "INFO"
[web]
enabled = {str(enabled).lower()}
port = 0
""",
        encoding="utf-8",
    )
    return path


async def stop(process: asyncio.subprocess.Process, signum: int) -> tuple[int, str]:
    process.send_signal(signum)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def cli_output(*args: str) -> str:
    process = await inbox_daemon(*args, env={})
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def test_web_command_serves_agents_the_cli_adds_until_sigterm(tmp_path: Path) -> None:
    path = web_config(tmp_path, enabled=False)
    config = ("--config", str(path))
    await cli_output("migrate", *config)
    await cli_output("agents", "add", "ana", "--team", "finance", *config)
    token = (await cli_output("agents", "token", "ana", *config)).strip()
    service = await inbox_daemon("web", *config, env={})
    assert service.stdout is not None
    try:
        [line] = await read_until(service.stdout, "serving", timeout_s=20)
        url = line.rsplit(" ", 1)[-1]
        async with aiohttp.ClientSession(base_url=url) as session:
            assert await call(session, "GET", "/readyz") == (200, {"status": "ready"})
            headers = {"Authorization": f"Bearer {token}"}
            status, body = await call(session, "GET", "/api/v1/items", headers=headers)
            assert (status, body) == (200, {"items": [], "next_cursor": None})
            status, body = await call(session, "GET", "/api/v1/me", headers=headers)
            assert body == {"name": "ana", "team": "finance", "role": "agent"}
            await cli_output("agents", "token", "ana", "--revoke", "all", *config)
            status, body = await call(session, "GET", "/api/v1/me", headers=headers)
            assert_error(status, body, 401, "unauthorized", "Authorization")
            assert "revoked" in body["error"]["message"]
    finally:
        code, stderr = await stop(service, signal.SIGTERM)
    assert code == 0, stderr


async def test_run_serves_the_api_when_web_is_enabled_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    path = web_config(tmp_path, enabled=True)
    migrate = await inbox_daemon("migrate", "--config", str(path), env={})
    assert await migrate.wait() == 0
    service = await inbox_daemon("run", "--config", str(path), env={})
    assert service.stderr is not None
    try:
        lines = await read_until(service.stderr, "web server listening", timeout_s=20)
        url = json.loads(lines[-1])["message"].rsplit(" ", 1)[-1]
        async with aiohttp.ClientSession(base_url=url) as session:
            assert await call(session, "GET", "/healthz") == (200, {"status": "ok"})
    finally:
        code, stderr = await stop(service, signal.SIGTERM)
    assert code == 0, stderr


@pytest.mark.timeout(120)
async def test_demo_serve_leaves_the_page_up_with_the_demo_data(tmp_path: Path) -> None:
    demo = await inbox_daemon("demo", "--serve", "--keep", str(tmp_path), env={})
    assert demo.stdout is not None
    try:
        lines = await read_until(demo.stdout, "token", timeout_s=90)
        url = next(line for line in lines if "THE QUEUE PAGE:" in line).split()[-1]
        token = lines[-1].split()[-1]
        assert url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession(base_url=url) as session:
            async with session.get("/") as page:
                assert page.status == 200
                assert "Support queue" in await page.text()
            headers = {"Authorization": f"Bearer {token}"}
            status, body = await call(session, "GET", "/api/v1/items?limit=100", headers=headers)
        assert status == 200
        assert len(body["items"]) == 27  # 19 mails and 8 posts and DMs on X
        assert {item["priority"] for item in body["items"]} == {"P1", "P2", "P3", "P4"}
    finally:
        code, stderr = await stop(demo, signal.SIGINT)
    assert code == 0, stderr
