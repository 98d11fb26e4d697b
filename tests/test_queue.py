"""The shared queue: listing, claims, resolution, escalation, reopening, and its CLI."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from inbox_daemon.cli import run_cli
from inbox_daemon.interfaces import Classification, FeedbackRecord, Identity, IncidentLink
from inbox_daemon.queue import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    QueueFilter,
    QueueItem,
    claim,
    claim_next,
    escalate,
    list_incidents,
    list_items,
    release_expired_claims,
    requeue_relabelled,
    resolve,
    show_item,
)
from inbox_daemon.storage.batch import BatchPlan, SenderLimits, commit_batch
from inbox_daemon.storage.engine import create_engine, database_url
from inbox_daemon.storage.repository import acquire_lease, load_cursor
from inbox_daemon.storage.schema import queue_events, queue_items
from tests.factories import NOW, message, record

SLA = {"P1": 900, "P2": 14400, "P3": 86400, "P4": 259200}
TIMEOUT_S = 1800
OWNER = "replica-a"


def feedback(
    n: int,
    *,
    priority: str = "P2",
    team: str = "finance",
    sender: str = "alice@example.net",
    thread: str | None = None,
    category: str = "deposit_withdrawal",
    language: str = "en",
    external_id: str | None = None,
    received_at: datetime = NOW,
) -> FeedbackRecord:
    """A triaged record numbered ``n``: its own thread unless ``thread`` is given."""
    msg = message(
        external_id or f"m{n}@example.net",
        thread_key=thread or f"thread-{n}",
        sender=Identity("email", sender, sender, sender.split("@")[0].title()),
        subject=f"Problem {n}",
        received_at=received_at,
    )
    labels = Classification(category, priority, team, (f"rule {category}-{priority}",))
    return replace(record(msg), classification=labels, language=language)


async def ingest(
    engine: AsyncEngine, *records: FeedbackRecord, now: datetime = NOW, source="support-mail"
) -> list[str]:
    """Store ``records`` the way the daemon does: one batch commit."""
    assert await acquire_lease(engine, source, OWNER, ttl_s=3600, now=now)
    _, version = await load_cursor(engine, source)
    plan = BatchPlan(source, OWNER, records, (), version, {"n": 1}, SLA, SenderLimits(99, 99))
    await commit_batch(engine, plan, now=now)
    return [r.reference for r in records]


async def snapshot(engine: AsyncEngine) -> tuple[list[tuple], list[tuple]]:
    async with engine.connect() as conn:
        items = (await conn.execute(select(queue_items).order_by(queue_items.c.id))).all()
        events = (await conn.execute(select(queue_events).order_by(queue_events.c.id))).all()
    return [tuple(row) for row in items], [tuple(row) for row in events]


async def everything(engine: AsyncEngine, now: datetime = NOW, **filters) -> list[QueueItem]:
    page = await list_items(engine, QueueFilter(**filters), limit=500, now=now)
    assert page.next_cursor is None
    return list(page.items)


# --- listing -----------------------------------------------------------------------------


async def test_items_are_listed_most_urgent_first_with_sla_due_times(engine: AsyncEngine) -> None:
    p3, p1, p2 = await ingest(
        engine, feedback(1, priority="P3"), feedback(2, priority="P1"), feedback(3, priority="P2")
    )
    items = await everything(engine)
    assert [item.reference for item in items] == [p1, p2, p3]
    assert [item.due_at - NOW for item in items] == [
        timedelta(seconds=SLA[p]) for p in ("P1", "P2", "P3")
    ]
    assert {item.status for item in items} == {"new"}


async def test_overdue_is_computed_against_now(engine: AsyncEngine) -> None:
    p1, p2 = await ingest(engine, feedback(1, priority="P1"), feedback(2, priority="P2"))
    later = NOW + timedelta(minutes=20)
    overdue = {item.reference: item.overdue for item in await everything(engine, now=later)}
    assert overdue == {p1: True, p2: False}
    await resolve(engine, p1, "alice", now=later)
    [resolved] = await everything(engine, now=later, status="resolved")
    assert resolved.overdue is False


async def test_listing_filters_by_every_field(engine: AsyncEngine) -> None:
    link = IncidentLink("eth-withdrawals", "ETH withdrawals stuck")
    finance, risk, german = await ingest(
        engine,
        replace(feedback(1, team="finance"), incident=link),
        feedback(2, team="risk_control", priority="P1", category="account_security"),
        feedback(3, language="de"),
    )
    [incident] = await list_incidents(engine)
    cases = {
        "team": ("risk_control", [risk]),
        "priority": ("P1", [risk]),
        "category": ("account_security", [risk]),
        "language": ("de", [german]),
        "channel": ("email", [risk, finance, german]),
        "incident_id": (incident.id, [finance]),
        "status": ("claimed", []),
    }
    for name, (value, expected) in cases.items():
        found = [item.reference for item in await everything(engine, **{name: value})]
        assert sorted(found) == sorted(expected), name
    await claim(engine, german, "bob", claim_timeout_s=TIMEOUT_S, now=NOW)
    assert [i.reference for i in await everything(engine, status="claimed")] == [german]
    assert len(await everything(engine, status="open")) == 3


async def test_pages_stay_stable_while_items_arrive_and_change(engine: AsyncEngine) -> None:
    original = await ingest(
        engine, *(feedback(n, priority=("P1", "P2", "P3")[n % 3]) for n in range(8))
    )
    seen: list[str] = []
    cursor = None
    for page_number in range(10):
        page = await list_items(engine, cursor=cursor, limit=3, now=NOW)
        seen += [item.reference for item in page.items]
        # between pages: new urgent and non-urgent items arrive, and one item is resolved
        later = NOW + timedelta(minutes=page_number + 1)
        await ingest(engine, feedback(100 + page_number, priority="P1"), now=later)
        if page_number == 0:
            await resolve(engine, original[-1], "carol", now=later)
        cursor = page.next_cursor
        if cursor is None:
            break
    first_seen = [ref for ref in seen if ref in original]
    assert sorted(first_seen) == sorted(original)
    assert len(seen) == len(set(seen))


async def test_bad_filter_values_are_refused_naming_the_filter(engine: AsyncEngine) -> None:
    [reference] = await ingest(engine, feedback(1))
    before = await snapshot(engine)
    refusals = {
        "status": lambda: QueueFilter(status="done"),
        "priority": lambda: QueueFilter(priority="P9"),
        "team": lambda: QueueFilter(team="finance; drop table"),
        "incident": lambda: QueueFilter.parse({"incident": "x"}),
        "colour": lambda: QueueFilter.parse({"colour": "red"}),
    }
    for field, make in refusals.items():
        with pytest.raises(InvalidInputError) as refused:
            make()
        assert refused.value.field == field
        assert refused.value.kind == "invalid_input"
        assert str(refused.value).startswith(f"{field}: ")
    with pytest.raises(InvalidInputError, match="cursor"):
        await list_items(engine, cursor="not-a-cursor", now=NOW)
    with pytest.raises(InvalidInputError, match="limit"):
        await list_items(engine, limit=0, now=NOW)
    assert QueueFilter.parse({"team": "finance", "priority": "", "incident": "7"}) == QueueFilter(
        team="finance", incident_id=7
    )
    assert await snapshot(engine) == before
    assert [item.reference for item in await everything(engine)] == [reference]


# --- claims and resolution ---------------------------------------------------------------


async def test_claim_then_resolve_records_who_and_when(engine: AsyncEngine) -> None:
    [reference] = await ingest(engine, feedback(1))
    claimed = await claim(engine, reference.lower(), "alice", claim_timeout_s=TIMEOUT_S, now=NOW)
    assert (claimed.status, claimed.assignee, claimed.claimed_at) == ("claimed", "alice", NOW)
    assert claimed.claim_expires_at == NOW + timedelta(seconds=TIMEOUT_S)
    done_at = NOW + timedelta(minutes=10)
    resolved = await resolve(engine, reference, "alice", note="refunded", now=done_at)
    assert (resolved.status, resolved.resolved_at, resolved.resolution_note) == (
        "resolved",
        done_at,
        "refunded",
    )
    detail = await show_item(engine, reference, now=done_at)
    assert [(e.actor, e.action, e.from_state, e.to_state) for e in detail.history] == [
        ("alice", "claim", "new", "claimed"),
        ("alice", "resolve", "claimed", "resolved"),
    ]
    assert detail.history[1].at == done_at
    assert detail.history[1].detail == "refunded"


async def test_an_unclaimed_item_can_be_resolved_directly(engine: AsyncEngine) -> None:
    [reference] = await ingest(engine, feedback(1))
    resolved = await resolve(engine, reference, "bob", note="spam", now=NOW)
    assert (resolved.status, resolved.assignee, resolved.claimed_at) == ("resolved", "bob", None)


async def test_claiming_again_renews_the_claim(engine: AsyncEngine) -> None:
    [reference] = await ingest(engine, feedback(1))
    await claim(engine, reference, "alice", claim_timeout_s=TIMEOUT_S, now=NOW)
    later = NOW + timedelta(minutes=25)
    renewed = await claim(engine, reference, "alice", claim_timeout_s=TIMEOUT_S, now=later)
    assert renewed.claimed_at == NOW
    assert renewed.claim_expires_at == later + timedelta(seconds=TIMEOUT_S)
    still = await everything(engine, now=NOW + timedelta(minutes=40))
    assert (still[0].status, still[0].assignee) == ("claimed", "alice")


async def test_two_agents_claiming_one_item_at_once_exactly_one_wins(
    engine: AsyncEngine, database: str, tmp_path: Path
) -> None:
    references = await ingest(engine, *(feedback(n) for n in range(6)))
    other = create_engine(database_url(database, tmp_path))
    try:
        for reference in references:
            outcomes = await asyncio.gather(
                claim(engine, reference, "alice", claim_timeout_s=TIMEOUT_S, now=NOW),
                claim(other, reference, "bob", claim_timeout_s=TIMEOUT_S, now=NOW),
                return_exceptions=True,
            )
            winners = [o for o in outcomes if isinstance(o, QueueItem)]
            losers = [o for o in outcomes if isinstance(o, ConflictError)]
            assert (len(winners), len(losers)) == (1, 1), outcomes
            assert f"claimed by {winners[0].assignee}" in str(losers[0])
    finally:
        await other.dispose()
    _, events = await snapshot(engine)
    assert len(events) == len(references)


async def test_concurrent_claim_next_never_hands_one_item_to_two_agents(
    engine: AsyncEngine, database: str, tmp_path: Path
) -> None:
    references = await ingest(
        engine, *(feedback(n, priority=("P1", "P2")[n % 2]) for n in range(24))
    )
    engines = [engine] + [create_engine(database_url(database, tmp_path)) for _ in range(3)]

    async def agent(name: str, db: AsyncEngine) -> list[str]:
        taken = []
        while True:
            try:
                item = await claim_next(db, "finance", name, claim_timeout_s=TIMEOUT_S, now=NOW)
            except NotFoundError:
                return taken
            assert (item.status, item.assignee) == ("claimed", name)
            taken.append(item.reference)

    try:
        hauls = await asyncio.gather(
            *(agent(f"agent-{n}", engines[n % len(engines)]) for n in range(8))
        )
    finally:
        for extra in engines[1:]:
            await extra.dispose()
    claimed = [reference for haul in hauls for reference in haul]
    assert sorted(claimed) == sorted(references)
    items = await everything(engine)
    owners = {item.reference: item.assignee for item in items}
    for number, haul in enumerate(hauls):
        assert all(owners[reference] == f"agent-{number}" for reference in haul)


async def test_claim_next_takes_the_most_urgent_of_the_team(engine: AsyncEngine) -> None:
    _, urgent, _ = await ingest(
        engine,
        feedback(1, priority="P3"),
        feedback(2, priority="P1"),
        feedback(3, priority="P1", team="risk_control"),
    )
    item = await claim_next(engine, "finance", "alice", claim_timeout_s=TIMEOUT_S, now=NOW)
    assert item.reference == urgent


async def test_an_expired_claim_returns_the_item_to_the_queue(engine: AsyncEngine) -> None:
    plain, raised = await ingest(engine, feedback(1), feedback(2, priority="P3"))
    await escalate(engine, raised, "P1", "lead", sla_s=SLA, now=NOW)
    for reference in (plain, raised):
        await claim(engine, reference, "alice", claim_timeout_s=TIMEOUT_S, now=NOW)
    expired = NOW + timedelta(seconds=TIMEOUT_S + 60)
    states = {
        item.reference: (item.status, item.assignee)
        for item in await everything(engine, now=expired)
    }
    assert states == {plain: ("new", None), raised: ("escalated", None)}
    await claim(engine, plain, "bob", claim_timeout_s=TIMEOUT_S, now=expired)
    with pytest.raises(ConflictError, match="claimed by bob"):  # alice's claim is over
        await resolve(engine, plain, "alice", now=expired)
    history = (await show_item(engine, plain, now=expired)).history
    assert [(e.actor, e.action) for e in history] == [
        ("alice", "claim"),
        ("inbox-daemon", "release"),
        ("bob", "claim"),
    ]
    assert await release_expired_claims(engine, now=expired) == 0


async def test_release_of_expired_claims_can_run_on_its_own(engine: AsyncEngine) -> None:
    [reference] = await ingest(engine, feedback(1))
    await claim(engine, reference, "alice", claim_timeout_s=60, now=NOW)
    assert await release_expired_claims(engine, now=NOW + timedelta(seconds=30)) == 0
    assert await release_expired_claims(engine, now=NOW + timedelta(seconds=61)) == 1
    items, _ = await snapshot(engine)
    assert [row[2] for row in items] == ["new"]  # the state column


@pytest.mark.parametrize(
    ("operation", "error", "message"),
    [
        ("claim_unknown", NotFoundError, "no feedback record has the reference FB-0000-0000"),
        ("claim_malformed", InvalidInputError, "reference: 'ticket-7' is not a reference"),
        ("claim_held", ConflictError, "is claimed by alice until"),
        ("claim_resolved", ConflictError, "is resolved"),
        ("resolve_held", ConflictError, "only they can resolve it"),
        ("resolve_resolved", ConflictError, "is already resolved"),
        ("resolve_nameless", InvalidInputError, "agent: "),
        ("escalate_lower", ConflictError, "is already P2; escalation only raises"),
        ("escalate_unknown_priority", InvalidInputError, "priority: unknown value 'P0'"),
        ("escalate_resolved", ConflictError, "cannot be escalated"),
        ("claim_next_empty_team", NotFoundError, "no item of team 'legal' is waiting"),
    ],
)
async def test_bad_requests_name_the_problem_and_change_nothing(
    engine: AsyncEngine, operation: str, error: type[Exception], message: str
) -> None:
    held, done = await ingest(engine, feedback(1), feedback(2))
    await claim(engine, held, "alice", claim_timeout_s=TIMEOUT_S, now=NOW)
    await resolve(engine, done, "alice", now=NOW)
    before = await snapshot(engine)
    attempts = {
        "claim_unknown": lambda: claim(engine, "FB-0000-0000", "bob", claim_timeout_s=60),
        "claim_malformed": lambda: claim(engine, "ticket-7", "bob", claim_timeout_s=60),
        "claim_held": lambda: claim(engine, held, "bob", claim_timeout_s=60, now=NOW),
        "claim_resolved": lambda: claim(engine, done, "bob", claim_timeout_s=60, now=NOW),
        "resolve_held": lambda: resolve(engine, held, "bob", now=NOW),
        "resolve_resolved": lambda: resolve(engine, done, "alice", now=NOW),
        "resolve_nameless": lambda: resolve(engine, held, "  ", now=NOW),
        "escalate_lower": lambda: escalate(engine, held, "P3", "bob", sla_s=SLA, now=NOW),
        "escalate_unknown_priority": lambda: escalate(
            engine, held, "P0", "bob", sla_s=SLA, now=NOW
        ),
        "escalate_resolved": lambda: escalate(engine, done, "P1", "bob", sla_s=SLA, now=NOW),
        "claim_next_empty_team": lambda: claim_next(
            engine, "legal", "bob", claim_timeout_s=60, now=NOW
        ),
    }
    with pytest.raises(error, match=message.replace("(", r"\(")):
        await attempts[operation]()
    assert await snapshot(engine) == before


# --- escalation --------------------------------------------------------------------------


async def test_escalation_raises_priority_and_brings_the_due_time_forward(
    engine: AsyncEngine,
) -> None:
    first, slow = await ingest(engine, feedback(1, priority="P2"), feedback(2, priority="P4"))
    at = NOW + timedelta(hours=1)
    item = await escalate(engine, slow, "P1", "lead", sla_s=SLA, now=at)
    assert (item.status, item.priority) == ("escalated", "P1")
    assert item.due_at == at + timedelta(seconds=SLA["P1"])
    assert [i.reference for i in await everything(engine, now=at)] == [slow, first]
    again = await escalate(engine, first, "P1", "lead", sla_s=SLA, now=NOW + timedelta(hours=5))
    assert again.due_at == NOW + timedelta(seconds=SLA["P2"])  # never later than before
    assert again.overdue is True


async def test_escalating_a_claimed_item_keeps_its_holder(engine: AsyncEngine) -> None:
    [reference] = await ingest(engine, feedback(1, priority="P3"))
    await claim(engine, reference, "alice", claim_timeout_s=TIMEOUT_S, now=NOW)
    item = await escalate(engine, reference, "P2", "lead", sla_s=SLA, now=NOW)
    assert (item.status, item.assignee, item.priority) == ("claimed", "alice", "P2")


async def test_a_replay_that_raises_priority_escalates_the_item(engine: AsyncEngine) -> None:
    waiting, claimed = await ingest(engine, feedback(1, priority="P4"), feedback(2, priority="P3"))
    await claim(engine, claimed, "alice", claim_timeout_s=TIMEOUT_S, now=NOW)
    items, _ = await snapshot(engine)
    record_ids = [row[1] for row in items]
    later = NOW + timedelta(minutes=10)
    async with engine.begin() as conn:
        for record_id in record_ids:
            await requeue_relabelled(
                conn, record_id, team="risk_control", priority="P1", sla_s=SLA, now=later
            )
    by_reference = {item.reference: item for item in await everything(engine, now=later)}
    raised, held = by_reference[waiting], by_reference[claimed]
    assert (raised.status, raised.priority, raised.team) == ("escalated", "P1", "risk_control")
    assert raised.due_at == NOW + timedelta(seconds=SLA["P1"])  # as if labelled so at arrival
    assert (held.status, held.assignee, held.priority, held.team) == (
        "claimed",
        "alice",
        "P1",
        "finance",
    )
    async with engine.begin() as conn:  # rules never lower an escalated item again
        await requeue_relabelled(
            conn, record_ids[0], team="finance", priority="P4", sla_s=SLA, now=later
        )
    assert (await everything(engine, now=later, status="escalated"))[0].priority == "P1"


# --- reopening ---------------------------------------------------------------------------


async def test_the_sender_writing_again_on_a_resolved_thread_reopens_it(
    engine: AsyncEngine,
) -> None:
    [first] = await ingest(engine, feedback(1, thread="conversation-1"))
    await claim(engine, first, "alice", claim_timeout_s=TIMEOUT_S, now=NOW)
    await resolve(engine, first, "alice", note="sent", now=NOW + timedelta(minutes=5))
    again = NOW + timedelta(days=1)
    follow_up = replace(
        feedback(2, thread="conversation-1", priority="P1", received_at=again),
    )
    [second] = await ingest(engine, follow_up, now=again)
    [item] = await everything(engine, now=again)
    assert item.reference == first
    assert (item.status, item.assignee, item.priority) == ("reopened", None, "P1")
    assert item.due_at == again + timedelta(seconds=SLA["P1"])
    assert item.resolved_at is None
    detail = await show_item(engine, first, now=again)
    assert [(entry.reference, entry.relation) for entry in detail.thread] == [(second, "thread")]
    reopen = detail.history[-1]
    assert (reopen.action, reopen.from_state, reopen.to_state) == ("reopen", "resolved", "reopened")
    assert second in reopen.detail and "P2 -> P1" in reopen.detail
    with pytest.raises(NotFoundError, match=f"joined the conversation of {first}"):
        await show_item(engine, second, now=again)
    reclaimed = await claim(engine, first, "bob", claim_timeout_s=TIMEOUT_S, now=again)
    assert reclaimed.assignee == "bob"


async def test_others_on_the_thread_or_open_threads_do_not_reopen(engine: AsyncEngine) -> None:
    resolved, still_open = await ingest(
        engine, feedback(1, thread="conversation-1"), feedback(2, thread="conversation-2")
    )
    await resolve(engine, resolved, "alice", now=NOW)
    later = NOW + timedelta(hours=1)
    stranger, follow_up = await ingest(
        engine,
        feedback(3, thread="conversation-1", sender="mallory@example.net"),
        feedback(4, thread="conversation-2"),
        now=later,
    )
    states = {item.reference: item.status for item in await everything(engine, now=later)}
    assert states == {resolved: "resolved", still_open: "new", stranger: "new", follow_up: "new"}


async def test_the_same_message_through_a_second_mailbox_reopens_nothing(
    engine: AsyncEngine,
) -> None:
    [first] = await ingest(engine, feedback(1, thread="conversation-1"))
    await resolve(engine, first, "alice", now=NOW)
    copy = feedback(1, thread="conversation-1")  # the same Message-ID, another source
    await ingest(engine, copy, now=NOW + timedelta(hours=1), source="second-mailbox")
    [item] = await everything(engine)
    assert (item.reference, item.status) == (first, "resolved")


# --- the detail page and incidents ---------------------------------------------------------


async def test_show_gives_record_acknowledgment_incident_thread_and_history(
    engine: AsyncEngine,
) -> None:
    link = IncidentLink("eth-withdrawals", "ETH withdrawals stuck")
    earlier = feedback(1, received_at=NOW - timedelta(hours=1))
    quiet = replace(
        feedback(2),
        incident=link,
        reply=None,
        ack=replace(earlier.ack, action="withheld", reason="auto-reply"),
    )
    [older] = await ingest(engine, earlier, now=NOW - timedelta(hours=1))
    [reference] = await ingest(engine, quiet)
    detail = await show_item(engine, reference, now=NOW)
    assert detail.item.reference == reference
    assert detail.full_text == quiet.message.full_text
    assert detail.reasons == ("rule deposit_withdrawal-P2",)
    assert detail.acknowledgment.outbox_state is None
    assert detail.acknowledgment.reason == "auto-reply"
    assert detail.incident is not None and detail.incident.title == "ETH withdrawals stuck"
    assert detail.incident.items == {"new": 1}
    assert [(e.reference, e.relation) for e in detail.thread] == [(older, "sender")]
    sent = await show_item(engine, older, now=NOW)
    assert sent.acknowledgment.outbox_state == "pending"
    assert sent.acknowledgment.subject == "Re: Problem 1"


async def test_incidents_are_listed_with_their_items_by_state(engine: AsyncEngine) -> None:
    link = IncidentLink("eth-withdrawals", "ETH withdrawals stuck")
    first, second, _ = await ingest(
        engine,
        replace(feedback(1), incident=link),
        replace(feedback(2, sender="bob@example.net"), incident=link),
        feedback(3),
    )
    await claim(engine, second, "alice", claim_timeout_s=TIMEOUT_S, now=NOW)
    [incident] = await list_incidents(engine, now=NOW)
    assert (incident.title, incident.report_count) == ("ETH withdrawals stuck", 2)
    assert incident.items == {"new": 1, "claimed": 1}
    page = await list_items(engine, QueueFilter(incident_id=incident.id), now=NOW)
    assert sorted(item.reference for item in page.items) == sorted([first, second])


# --- the command line ----------------------------------------------------------------------


@pytest.fixture
async def cli_config(tmp_path: Path) -> Path:
    """A migrated SQLite database beside its config file, with the agents the tests name."""
    path = tmp_path / "inbox.toml"
    path.write_text('config_version = 1\n[storage]\nurl = "sqlite:///./queue.db"\n')
    assert await run_cli(["migrate", "--config", str(path)]) == 0
    for name, team, role in (
        ("alice", "finance", "agent"),
        ("bob", "finance", "agent"),
        ("lead", "finance", "lead"),
    ):
        command = ["agents", "add", name, "--team", team, "--role", role]
        assert await run_cli([*command, "--config", str(path)]) == 0
    return path


@pytest.fixture
async def cli_engine(cli_config: Path):
    engine = create_engine(database_url("sqlite:///./queue.db", cli_config.parent))
    yield engine
    await engine.dispose()


async def cli(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await run_cli([*argv, "--config", str(config)])
    out, err = capsys.readouterr()
    return code, out, err


async def test_cli_lists_claims_resolves_and_escalates(
    cli_config: Path, cli_engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    late, calm = await ingest(
        cli_engine,
        feedback(1, priority="P1", sender="late@example.net"),
        feedback(2, priority="P4"),
        now=now - timedelta(hours=1),
    )
    code, out, _ = await cli(capsys, cli_config, "queue", "list")
    assert code == 0
    lines = out.splitlines()
    assert "DUE" in lines[0] and "ASSIGNEE" in lines[0]
    assert lines[1].startswith(late) and "OVERDUE 45m" in lines[1]
    assert lines[2].startswith(calm) and "in 2d" in lines[2]

    code, out, _ = await cli(
        capsys, cli_config, "queue", "claim", "--next", "--team", "finance", "--as", "alice"
    )
    assert (code, out.split(":")[0]) == (0, late)
    assert "claimed by alice" in out
    code, out, _ = await cli(
        capsys, cli_config, "queue", "resolve", late, "--as", "alice", "--note", "done", "--json"
    )
    assert code == 0
    assert json.loads(out)["status"] == "resolved"
    code, out, _ = await cli(
        capsys, cli_config, "queue", "escalate", calm, "--priority", "P2", "--as", "lead"
    )
    assert code == 0 and "escalated" in out
    code, out, _ = await cli(capsys, cli_config, "queue", "list", "--status", "open", "--json")
    [item] = json.loads(out)
    assert (item["reference"], item["status"], item["priority"]) == (calm, "escalated", "P2")
    code, out, _ = await cli(capsys, cli_config, "queue", "show", late)
    assert code == 0
    assert "History:" in out and "alice resolve (claimed -> resolved): done" in out
    code, out, _ = await cli(capsys, cli_config, "queue", "show", late, "--json")
    assert json.loads(out)["acknowledgment"]["outbox_state"] == "pending"


async def test_cli_errors_are_one_line_with_exit_codes(
    cli_config: Path, cli_engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    [reference] = await ingest(cli_engine, feedback(1), now=datetime.now(UTC))
    assert (await cli(capsys, cli_config, "queue", "claim", reference, "--as", "alice"))[0] == 0
    before = await snapshot(cli_engine)
    cases = [
        (("queue", "show", "FB-0000-0000"), 1, "no feedback record has the reference"),
        (("queue", "claim", reference, "--as", "bob"), 1, "is claimed by alice"),
        (("queue", "resolve", reference, "--as", "bob"), 1, "only they can resolve it"),
        (("queue", "list", "--status", "done"), 2, "status: unknown value 'done'"),
        (("queue", "list", "--after", "zzz"), 2, "cursor: not a cursor"),
        (("queue", "claim", "--next", "--as", "bob"), 2, "--next and --team together"),
        (("queue", "escalate", reference, "--priority", "P7", "--as", "bob"), 2, "priority"),
        (("queue", "resolve", reference, "--as", "mallory"), 2, "'mallory' is not an agent"),
        (("queue", "claim", "--next", "--team", "finance", "--as", "Alice"), 2, "not an agent"),
    ]
    for argv, expected_code, says in cases:
        code, out, err = await cli(capsys, cli_config, *argv)
        assert code == expected_code, argv
        assert out == ""
        assert err.count("\n") == 1 and says in err, err
    assert await snapshot(cli_engine) == before


async def test_cli_lists_incidents(
    cli_config: Path, cli_engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    link = IncidentLink("eth-withdrawals", "ETH withdrawals stuck")
    await ingest(cli_engine, replace(feedback(1), incident=link), now=datetime.now(UTC))
    code, out, _ = await cli(capsys, cli_config, "incidents", "list")
    assert code == 0
    assert "ETH withdrawals stuck" in out.splitlines()[1] and "new 1" in out
    code, out, _ = await cli(capsys, cli_config, "incidents", "list", "--json")
    [incident] = json.loads(out)
    assert (incident["report_count"], incident["items"]) == (1, {"new": 1})


async def test_cli_pages_through_the_queue(
    cli_config: Path, cli_engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    references = await ingest(cli_engine, *(feedback(n) for n in range(5)), now=datetime.now(UTC))
    code, out, _ = await cli(capsys, cli_config, "queue", "list", "--limit", "3")
    assert code == 0
    *rows, more = out.splitlines()
    assert len(rows) == 4 and more.startswith("more: --after ")
    code, out, _ = await cli(
        capsys, cli_config, "queue", "list", "--limit", "3", "--after", more.split()[-1]
    )
    listed = [line.split()[0] for line in (*rows[1:], *out.splitlines()[1:])]
    assert listed == references
