"""Agents and their tokens, team visibility and the audit log: against the real API server,
the command line and the database, on SQLite and PostgreSQL."""

from __future__ import annotations

import getpass
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from inbox_daemon import agents
from inbox_daemon.agents import (
    AgentConflictError,
    AuthenticationError,
    InvalidAgentInputError,
    UnknownAgentError,
)
from inbox_daemon.audit import Actor, list_entries
from inbox_daemon.cli import run_cli
from inbox_daemon.config import Settings, settings_from_document
from inbox_daemon.interfaces import Classification, FeedbackRecord, Identity, IncidentLink
from inbox_daemon.storage.batch import BatchPlan, SenderLimits, commit_batch
from inbox_daemon.storage.repository import acquire_lease, load_cursor
from inbox_daemon.storage.schema import agent_tokens, audit_log
from inbox_daemon.web.server import start_web
from tests.factories import message, record

SLA = {"P1": 900, "P2": 14400, "P3": 86400, "P4": 259200}
OPERATOR = Actor("cli:test", "cli test@localhost")
#: name -> (team, role)
STAFF = {
    "fiona": ("finance", "agent"),
    "carl": ("customer_service", "agent"),
    "rita": ("risk_control", "agent"),
    "lena": ("customer_service", "lead"),
    "adam": ("compliance", "admin"),
}


def feedback(
    n: int, *, team: str, category: str = "general", priority: str = "P2"
) -> FeedbackRecord:
    msg = message(
        f"staff-{n}@example.net",
        thread_key=f"staff-thread-{n}",
        sender=Identity("email", f"p{n}@example.net", f"p{n}@example.net", f"Person {n}"),
        subject=f"Problem {n}",
    )
    labels = Classification(category, priority, team, (f"rule {n}",))
    return replace(record(msg), classification=labels)


async def ingest(engine: AsyncEngine, *records: FeedbackRecord) -> list[str]:
    now = datetime.now(UTC)
    assert await acquire_lease(engine, "support-mail", "test", ttl_s=3600, now=now)
    _, version = await load_cursor(engine, "support-mail")
    plan = BatchPlan(
        "support-mail", "test", records, (), version, {"n": 1}, SLA, SenderLimits(99, 99)
    )
    await commit_batch(engine, plan, now=now)
    return [r.reference for r in records]


def settings_for(database: str, tmp_path: Path, **sections: Any) -> Settings:
    document = {"config_version": 1, "storage": {"url": database}, **sections}
    return settings_from_document(document, tmp_path / "inbox.toml")


@pytest.fixture
async def tokens(engine: AsyncEngine) -> dict[str, str]:
    issued = {}
    for name, (team, role) in STAFF.items():
        await agents.add_agent(engine, name, team, role=role, actor=OPERATOR)
        issued[name] = (await agents.issue_token(engine, name, ttl_days=1, actor=OPERATOR)).token
    return issued


@pytest.fixture
async def items(engine: AsyncEngine) -> dict[str, str]:
    """One item per team, a KYC item of customer service, and two finance reports of one
    incident."""
    incident = IncidentLink("eth-stuck", "ETH withdrawals stuck")
    refs = await ingest(
        engine,
        feedback(1, team="finance"),
        feedback(2, team="risk_control", priority="P1"),
        feedback(3, team="customer_service"),
        feedback(4, team="compliance"),
        feedback(5, team="customer_service", category="kyc"),
        replace(feedback(6, team="finance"), incident=incident),
    )
    return dict(
        zip(("finance", "risk", "service", "compliance", "kyc", "incident"), refs, strict=True)
    )


Server = Callable[..., Awaitable[str]]


@pytest.fixture
async def serve(engine: AsyncEngine, database: str, tmp_path: Path) -> AsyncIterator[Server]:
    """Starts the web application over ``engine`` with the given config sections; its URL."""
    async with AsyncExitStack() as stack:

        async def start(**sections: Any) -> str:
            settings = settings_for(database, tmp_path, **sections)
            return (await start_web(stack, engine, settings, port=0)).url

        yield start


async def call(
    url: str, method: str, path: str, token: str | None = None, **kwargs: Any
) -> tuple[int, Any]:
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession(base_url=url) as session,
        session.request(method, path, headers=headers, **kwargs) as response,
    ):
        return response.status, await response.json()


