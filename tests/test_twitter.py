"""The X adapter: tweepy's real asyncio client against the loopback X API (aiohttp).

The loopback server answers with the recorded responses of ``corpora/twitter-v2`` (tweepy's
cassettes, twarc-csv's full pages) and with pages it builds in the shapes of the X API v2
OpenAPI description there; nothing of the adapter is replaced.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from inbox_daemon.config import load_settings
from inbox_daemon.errors import ConfigError, PermanentError, RetryableError
from inbox_daemon.interfaces import Batch, Identity, OutboundReply
from inbox_daemon.loopback.x_api import Canned, LoopbackXApi, XUser, weighted_length
from inbox_twitter.adapter import TwitterAdapter
from inbox_twitter.api import RateLimitedError
from inbox_twitter.settings import TwitterSourceSettings
from tests.conftest import CORPORA

pytestmark = pytest.mark.timeout(60)

X_CORPUS = CORPORA / "twitter-v2"
RECORDED = X_CORPUS / "tweepy"
TWARC = X_CORPUS / "twarc-csv"
MENTIONS = "GET /2/users/:id/mentions"
SEARCH = "GET /2/tweets/search/recent"
DM_EVENTS = "GET /2/dm_events"
SECRETS = {"X_BEARER": "app-bearer", "X_CK": "ck", "X_CS": "cs", "X_AT": "at-1", "X_AS": "as"}


@pytest.fixture(autouse=True)
def secrets_present(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
async def x_api() -> AsyncIterator[LoopbackXApi]:
    account = XUser("1000", "exchange_support", "Example Exchange Support")
    async with LoopbackXApi(account, tokens={"app-bearer", "at-1"}) as server:
        yield server


def settings_for(server: LoopbackXApi, **overrides: Any) -> TwitterSourceSettings:
    values: dict[str, Any] = {
        "name": "x-support",
        "kind": "twitter",
        "handle": "@exchange_support",
        "api_base_url": server.base_url,
        "bearer_token_env": "X_BEARER",
        "user_auth": "oauth1",
        "consumer_key_env": "X_CK",
        "consumer_secret_env": "X_CS",
        "access_token_env": "X_AT",
        "access_token_secret_env": "X_AS",
        "timeout_s": 5,
        "retry_base_s": 0.01,
        "backfill_days": 3650,
    }
    return TwitterSourceSettings.model_validate(values | overrides)


@pytest.fixture
async def adapter_for(
    x_api: LoopbackXApi,
) -> AsyncIterator[Callable[..., TwitterAdapter]]:
    made: list[TwitterAdapter] = []

    def make(**overrides: Any) -> TwitterAdapter:
        adapter = TwitterAdapter(settings_for(x_api, **overrides))
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        await adapter.close()


def twarc_page(name: str, line: int = 0) -> dict[str, Any]:
    page = json.loads((TWARC / name).read_text(encoding="utf-8").splitlines()[line])
    page.pop("__twarc", None)
    return page


def ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


def reply_to(
    external_id: str, recipient: Identity, text: str = "Ref. FB-AAAA-BBBB"
) -> OutboundReply:
    return OutboundReply("7", "twitter", recipient, "", text, "en", "t", in_reply_to=external_id)


async def drain(adapter: TwitterAdapter, cursor: Any, limit: int) -> tuple[list[Batch], Any]:
    """Fetch batch after batch while the adapter says there is more, as the runner does."""
    batches = []
    while True:
        batch = await adapter.fetch(cursor, limit)
        batches.append(batch)
        cursor = batch.next_cursor
        if not batch.more:
            return batches, cursor


# --- settings and check-config ------------------------------------------------------------


def example_x_section() -> str:
    text = (Path(__file__).resolve().parents[1] / "config" / "inbox.example.toml").read_text(
        encoding="utf-8"
    )
    section = text[text.index('# name = "x-support"') - len("# [[sources]]\n") :]
    return "\n".join(
        line[2:] if line.startswith("# ") else line.removeprefix("#")
        for line in section.splitlines()
    )


def test_the_documented_example_section_validates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("BEARER_TOKEN", "CONSUMER_KEY", "CONSUMER_SECRET", "ACCESS_TOKEN"):
        monkeypatch.setenv(f"X_{name}", "value")
    monkeypatch.setenv("X_ACCESS_TOKEN_SECRET", "value")
    path = tmp_path / "inbox.toml"
    path.write_text("config_version = 1\n" + example_x_section(), encoding="utf-8")
    [source] = load_settings(path).sources
    assert isinstance(source, TwitterSourceSettings)
    assert [s.name for s in source.searches] == ["brand", "cashtag"]
    assert source.direct_messages and source.user_auth == "oauth1"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"bearer_token_env": "NOT_SET"}, r"bearer_token_env.*NOT_SET"),
        ({"user_auth": "none", "direct_messages": True}, "direct_messages needs user context"),
        ({"user_auth": "none"}, "send_replies needs user context"),
        ({"handle": "not a handle"}, "expected an X @handle"),
        ({"mentions": False}, "nothing to read"),
        ({"api_base_url": "api.twitter.com"}, "scheme://host"),
        ({"searches": [{"name": "a", "query": "x"}, {"name": "a", "query": "y"}]}, "unique"),
    ],
)
def test_invalid_sections_are_refused_with_the_reason(
    x_api: LoopbackXApi, change: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        settings_for(x_api, **change)


def test_a_secret_written_in_the_file_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "inbox.toml"
    path.write_text(
        'config_version = 1\n[[sources]]\nname = "x"\nkind = "twitter"\nhandle = "@a"\n'
        'bearer_token = "AAAA"\nsend_replies = false\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="bearer_token_env or bearer_token_file"):
        load_settings(path)


# --- reading: streams, cursor, pagination --------------------------------------------------


async def test_mentions_become_messages_with_author_thread_and_entities(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    alice = x_api.add_user("alice_trades", "Alice")
    root = x_api.post(alice, "@exchange_support deposits of $USDT are stuck #help", at=ago(hours=2))
    answer = x_api.post(alice, "@exchange_support still nothing &amp; no reply", reply_to=root)
    adapter = adapter_for()
    batch = await adapter.fetch(None, 50)
    first, second = batch.messages
    assert (first.external_id, second.external_id) == (f"tweet:{root}", f"tweet:{answer}")
    assert first.sender == Identity("twitter", alice.id, "@alice_trades", "Alice")
    assert first.text == "@exchange_support deposits of $USDT are stuck #help"
    assert first.meta["public"] is True
    assert first.meta["cashtags"] == ["$USDT"] and first.meta["hashtags"] == ["#help"]
    assert second.thread_key == first.thread_key == f"tweet:{root}"
    assert second.in_reply_to == f"tweet:{root}"
    assert "> @alice_trades: @exchange_support deposits" in second.full_text
    assert second.text == "@exchange_support still nothing & no reply"
    assert batch.next_cursor == {"streams": {"mentions": {"since_id": answer}}}
    assert adapter.own_addresses() == {"@exchange_support", "1000"}


async def test_the_cursor_moves_past_what_was_read_and_the_next_fetch_asks_since_it(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    alice = x_api.add_user("alice_trades")
    x_api.post(alice, "@exchange_support one", at=ago(minutes=5))
    adapter = adapter_for()
    first = await adapter.fetch(None, 50)
    second = await adapter.fetch(first.next_cursor, 50)
    assert second.messages == ()
    newer = x_api.post(alice, "@exchange_support two")
    third = await adapter.fetch(second.next_cursor, 50)
    assert [m.external_id for m in third.messages] == [f"tweet:{newer}"]
    calls = x_api.calls(MENTIONS)
    assert "start_time" in calls[0].query and "since_id" not in calls[0].query
    assert calls[1].query["since_id"] == first.messages[0].external_id.removeprefix("tweet:")


async def test_a_backlog_is_read_in_batches_over_pagination_tokens_without_gap_or_repeat(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    alice = x_api.add_user("alice_trades")
    old = [
        x_api.post(alice, f"@exchange_support report {i}", at=ago(minutes=60 - i))
        for i in range(23)
    ]
    adapter = adapter_for(max_pages_per_fetch=2)
    first = await adapter.fetch(None, 10)
    assert first.more and len(first.messages) == 10
    # Posts that arrive in the middle of the walk are read after it, not lost.
    late = [x_api.post(alice, f"@exchange_support late {i}") for i in range(3)]
    batches, cursor = await drain(adapter, first.next_cursor, 10)
    assert cursor["streams"]["mentions"] == {"since_id": old[-1]}
    next_poll, cursor = await drain(adapter, cursor, 10)
    seen = [m.external_id for b in (first, *batches, *next_poll) for m in b.messages]
    assert sorted(seen) == sorted(f"tweet:{i}" for i in old + late)
    assert len(seen) == len(set(seen))
    assert all(len(b.messages) <= 10 for b in batches)
    assert any("pagination_token" in call.query for call in x_api.calls(MENTIONS))
    assert cursor["streams"]["mentions"] == {"since_id": late[-1]}


async def test_dms_are_read_down_to_since_id_and_our_own_dms_are_skipped(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    bob = x_api.add_user("bob_hodl", "Bob")
    first = x_api.add_dm(bob, "my account is locked", at=ago(minutes=30))
    x_api.add_dm(x_api.account, "Hello Bob, reference FB-AAAA-BBBB", at=ago(minutes=29))
    adapter = adapter_for(mentions=False, direct_messages=True)
    batch = await adapter.fetch(None, 50)
    [message] = batch.messages
    assert message.external_id == f"dm:{first}"
    assert message.meta["public"] is False
    assert message.sender.handle == "@bob_hodl"
    assert message.thread_key.startswith(f"dm:1000-{bob.id}:")
    again = x_api.add_dm(bob, "any news?")
    later = await adapter.fetch(batch.next_cursor, 50)
    assert [m.external_id for m in later.messages] == [f"dm:{again}"]
    assert all(call.auth == "oauth1" for call in x_api.calls(DM_EVENTS))


async def test_a_post_found_by_mentions_and_a_search_is_one_message_and_own_posts_are_skipped(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    alice = x_api.add_user("alice_trades")
    both = x_api.post(alice, "@exchange_support Example Exchange froze my card", at=ago(minutes=3))
    only_search = x_api.post(alice, "Example Exchange is down again?", at=ago(minutes=2))
    x_api.post(x_api.account, "Example Exchange maintenance tonight", at=ago(minutes=1))
    adapter = adapter_for(searches=[{"name": "brand", "query": '"Example Exchange"'}])
    batch = await adapter.fetch(None, 50)
    by_id = {m.external_id: m for m in batch.messages}
    assert set(by_id) == {f"tweet:{both}", f"tweet:{only_search}"}
    assert by_id[f"tweet:{both}"].meta["stream"] == ["mentions", "search:brand"]
    assert by_id[f"tweet:{only_search}"].meta["stream"] == ["search:brand"]
    [search] = x_api.calls(SEARCH)
    assert search.query["query"] == '"Example Exchange"'
    assert search.query["sort_order"] == "recency"


# --- the recorded corpus -------------------------------------------------------------------


async def test_recorded_mentions_response_is_read_with_its_rate_limit_headers(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    recorded = Canned.from_recording(RECORDED / "test_asyncclient_get_users_mentions.00.json")
    body = dict(recorded.body)
    body["meta"] = {k: v for k, v in body["meta"].items() if k != "next_token"}  # not recorded
    x_api.script(MENTIONS, Canned(recorded.status, body, recorded.headers))
    adapter = adapter_for(user_id="783214")
    batch = await adapter.fetch(None, 50)
    assert [m.external_id for m in batch.messages] == [
        "tweet:1578522395434192896",
        "tweet:1578522401263919106",
    ]
    message = batch.messages[0]
    assert message.text.startswith(".@Twitter #PBS says")
    assert "sender unknown" in message.notes[0]  # the recording asked for no expansions
    # No created_at was asked for: the time comes from the id, just before the response's Date.
    answered = datetime(2022, 10, 7, 23, 7, 41, tzinfo=UTC)
    assert timedelta(0) < answered - message.received_at < timedelta(minutes=1)
    assert adapter._book.remaining(MENTIONS) == 449
    assert batch.more is False and batch.next_cursor["streams"]["mentions"]["since_id"] == (
        "1578522401263919106"
    )


@pytest.mark.parametrize(
    ("corpus_file", "line"),
    [
        ("kpop.jsonl", 0),
        ("brexit.jsonl", 0),
        ("entities_test.jsonl", 0),
        ("withheld.jsonl", 3),
        ("withheld.jsonl", 4),
        ("noflat.jsonl", 0),
        ("media_policy_violation_on.jsonl", 0),
    ],
)
async def test_every_post_of_a_recorded_page_is_stored_or_dead_lettered(
    x_api: LoopbackXApi,
    adapter_for: Callable[..., TwitterAdapter],
    corpus_file: str,
    line: int,
) -> None:
    page = twarc_page(corpus_file, line)
    page.get("meta", {}).pop("next_token", None)
    x_api.script(MENTIONS, Canned(200, page))
    adapter = adapter_for(user_id="1")
    batch = await adapter.fetch(None, 1000)
    assert len(batch.messages) + len(batch.failures) == len({t["id"] for t in page["data"]})
    users = {u["id"]: u for u in page["includes"]["users"]}
    for message in batch.messages:
        assert message.channel == "twitter" and message.received_at.tzinfo is UTC
        tweet_id = message.external_id.removeprefix("tweet:")
        author = next(t["author_id"] for t in page["data"] if t["id"] == tweet_id)
        assert message.sender.id == author
        assert message.sender.handle == (f"@{users[author]['username']}" if author in users else "")
        assert "t.co/" not in message.text or "https://t.co" in message.full_text


async def test_partial_errors_name_the_deleted_post_a_reply_answers(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    x_api.script(MENTIONS, Canned(200, twarc_page("withheld.jsonl", 2)))
    batch = await adapter_for(user_id="1").fetch(None, 50)
    [message] = batch.messages
    assert message.thread_key == "tweet:506694458445152256"
    assert message.in_reply_to == "tweet:506694458445152256"
    assert any("506694458445152256 not available (Could not find tweet" in n for n in message.notes)


async def test_a_media_only_post_is_stored_with_its_media_and_a_note(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    page = twarc_page("streaming_output_with_error.jsonl", 0)
    page["data"] = [page["data"]]  # a filtered-stream message: one post, as a search page holds
    page.pop("matching_rules", None)
    page["data"][0]["text"] = "https://t.co/YbMgHU5xRX"  # the post without its quote link
    page["data"][0]["entities"]["urls"] = [
        u for u in page["data"][0]["entities"]["urls"] if u["url"] == "https://t.co/YbMgHU5xRX"
    ]
    x_api.script(MENTIONS, Canned(200, page))
    [message] = (await adapter_for(user_id="1").fetch(None, 50)).messages
    assert message.text == ""
    assert message.full_text.startswith("https://twitter.com/blackheart_265/status/")
    assert message.notes[0] == "media only: photo"
    assert [a.content_type for a in message.attachments] == ["image/jpeg"]
    assert message.meta["media"][0]["media_key"] == "3_1377650087799754753"


async def test_recorded_media_post_keeps_its_words_without_the_media_link(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    x_api.script(MENTIONS, Canned(200, twarc_page("media_tweet.jsonl")))
    [message] = (await adapter_for(user_id="1").fetch(None, 50)).messages
    assert message.text == "She's GOING with it! 🐍"
    assert (
        "https://twitter.com/IgorBrigadir/status/1558553189766631429/video/1" in message.full_text
    )
    assert [a.content_type for a in message.attachments] == ["video/mp4"]


async def test_recorded_dm_events_without_sender_are_stored_with_a_note(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    recording = RECORDED / "test_asyncclient_manage_and_lookup_direct_messages.04.json"
    canned = Canned.from_recording(recording)
    body = dict(canned.body)
    body["meta"] = {"result_count": 2}  # the recorded next_token would lead off the recording
    x_api.script(DM_EVENTS, Canned(200, body, canned.headers))
    batch = await adapter_for(user_id="1", mentions=False, direct_messages=True).fetch(None, 50)
    assert [m.text for m in batch.messages] == ["Testing 1", "Testing 2"]
    assert all("sender unknown" in m.notes[0] for m in batch.messages)


# --- bad input -----------------------------------------------------------------------------


async def test_items_without_id_or_text_are_dead_lettered_and_the_rest_stored(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    good = {"id": "1578522401263919106", "text": "@exchange_support hello", "author_id": "5"}
    page = {
        "data": [
            good,
            {"text": "no id here"},
            {"id": "1578522401263919100", "author_id": "5"},
            "not an object",
        ],
        "includes": {"users": [{"id": "5", "username": "five", "name": "Five"}]},
        "meta": {"result_count": 4},
    }
    x_api.script(MENTIONS, Canned(200, page))
    batch = await adapter_for(user_id="1").fetch(None, 50)
    assert [m.external_id for m in batch.messages] == ["tweet:1578522401263919106"]
    reasons = sorted(f.error for f in batch.failures)
    assert any("without a valid id" in r for r in reasons)
    assert any("no text and no media" in r for r in reasons)
    assert any("str where a JSON object was expected" in r for r in reasons)
    assert "tweet:1578522401263919100" in {f.external_id for f in batch.failures}


async def test_a_deleted_account_is_stored_without_a_handle_and_a_reason(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    gone = x_api.add_user("gone_user", deleted=True)
    post = x_api.post(gone, "@exchange_support where is my money")
    [message] = (await adapter_for().fetch(None, 50)).messages
    assert message.external_id == f"tweet:{post}"
    assert message.sender == Identity("twitter", gone.id, "")
    assert "Could not find user with author_id" in message.notes[0]


async def test_a_post_answering_a_protected_account_notes_it_could_not_be_seen(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    hidden = x_api.add_user("private_person", protected=True)
    alice = x_api.add_user("alice_trades")
    parent = x_api.post(hidden, "something private", at=ago(minutes=2))
    x_api.post(alice, "@exchange_support @private_person same here", reply_to=parent)
    messages = (await adapter_for().fetch(None, 50)).messages
    answer = messages[-1]
    assert any("not authorized" in note for note in answer.notes)
    assert answer.thread_key == f"tweet:{parent}"


async def test_a_broken_page_is_retried_then_dead_lettered_and_the_stream_moves_on(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    truncated = (TWARC / "streaming_output_with_error.jsonl").read_bytes().splitlines()[-1]
    x_api.script(MENTIONS, *[Canned.broken(truncated)] * 2)
    bob = x_api.add_user("bob_hodl")
    dm = x_api.add_dm(bob, "hello")
    adapter = adapter_for(direct_messages=True, max_attempts=2)
    first = await adapter.fetch(None, 50)
    assert [m.external_id for m in first.messages] == [f"dm:{dm}"]  # the DMs go on
    assert first.failures == () and "mentions" not in first.next_cursor["streams"]
    second = await adapter.fetch(first.next_cursor, 50)
    [failure] = second.failures
    assert "not JSON" in failure.error and "failed 2 times" in failure.error
    assert failure.size_bytes == len(truncated)
    alice = x_api.add_user("alice_trades")
    after = x_api.post(alice, "@exchange_support are you there?")
    third = await adapter.fetch(second.next_cursor, 50)
    assert [m.external_id for m in third.messages] == [f"tweet:{after}"]


async def test_a_broken_page_on_every_stream_is_a_retryable_error(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    x_api.script(MENTIONS, Canned.broken(b"<html>bad gateway</html>"))
    with pytest.raises(RetryableError, match="not JSON"):
        await adapter_for().fetch(None, 50)


# --- rate limits and failures --------------------------------------------------------------


async def test_an_exhausted_window_is_not_called_until_its_reset_and_others_go_on(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    x_api.set_limit(MENTIONS, 1, reset_in_s=600)
    bob = x_api.add_user("bob_hodl")
    adapter = adapter_for(direct_messages=True)
    first = await adapter.fetch(None, 50)  # mentions' last call of the window
    x_api.add_dm(bob, "hello")
    second = await adapter.fetch(first.next_cursor, 50)
    assert len(second.messages) == 1
    assert len(x_api.calls(MENTIONS)) == 1 and len(x_api.calls(DM_EVENTS)) == 2
    only_mentions = adapter_for()
    with pytest.raises(RateLimitedError) as caught:
        await only_mentions.fetch(None, 50)
    assert len(x_api.calls(MENTIONS)) == 2  # the new adapter learned the window from a 429
    assert 590 <= (caught.value.defer_s or 0) <= 601
    with pytest.raises(RateLimitedError):
        await only_mentions.fetch(None, 50)
    assert len(x_api.calls(MENTIONS)) == 2  # ... and does not call it again


async def test_a_429_after_other_streams_stores_them_then_backs_off_until_the_reset(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    alice = x_api.add_user("alice_trades")
    x_api.post(alice, "@exchange_support help", at=ago(minutes=1))
    reset = datetime.now(UTC) + timedelta(minutes=12)
    x_api.script(DM_EVENTS, Canned.rate_limited(reset))
    adapter = adapter_for(direct_messages=True)
    first = await adapter.fetch(None, 50)
    assert len(first.messages) == 1 and first.more
    with pytest.raises(RateLimitedError) as caught:
        await adapter.fetch(first.next_cursor, 50)
    assert caught.value.endpoint == DM_EVENTS
    assert 700 <= (caught.value.defer_s or 0) <= 721
    assert len(x_api.calls(MENTIONS)) == 1


async def test_server_errors_are_retried_within_the_call_then_raised_as_retryable(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    failure = Canned(503, {"title": "Service Unavailable", "detail": "over capacity"})
    x_api.script(MENTIONS, failure, failure)
    alice = x_api.add_user("alice_trades")
    x_api.post(alice, "@exchange_support hi")
    adapter = adapter_for()
    assert len((await adapter.fetch(None, 50)).messages) == 1
    x_api.script(MENTIONS, *[Canned(500, {"title": "Internal Error"})] * 3)
    with pytest.raises(RetryableError, match="500"):
        await adapter.fetch(None, 50)


async def test_refused_credentials_are_a_permanent_error_naming_the_endpoint(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("X_BEARER", "revoked")
    with pytest.raises(PermanentError, match=r"refused the credentials \(401\).*users/by/username"):
        await adapter_for().open()
    x_api.script(MENTIONS, Canned(403, {"title": "Forbidden", "detail": "client-not-enrolled"}))
    with pytest.raises(PermanentError, match=r"403.*client-not-enrolled"):
        await adapter_for(user_id="1000", bearer_token_env="X_AT").fetch(None, 50)


async def test_an_unreachable_api_is_retryable(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    adapter = adapter_for(user_id="1000")
    await x_api.stop()
    with pytest.raises(RetryableError, match="cannot connect"):
        await adapter.fetch(None, 50)


# --- sending -------------------------------------------------------------------------------


async def test_a_mention_is_answered_publicly_and_a_dm_by_dm(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    alice = x_api.add_user("alice_trades")
    bob = x_api.add_user("bob_hodl")
    post = x_api.post(alice, "@exchange_support help")
    adapter = adapter_for()
    public = await adapter.send(reply_to(f"tweet:{post}", Identity("twitter", alice.id, "@a")))
    private = await adapter.send(reply_to("dm:123", Identity("twitter", bob.id, "@bob_hodl"), "Hi"))
    assert public.outcome == "sent" and public.external_id == f"tweet:{x_api.replies[0]['id']}"
    assert x_api.replies[0]["in_reply_to_tweet_id"] == post
    assert private.outcome == "sent" and x_api.sent_dms[0]["recipient_id"] == bob.id
    assert x_api.sent_dms[0]["text"] == "Hi"
    assert {call.auth for call in x_api.received} == {"oauth1"}


async def test_send_failures_are_results_never_exceptions(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    closed = x_api.add_user("closed_dms", accepts_dms=False)
    adapter = adapter_for()
    refused = await adapter.send(reply_to("dm:1", Identity("twitter", closed.id, "@closed_dms")))
    assert refused.outcome == "failed" and "cannot send messages" in refused.reason
    deleted = await adapter.send(
        reply_to("tweet:1578522401263919106", Identity("twitter", "5", "@x"))
    )
    assert deleted.outcome == "failed" and "403" in deleted.reason
    x_api.script("POST /2/tweets", Canned(500, {"title": "Internal Error"}))
    unknown = await adapter.send(reply_to("tweet:1", Identity("twitter", "5", "@x")))
    assert unknown.outcome == "failed" and unknown.reason.startswith("outcome unknown")
    x_api.script("POST /2/tweets", Canned(503, {"title": "Service Unavailable"}))
    busy = await adapter.send(reply_to("tweet:1", Identity("twitter", "5", "@x")))
    assert busy.outcome == "retry"
    assert len(x_api.calls("POST /2/tweets")) == 3  # a POST is never repeated within a send
    x_api.script("POST /2/tweets", Canned.rate_limited(datetime.now(UTC) + timedelta(minutes=5)))
    limited = await adapter.send(reply_to("tweet:1", Identity("twitter", "5", "@x")))
    assert limited.outcome == "retry" and 280 <= (limited.defer_s or 0) <= 301
    again = await adapter.send(reply_to("tweet:1", Identity("twitter", "5", "@x")))
    assert again.outcome == "retry"
    assert len(x_api.calls("POST /2/tweets")) == 4  # not called again before the reset


async def test_a_source_that_does_not_send_says_so(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    adapter = adapter_for(send_replies=False, user_auth="none")
    assert adapter.can_send() is False
    result = await adapter.send(reply_to("tweet:1", Identity("twitter", "5", "@x")))
    assert result.outcome == "failed"
    assert x_api.received == []


# --- what the adapter sends, checked against the X API v2 OpenAPI description ---------------


def spec_parameters() -> dict[str, dict[str, set[str] | None]]:
    spec = json.loads((X_CORPUS / "openapi.json").read_text(encoding="utf-8"))
    found: dict[str, dict[str, set[str] | None]] = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "parameters" not in operation:
                continue
            key = f"{method.upper()} {path.replace('{id}', ':id')}"
            params = found.setdefault(key, {})
            for param in operation["parameters"]:
                if "$ref" in param:
                    param = spec["components"]["parameters"][param["$ref"].rsplit("/", 1)[-1]]
                if param.get("in") == "query":
                    enum = param.get("schema", {}).get("items", {}).get("enum")
                    params[param["name"]] = set(enum) if enum else None
    return found


async def test_query_parameters_sent_are_those_the_openapi_description_defines(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    alice = x_api.add_user("alice_trades")
    x_api.post(alice, "@exchange_support Example Exchange help")
    adapter = adapter_for(direct_messages=True, searches=[{"name": "b", "query": "Example"}])
    await adapter.open()
    await drain(adapter, None, 50)
    spec = spec_parameters()
    # The description renames tweet.fields "post.fields"; the API takes both spellings.
    aliases = {"tweet.fields": "post.fields"}
    for call in x_api.received:
        allowed = spec[call.endpoint.replace(":username", "{username}")]
        for name, value in call.query.items():
            spec_name = aliases.get(name, name)
            assert spec_name in allowed, f"{call.endpoint}: {name}"
            enum = allowed[spec_name]
            checked = ("user.fields", "media.fields", "dm_event.fields")
            if enum is not None and (name in checked or call.endpoint == DM_EVENTS):
                assert set(value.split(",")) <= enum, f"{call.endpoint}: {name}={value}"


def test_the_loopback_server_counts_length_as_x_does() -> None:
    assert weighted_length("a" * 280) == 280
    assert weighted_length("提币" * 70) == 280
    assert weighted_length("see https://support.example.com/new?ref=FB-1234-ABCD") == 4 + 23


async def test_an_oauth2_user_token_reads_and_sends_without_an_app_bearer(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("X_USER_TOKEN", "at-1")
    bob = x_api.add_user("bob_hodl")
    x_api.add_dm(bob, "hello")
    x_api.post(bob, "@exchange_support hi")
    with pytest.raises(ValueError, match="full-archive search takes the app's bearer token"):
        adapter_for(
            bearer_token_env=None,
            user_auth="oauth2",
            user_token_env="X_USER_TOKEN",
            searches=[{"name": "all", "query": "hi"}],
            search_endpoint="all",
        )
    adapter = adapter_for(
        bearer_token_env=None,
        user_auth="oauth2",
        user_token_env="X_USER_TOKEN",
        direct_messages=True,
    )
    batch = await adapter.fetch(None, 50)
    assert len(batch.messages) == 2
    sent = await adapter.send(reply_to(batch.messages[0].external_id, batch.messages[0].sender))
    assert sent.outcome == "sent"
    assert {call.auth for call in x_api.received} == {"bearer"}


async def test_full_archive_search_uses_its_own_endpoint(
    x_api: LoopbackXApi, adapter_for: Callable[..., TwitterAdapter]
) -> None:
    alice = x_api.add_user("alice_trades")
    post = x_api.post(alice, "Example Exchange listed a new coin", at=ago(days=40))
    adapter = adapter_for(
        mentions=False, searches=[{"name": "brand", "query": "Example"}], search_endpoint="all"
    )
    [message] = (await adapter.fetch(None, 50)).messages
    assert message.external_id == f"tweet:{post}"
    [call] = x_api.calls("GET /2/tweets/search/all")
    assert "sort_order" not in call.query and call.auth == "bearer"
