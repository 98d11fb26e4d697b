"""The X path end to end: the daemon's real ``run --once`` over an X source on a loopback X API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from inbox_daemon.cli import run_cli
from inbox_daemon.loopback.x_api import Canned, LoopbackXApi, XUser
from inbox_daemon.storage.schema import dead_letters, feedback_records
from tests.daemon import migrated_engine, run_once

pytestmark = pytest.mark.timeout(120)

TOKENS = {"X_BEARER": "app-bearer", "X_CK": "ck", "X_CS": "cs", "X_AT": "at-1", "X_AS": "as"}


@pytest.fixture
async def x_api() -> AsyncIterator[LoopbackXApi]:
    account = XUser("1000", "exchange_support", "Example Exchange Support")
    async with LoopbackXApi(account, tokens={"app-bearer", "at-1"}) as server:
        yield server


@pytest.fixture
def config_path(
    tmp_path: Path, database: str, x_api: LoopbackXApi, monkeypatch: pytest.MonkeyPatch
) -> Path:
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "inbox.toml"
    path.write_text(
        f"""
config_version = 1
[storage]
url = "{database}"
[outbox]
retry_base_s = 0.001
retry_cap_s = 0.001
max_attempts = 3
[[sources]]
name = "x-support"
kind = "twitter"
handle = "@exchange_support"
api_base_url = "{x_api.base_url}"
bearer_token_env = "X_BEARER"
user_auth = "oauth1"
consumer_key_env = "X_CK"
consumer_secret_env = "X_CS"
access_token_env = "X_AT"
access_token_secret_env = "X_AS"
direct_messages = true
timeout_s = 10
retry_base_s = 0.01
searches = [{{ name = "brand", query = "\\"Example Exchange\\" -is:retweet" }}]
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
async def engine(config_path: Path) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(config_path) as engine:
        yield engine


async def records(engine: AsyncEngine) -> dict[str, dict[str, object]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(feedback_records))).all()
    return {row.external_id: dict(row._mapping) for row in rows}


def minutes_ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


async def test_mention_dm_and_search_hit_become_records_and_the_right_replies(
    x_api: LoopbackXApi, config_path: Path, engine: AsyncEngine
) -> None:
    alice = x_api.add_user("alice_trades", "Alice")
    bob = x_api.add_user("bob_hodl", "Bob")
    carol = x_api.add_user("carol_c", "Carol")
    mention = x_api.post(
        alice,
        "@exchange_support my ETH withdrawal has been pending for 3 hours, UID 52019374",
        at=minutes_ago(10),
    )
    x_api.add_dm(
        bob, "Hi, I cannot log in since the update, it says my 2FA is wrong", at=minutes_ago(9)
    )
    x_api.post(carol, "The Example Exchange app keeps crashing on Android", at=minutes_ago(8))

    report = await run_once(config_path)

    assert report.errors == {}
    assert report.polls["x-support"].stored == 3
    stored = await records(engine)
    public = stored[f"tweet:{mention}"]
    assert public["thread_key"] == f"tweet:{mention}"
    assert public["sender_handle"] == "@alice_trades"
    [reply] = x_api.replies
    assert reply["in_reply_to_tweet_id"] == mention
    assert public["reference"] in reply["text"]
    for detail in ("ETH", "withdrawal", "52019374", "Alice"):
        assert detail not in reply["text"]
    search_hit = next(r for key, r in stored.items() if r["text"].startswith("The Example"))
    assert search_hit["ack_code"] == "not addressed to us"


async def test_direct_message_is_answered_with_the_full_acknowledgment_by_dm(
    x_api: LoopbackXApi, config_path: Path, engine: AsyncEngine
) -> None:
    bob = x_api.add_user("bob_hodl", "Bob")
    event = x_api.add_dm(bob, "Hi, I cannot log in since the update", at=minutes_ago(9))
    report = await run_once(config_path)
    assert report.errors == {}
    stored = await records(engine)
    record = stored[f"dm:{event}"]
    assert record["ack_reason"] == "acknowledgment queued", record["ack_reason"]
    [dm] = x_api.sent_dms
    assert dm["recipient_id"] == bob.id
    assert record["reference"] in dm["text"]
    assert "Hello Bob" in dm["text"]