async def audit_rows(engine: AsyncEngine) -> list[tuple[str, str, str | None, str]]:
    """(actor, action, item, origin) of every audit row, oldest first."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                audit_log.c.actor, audit_log.c.action, audit_log.c.item_ref, audit_log.c.origin
            ).order_by(audit_log.c.id)
        )
        return [tuple(row) for row in rows.all()]  # type: ignore[misc]


# --- agents and tokens -------------------------------------------------------------------------


async def test_a_token_is_shown_once_and_only_its_hash_is_stored(engine: AsyncEngine) -> None:
    await agents.add_agent(engine, "ana", "finance", actor=OPERATOR)
    issued = await agents.issue_token(engine, "ana", ttl_days=30, actor=OPERATOR)
    prefix, token_id, secret = issued.token.split("_", 2)
    assert (prefix, token_id) == ("ibx", issued.info.token_id)
    assert len(secret) == 43  # 32 random bytes
    async with engine.connect() as conn:
        stored = (await conn.execute(select(agent_tokens))).one()._mapping
        dump = " ".join(str(value) for value in stored.values())
    assert secret not in dump
    assert stored["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert (await agents.authenticate(engine, issued.token)).name == "ana"
    [listing] = await agents.list_agents(engine)
    assert [token.token_id for token in listing.tokens] == [token_id]


async def test_expired_revoked_disabled_and_wrong_tokens_are_refused_saying_why(
    engine: AsyncEngine,
) -> None:
    await agents.add_agent(engine, "ana", "finance", actor=OPERATOR)
    await agents.add_agent(engine, "ben", "finance", actor=OPERATOR)
    past = datetime.now(UTC) - timedelta(days=2)
    expired = await agents.issue_token(engine, "ana", ttl_days=1, actor=OPERATOR, now=past)
    revoked = await agents.issue_token(engine, "ana", ttl_days=1, actor=OPERATOR)
    kept = await agents.issue_token(engine, "ana", ttl_days=1, actor=OPERATOR)
    bens = await agents.issue_token(engine, "ben", ttl_days=1, actor=OPERATOR)
    assert await agents.revoke_tokens(engine, "ana", revoked.info.token_id, actor=OPERATOR) == 1
    await agents.disable_agent(engine, "ben", actor=OPERATOR)
    forged = f"ibx_{kept.info.token_id}_{bens.token.rsplit('_', 1)[-1]}"
    cases = {
        expired.token: "expired",
        revoked.token: "revoked",
        bens.token: "revoked",  # disabling revokes every token of the agent
        forged: "not valid",
        "ibx_nope": "not valid",
        kept.token + "x": "not valid",
    }
    for token, says in cases.items():
        with pytest.raises(AuthenticationError, match=says):
            await agents.authenticate(engine, token)
    assert (await agents.authenticate(engine, kept.token)).name == "ana"
    with pytest.raises(UnknownAgentError, match="ben is disabled"):
        await agents.find_agent(engine, "ben")
    with pytest.raises(UnknownAgentError, match="ben is disabled"):
        await agents.issue_token(engine, "ben", ttl_days=1, actor=OPERATOR)
    with pytest.raises(AgentConflictError, match="no active token"):
        await agents.revoke_tokens(engine, "ana", revoked.info.token_id, actor=OPERATOR)


async def test_names_teams_roles_and_lifetimes_are_checked(engine: AsyncEngine) -> None:
    await agents.add_agent(engine, "ana", "finance", actor=OPERATOR)
    with pytest.raises(AgentConflictError, match="exists already"):
        await agents.add_agent(engine, "ana", "risk_control", actor=OPERATOR)
    for name, team, role, field in (
        ("", "finance", "agent", "name"),
        ("x" * 129, "finance", "agent", "name"),
        ("bo", "not a team", "agent", "team"),
        ("bo", "finance", "boss", "role"),
    ):
        with pytest.raises(InvalidAgentInputError) as refused:
            await agents.add_agent(engine, name, team, role=role, actor=OPERATOR)
        assert refused.value.field == field
    with pytest.raises(InvalidAgentInputError, match="expires_days"):
        await agents.issue_token(engine, "ana", ttl_days=0, actor=OPERATOR)
    with pytest.raises(UnknownAgentError, match="'zed' is not an agent"):
        await agents.issue_token(engine, "zed", ttl_days=1, actor=OPERATOR)


async def test_the_api_refuses_expired_and_revoked_tokens_with_401(
    engine: AsyncEngine, serve: Server, items: dict[str, str]
) -> None:
    url = await serve()
    await agents.add_agent(engine, "ana", "finance", actor=OPERATOR)
    past = datetime.now(UTC) - timedelta(days=2)
    expired = await agents.issue_token(engine, "ana", ttl_days=1, actor=OPERATOR, now=past)
    live = await agents.issue_token(engine, "ana", ttl_days=1, actor=OPERATOR)
    assert (await call(url, "GET", "/api/v1/me", live.token))[0] == 200
    status, body = await call(url, "GET", f"/api/v1/items/{items['finance']}", expired.token)
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    assert "expired" in body["error"]["message"]
    await agents.revoke_tokens(engine, "ana", live.info.token_id, actor=OPERATOR)
    status, body = await call(url, "POST", f"/api/v1/items/{items['finance']}/claim", live.token)
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    assert "revoked" in body["error"]["message"]
    assert not [row for row in await audit_rows(engine) if row[1] in ("view", "claim")]


async def test_the_sso_header_signs_in_only_from_a_trusted_proxy(
    engine: AsyncEngine, serve: Server, tokens: dict[str, str]
) -> None:
    trusted = await serve(web={"sso_header": "X-Forwarded-User"})
    status, body = await call(trusted, "GET", "/api/v1/me", headers={"X-Forwarded-User": "rita"})
    assert (status, body) == (200, {"name": "rita", "team": "risk_control", "role": "agent"})
    status, body = await call(trusted, "GET", "/api/v1/me", headers={"X-Forwarded-User": "zed"})
    assert status == 401 and "'zed' is not an agent" in body["error"]["message"]
    # The same header from a peer that is not the proxy is ignored: a token is needed.
    elsewhere = await serve(
        web={"sso_header": "X-Forwarded-User", "trusted_proxies": ["192.0.2.10"]}
    )
    status, body = await call(elsewhere, "GET", "/api/v1/me", headers={"X-Forwarded-User": "adam"})
    assert status == 401 and "missing bearer token" in body["error"]["message"]
    status, body = await call(elsewhere, "GET", "/api/v1/me", tokens["carl"])
    assert (status, body["name"]) == (200, "carl")


# --- visibility --------------------------------------------------------------------------------


async def test_an_agent_of_another_team_gets_404_not_the_item(
    engine: AsyncEngine, serve: Server, tokens: dict[str, str], items: dict[str, str]
) -> None:
    url = await serve()
    carl, fiona = tokens["carl"], tokens["fiona"]
    for path in (
        f"/api/v1/items/{items['finance']}",
        f"/api/v1/items/{items['risk']}",
        f"/api/v1/items/{items['compliance']}",
    ):
        unknown = await call(url, "GET", path.replace(path[-12:], "FB-0000-0000"), carl)
        status, body = await call(url, "GET", path, carl)
        assert status == 404
        assert body["error"]["message"] == unknown[1]["error"]["message"].replace(
            "FB-0000-0000", path[-12:]
        )
    for action in ("claim", "resolve"):
        status, _ = await call(url, "POST", f"/api/v1/items/{items['finance']}/{action}", carl)
        assert status == 404
    status, _ = await call(url, "POST", "/api/v1/items/claim-next", carl, json={"team": "finance"})
    assert status == 404
    status, page = await call(url, "GET", "/api/v1/items", carl)
    assert sorted(item["reference"] for item in page["items"]) == sorted(
        [items["service"], items["kyc"]]
    )
    status, exported = await call(url, "GET", "/api/v1/export", carl)
    assert len(exported["items"]) == 2
    status, listed = await call(url, "GET", "/api/v1/incidents", carl)
    assert listed == {"incidents": []}
    # The item's own team and the leads and admins see it.
    for token in (fiona, tokens["lena"], tokens["adam"]):
        assert (await call(url, "GET", f"/api/v1/items/{items['finance']}", token))[0] == 200
    status, listed = await call(url, "GET", "/api/v1/incidents", fiona)
    [incident] = listed["incidents"]
    assert (await call(url, "GET", f"/api/v1/incidents/{incident['id']}", carl))[0] == 404
    status, page = await call(url, "GET", "/api/v1/items", tokens["lena"])
    assert len(page["items"]) == len(items)
    # Nothing refused was logged as seen by carl: only his export of what he may see.
    assert [row[:3] for row in await audit_rows(engine) if row[0] == "carl"] == [
        ("carl", "export", None)
    ]


async def test_visibility_is_configured_per_team_and_per_category(
    engine: AsyncEngine, serve: Server, tokens: dict[str, str], items: dict[str, str]
) -> None:
    url = await serve(
        staff={
            "visibility": {
                "by_team": {"finance": ["finance", "compliance"]},
                "by_category": {"kyc": ["compliance"]},
            }
        }
    )
    # Only finance is restricted by team now (to finance and compliance), and KYC items,
    # whatever their team, to compliance.
    status, page = await call(url, "GET", "/api/v1/items", tokens["carl"])
    assert sorted(item["reference"] for item in page["items"]) == sorted(
        [items["risk"], items["service"], items["compliance"]]
    )
    assert (await call(url, "GET", f"/api/v1/items/{items['kyc']}", tokens["carl"]))[0] == 404
    status, page = await call(url, "GET", "/api/v1/items", tokens["adam"])  # an admin
    assert len(page["items"]) == len(items)
    await agents.add_agent(engine, "cora", "compliance", actor=OPERATOR)
    cora = (await agents.issue_token(engine, "cora", ttl_days=1, actor=OPERATOR)).token
    status, page = await call(url, "GET", "/api/v1/items", cora)
    assert status == 200
    assert {items["finance"], items["kyc"], items["incident"]} <= {
        item["reference"] for item in page["items"]
    }


async def test_leads_reassign_and_agents_may_not(
    engine: AsyncEngine, serve: Server, tokens: dict[str, str], items: dict[str, str]
) -> None:
    url = await serve()
    ref = items["service"]
    status, body = await call(
        url, "POST", f"/api/v1/items/{ref}/reassign", tokens["carl"], json={"team": "finance"}
    )
    assert (status, body["error"]["code"]) == (403, "forbidden")
    # fiona (finance) may not see a compliance item: it is not handed to her.
    status, body = await call(
        url,
        "POST",
        f"/api/v1/items/{items['compliance']}/reassign",
        tokens["lena"],
        json={"assignee": "fiona"},
    )
    assert (status, body["error"]["code"]) == (409, "conflict")
    status, item = await call(
        url,
        "POST",
        f"/api/v1/items/{ref}/reassign",
        tokens["lena"],
        json={"team": "finance", "assignee": "fiona"},
    )
    assert status == 200
    assert (item["team"], item["status"], item["assignee"]) == ("finance", "claimed", "fiona")
    # Now a finance item, carl no longer sees it; fiona holds it and resolves it.
    assert (await call(url, "GET", f"/api/v1/items/{ref}", tokens["carl"]))[0] == 404
    status, item = await call(url, "POST", f"/api/v1/items/{ref}/resolve", tokens["fiona"])
    assert (status, item["status"]) == (200, "resolved")
    for name in ("zed", "ze\x00d"):  # NUL: no agent has it, and PostgreSQL cannot look it up
        status, body = await call(
            url, "POST", f"/api/v1/items/{ref}/reassign", tokens["lena"], json={"assignee": name}
        )
        assert (status, body["error"]["field"]) == (400, "assignee")
    status, body = await call(
        url,
        "POST",
        f"/api/v1/items/{items['risk']}/resolve",
        tokens["lena"],
        json={"note": "refunded\x00"},
    )
    assert (status, body["error"]["field"]) == (400, "note")


# --- the audit log -----------------------------------------------------------------------------


async def test_every_act_writes_one_audit_row_naming_who_what_and_from_where(
    engine: AsyncEngine, serve: Server, tokens: dict[str, str], items: dict[str, str]
) -> None:
    url = await serve()
    fiona, lena = tokens["fiona"], tokens["lena"]
    ref = items["finance"]
    before = datetime.now(UTC)
    assert (await call(url, "GET", f"/api/v1/items/{ref}", fiona))[0] == 200
    assert (await call(url, "GET", f"/api/v1/items/{ref}", fiona))[0] == 200  # a re-read
    assert (await call(url, "POST", f"/api/v1/items/{ref}/claim", fiona))[0] == 200
    assert (await call(url, "POST", f"/api/v1/items/{ref}/claim", fiona))[0] == 200
    status, _ = await call(
        url, "POST", f"/api/v1/items/{ref}/resolve", fiona, json={"note": "refunded"}
    )
    assert status == 200
    body = {"team": "risk_control"}
    assert (await call(url, "POST", f"/api/v1/items/{items['service']}/reassign", lena, json=body))[
        0
    ] == 200
    assert (await call(url, "GET", "/api/v1/export?priority=P1", lena))[0] == 200
    # Refused acts leave no row.
    assert (await call(url, "POST", f"/api/v1/items/{ref}/claim", tokens["carl"]))[0] == 404
    rows = [row for row in await audit_rows(engine) if row[0] != OPERATOR.name]
    assert [row[:3] for row in rows] == [
        ("fiona", "view", ref),
        ("fiona", "claim", ref),
        ("fiona", "renew", ref),
        ("fiona", "resolve", ref),
        ("lena", "reassign", items["service"]),
        ("lena", "export", None),
    ]
    assert {row[3] for row in rows} == {"http 127.0.0.1"}
    entries = await list_entries(engine, actor="lena")
    assert entries[0].detail == {
        "team": ["customer_service", "risk_control"],
        "assignee": [None, None],
    }
    assert entries[1].detail["references"] == [items["risk"]]
    assert entries[1].detail["filters"] == {"priority": "P1"}
    assert all(entry.at >= before for entry in entries)
    resolved = (await list_entries(engine, item_ref=ref, actor="fiona"))[-1]
    assert resolved.detail == {"from": "claimed", "note": True}  # never the note itself
    token_rows = [row[1] for row in await audit_rows(engine) if row[0] == OPERATOR.name]
    assert token_rows == ["agent.add", "token.issue"] * len(STAFF)


async def test_a_view_is_logged_every_time_when_the_interval_is_zero(
    engine: AsyncEngine, serve: Server, tokens: dict[str, str], items: dict[str, str]
) -> None:
    url = await serve(staff={"view_log_interval_s": 0})
    for _ in range(3):
        await call(url, "GET", f"/api/v1/items/{items['service']}", tokens["carl"])
    views = [row for row in await audit_rows(engine) if row[1] == "view"]
    assert views == [("carl", "view", items["service"], "http 127.0.0.1")] * 3


async def test_the_audit_log_refuses_updates_and_deletes(
    engine: AsyncEngine, tokens: dict[str, str]
) -> None:
    count = len(await audit_rows(engine))
    for statement in (
        update(audit_log).values(actor="nobody"),
        delete(audit_log),
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(statement)
    if engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text("TRUNCATE audit_log"))
    assert len(await audit_rows(engine)) == count
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(audit_log)) == count


async def test_a_configuration_reload_is_audited_applied_or_refused(
    database: str, tmp_path: Path, engine: AsyncEngine
) -> None:
    from inbox_daemon.scheduler import Daemon

    path = tmp_path / "inbox.toml"
    path.write_text(f'config_version = 1\n[storage]\nurl = "{database}"\n', encoding="utf-8")
    async with AsyncExitStack() as stack:
        daemon = await Daemon.open(
            settings_from_document({"config_version": 1, "storage": {"url": database}}, path), stack
        )
        path.write_text(
            f'config_version = 1\n[storage]\nurl = "{database}"\n[queue]\nclaim_timeout_s = 60\n',
            encoding="utf-8",
        )
        assert await daemon.reload()
        path.write_text("config_version = 1\n[queue]\nclaim_timeout = 60\n", encoding="utf-8")
        assert not await daemon.reload()
    applied, refused = await list_entries(engine)
    assert (applied.actor, applied.action, refused.action) == (
        "inbox-daemon",
        "config.reload",
        "config.reload",
    )
    assert applied.origin.startswith("daemon ")
    assert applied.detail["applied"] is True and applied.detail["path"] == str(path)
    assert len(applied.detail["sha256"]) == 64
    assert refused.detail["applied"] is False and "claim_timeout" in refused.detail["error"]


# --- the command line --------------------------------------------------------------------------


@pytest.fixture
async def cli_config(database: str, tmp_path: Path, engine: AsyncEngine) -> Path:
    """A config file over the test's (migrated) database."""
    path = tmp_path / "inbox.toml"
    path.write_text(f'config_version = 1\n[storage]\nurl = "{database}"\n', encoding="utf-8")
    return path


async def cli(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await run_cli([*argv, "--config", str(config)])
    out, err = capsys.readouterr()
    return code, out, err


async def test_cli_adds_lists_and_disables_agents_and_issues_and_revokes_tokens(
    cli_config: Path, engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await cli(capsys, cli_config, "agents", "add", "ana", "--team", "finance")
    assert (code, out.splitlines()[0]) == (0, "added ana (team finance, role agent)")
    assert (await cli(capsys, cli_config, "agents", "add", "ana", "--team", "x"))[0] == 1
    code, out, err = await cli(capsys, cli_config, "agents", "token", "ana", "--expires-days", "7")
    token = out.strip()
    assert code == 0 and "shown this once" in err
    assert (await agents.authenticate(engine, token)).name == "ana"
    token_id = token.split("_")[1]
    code, out, _ = await cli(capsys, cli_config, "agents", "list")
    assert out.splitlines()[1].split()[:4] == ["ana", "finance", "agent", "active"]
    assert token_id in out
    code, out, _ = await cli(capsys, cli_config, "agents", "list", "--json")
    [listed] = json.loads(out)
    assert listed["agent"]["name"] == "ana" and listed["tokens"][0]["token_id"] == token_id
    code, out, _ = await cli(capsys, cli_config, "agents", "token", "ana", "--revoke", token_id)
    assert (code, out.strip()) == (0, "revoked 1 token of ana")
    with pytest.raises(AuthenticationError, match="revoked"):
        await agents.authenticate(engine, token)
    code, _, err = await cli(capsys, cli_config, "agents", "disable", "zed")
    assert code == 2 and "'zed' is not an agent" in err
    assert (await cli(capsys, cli_config, "agents", "disable", "ana"))[0] == 0
    code, out, _ = await cli(capsys, cli_config, "agents", "list")
    assert out.splitlines()[1].split()[3] == "disabled"
    code, out, _ = await cli(capsys, cli_config, "audit", "list", "--json")
    actions = [row["action"] for row in json.loads(out)]
    assert actions == ["agent.add", "token.issue", "token.revoke", "agent.disable"]
    assert {row["origin"].split()[0] for row in json.loads(out)} == {"cli"}


async def test_cli_checks_as_against_the_agents_and_logs_what_it_did(
    cli_config: Path,
    engine: AsyncEngine,
    tokens: dict[str, str],
    items: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    ref = items["finance"]
    code, _, err = await cli(capsys, cli_config, "queue", "claim", ref, "--as", "mallory")
    assert code == 2 and "'mallory' is not an agent" in err
    code, _, err = await cli(capsys, cli_config, "queue", "show", ref, "--as", "carl")
    assert code == 1 and f"no feedback record has the reference {ref}" in err
    assert (await cli(capsys, cli_config, "queue", "claim", ref, "--as", "fiona"))[0] == 0
    escalating = ("queue", "escalate", ref, "--priority", "P1", "--as", "fiona")
    assert (await cli(capsys, cli_config, *escalating))[0] == 0
    assert (await cli(capsys, cli_config, "queue", "show", ref))[0] == 0
    code, _, err = await cli(
        capsys, cli_config, "queue", "reassign", ref, "--team", "risk_control", "--as", "fiona"
    )
    assert code == 1 and "leads and admins reassign" in err
    code, _, _ = await cli(
        capsys, cli_config, "queue", "reassign", ref, "--to", "lena", "--as", "adam"
    )
    assert code == 0
    output = tmp_path / "export.jsonl"
    code, _, err = await cli(
        capsys, cli_config, "queue", "export", "--as", "carl", "--output", str(output)
    )
    assert code == 0 and "exported 2 items" in err
    exported = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert sorted(item["reference"] for item in exported) == sorted(
        [items["service"], items["kyc"]]
    )
    code, out, _ = await cli(capsys, cli_config, "audit", "list", "--item", ref.lower())
    lines = out.splitlines()
    assert [line.split()[2:4] for line in lines[1:]] == [
        ["fiona", "claim"],
        ["fiona", "escalate"],
        [f"cli:{getpass.getuser()}", "view"],  # queue show without --as: the operator
        ["adam", "reassign"],
    ]
    code, out, _ = await cli(capsys, cli_config, "audit", "list", "--agent", "carl", "--json")
    [export] = json.loads(out)
    assert export["action"] == "export" and export["origin"].startswith("cli ")
    assert (await cli(capsys, cli_config, "audit", "list", "--limit", "0"))[0] == 2