async def test_second_run_stores_nothing_again_and_replies_once(
    x_api: LoopbackXApi, config_path: Path, engine: AsyncEngine
) -> None:
    alice = x_api.add_user("alice_trades")
    x_api.post(alice, "@exchange_support my deposit is missing", at=minutes_ago(3))
    await run_once(config_path)
    again = await run_once(config_path)
    assert again.polls["x-support"].fetched == 0
    x_api.post(alice, "@exchange_support any news on my deposit?")
    third = await run_once(config_path)
    assert third.polls["x-support"].stored == 1
    assert len(await records(engine)) == 2
    assert len(x_api.replies) == 1  # one acknowledgment per conversation and person


async def test_a_rate_limit_backs_the_source_off_until_the_reset_shown_in_status(
    x_api: LoopbackXApi,
    config_path: Path,
    engine: AsyncEngine,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reset = datetime.now(UTC) + timedelta(minutes=10)
    x_api.script("GET /2/users/:id/mentions", Canned.rate_limited(reset))
    report = await run_once(config_path)
    assert "rate limit of GET /2/users/:id/mentions exhausted" in report.errors["x-support"]
    assert await run_cli(["status", "--json", "--config", str(config_path)]) == 0
    [source] = json.loads(capsys.readouterr().out)["sources"]
    assert source["state"] == "backoff"
    backoff_until = datetime.fromisoformat(source["backoff_until"])
    assert backoff_until.replace(tzinfo=UTC) >= reset - timedelta(seconds=1)


async def test_refused_credentials_stop_that_source_only(
    x_api: LoopbackXApi,
    config_path: Path,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("X_BEARER_OLD", "revoked-token")
    text = config_path.read_text(encoding="utf-8")
    second = text[text.index("[[sources]]") :].replace('"x-support"', '"x-sales"')
    second = second.replace('"X_BEARER"', '"X_BEARER_OLD"')
    config_path.write_text(text + "\n" + second, encoding="utf-8")
    alice = x_api.add_user("alice_trades")
    x_api.post(alice, "@exchange_support hello", at=minutes_ago(2))
    report = await run_once(config_path)
    assert report.polls["x-support"].stored == 1
    assert "refused the credentials (401)" in report.errors["x-sales"]
    assert "revoked-token" not in report.errors["x-sales"]
    assert await run_cli(["status", "--config", str(config_path)]) == 0
    status = capsys.readouterr().out
    assert "x-sales (twitter): backoff" in status
    assert "x-support (twitter): ok" in status


async def test_bad_posts_are_dead_lettered_and_a_deleted_account_gets_no_reply(
    x_api: LoopbackXApi, config_path: Path, engine: AsyncEngine
) -> None:
    gone = x_api.add_user("gone_user", deleted=True)
    lost = x_api.post(gone, "@exchange_support my funds are gone", at=minutes_ago(2))
    page = {
        "data": [{"text": "@exchange_support an id is missing"}, {"id": "12", "author_id": "5"}],
        "meta": {"result_count": 2},
    }
    x_api.script("GET /2/users/:id/mentions", Canned(200, page))
    first = await run_once(config_path)
    assert first.polls["x-support"].dead_letters == 2
    second = await run_once(config_path)
    assert second.errors == {} and second.polls["x-support"].stored == 1
    stored = await records(engine)
    assert stored[f"tweet:{lost}"]["ack_code"] == "no recipient"
    async with engine.connect() as conn:
        errors = sorted((await conn.scalars(select(dead_letters.c.error))).all())
    assert "no text and no media" in errors[0] or "no text and no media" in errors[1]
    assert x_api.replies == []
