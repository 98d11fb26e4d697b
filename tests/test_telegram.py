"""The Telegram source: telethon's real client against a Telegram server on loopback, and the
real exported chats of ``../shared/corpora/telegram-export`` through the normaliser.

What these tests cannot show without a Telegram account (and how an operator checks it with
``inbox-daemon check-source NAME``): that Telegram really announces a bot's supergroup news in
``getDifference`` (support groups are followed from the start regardless), how long it holds a
bot's updates, and the exact error texts of privacy-mode or kicked bots.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from telethon.extensions import BinaryReader
from telethon.tl import functions, types

from inbox_daemon.config import load_settings
from inbox_daemon.errors import ConfigError, PermanentError, RetryableError
from inbox_daemon.interfaces import Batch, FailedMessage, Identity, OutboundReply
from inbox_daemon.pipeline.normalise import clean_text
from inbox_daemon.queue import show_item
from inbox_daemon.scheduler import backoff_delay_s
from inbox_daemon.storage.schema import dead_letters, feedback_records, outbox
from inbox_telegram.adapter import TelegramAdapter
from inbox_telegram.cursor import BotCursor, UserCursor
from inbox_telegram.normalise import Peers, to_message
from inbox_telegram.send import random_id_for
from inbox_telegram.settings import TelegramSourceSettings
from inbox_telegram.updates import Converter, Scope
from tests.daemon import migrated_engine, run_once
from tests.telegram_export import exported_chats, flatten
from tests.telegram_server import FakeTelegram

pytestmark = pytest.mark.timeout(60)

BOT_ID = 777
ALICE, BOB = 501, 502
SUPPORT, LOUNGE, SMALL_GROUP = 900, 901, 55


def bot_user() -> Any:
    return types.User(
        BOT_ID,
        is_self=True,
        bot=True,
        bot_info_version=1,
        access_hash=1,
        first_name="ACME Support",
        username="acme_support_bot",
    )


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(bot_user()) as server:
        world = server.world
        world.add_user(ALICE, "Alice", "alice_w")
        world.add_user(BOB, "Bob")
        world.add_supergroup(SUPPORT, "ACME help desk", "acme_help")
        world.add_supergroup(LOUNGE, "Crypto lounge")
        world.add_group(SMALL_GROUP, "VIP traders")
        yield server
        assert server.failures == []


@pytest.fixture
def secrets(telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TG_API_HASH", "0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("TG_BOT_TOKEN", telegram.world.bot_token)
    monkeypatch.setenv("TG_SESSION", telegram.session_string())


def bot_settings(**overrides: Any) -> TelegramSourceSettings:
    values: dict[str, Any] = {
        "name": "tg-bot",
        "kind": "telegram",
        "mode": "bot",
        "api_id": 12345,
        "api_hash_env": "TG_API_HASH",
        "bot_token_env": "TG_BOT_TOKEN",
        "session_env": "TG_SESSION",
        "support_chats": ("@acme_help",),
        "timeout_s": 5,
    }
    return TelegramSourceSettings.model_validate(values | overrides)


@pytest.fixture
async def bot(secrets: None) -> AsyncIterator[TelegramAdapter]:
    adapter = TelegramAdapter(bot_settings())
    await adapter.open()
    yield adapter
    await adapter.close()


def private(user_id: int) -> Any:
    return types.PeerUser(user_id)


def group(channel_id: int) -> Any:
    return types.PeerChannel(channel_id)


def marked(channel_id: int) -> int:
    return -1_000_000_000_000 - channel_id


def by_user(user_id: int) -> Any:
    return types.PeerUser(user_id)


async def drain(adapter: TelegramAdapter, cursor: Any, limit: int = 100) -> tuple[Batch, ...]:
    """Fetch until the adapter says there is no more, as the daemon does."""
    batches = []
    for _ in range(50):
        batch = await adapter.fetch(cursor, limit)
        batches.append(batch)
        cursor = batch.next_cursor
        if not batch.more:
            return tuple(batches)
    raise AssertionError("the source never ran dry")


def ids(batches: tuple[Batch, ...]) -> list[str]:
    return [m.external_id for b in batches for m in b.messages]


# The exported chats through the normaliser --------------------------------------------


def test_every_exported_message_normalises_with_its_text_replies_forwards_edits_and_media() -> None:
    totals: Counter[str] = Counter()
    for chat in exported_chats():
        peers = Peers.of(chat.users.values(), [chat.channel], BOT_ID, threads={})
        for item, message in zip(chat.raw["messages"], chat.messages, strict=True):
            wire = BinaryReader(bytes(message)).tgread_object()  # what telethon reads off the wire
            record = to_message(wire, peers)
            totals["messages"] += 1
            assert record.external_id == f"{chat.marked_id}:{item['id']}"
            assert record.channel == "telegram"
            assert record.meta["public"] is True
            assert record.reply_to is not None and record.reply_to.id == str(chat.marked_id)
            text, entities = flatten(item["text"])
            assert record.text == clean_text(text)
            assert len(record.meta.get("entities", ())) == len(entities)
            if "reply_to_message_id" in item:
                totals["replies"] += 1
                assert record.in_reply_to == f"{chat.marked_id}:{item['reply_to_message_id']}"
            if item["from"] is None:
                totals["deleted"] += 1
                assert record.sender.display_name == "Deleted Account"
                assert record.sender.handle == ""
                assert record.meta["sender_deleted"] is True
            if "edited" in item:
                totals["edited"] += 1
                assert any(note.startswith("edited at") for note in record.notes)
            if "forwarded_from" in item:
                totals["forwards"] += 1
                assert record.meta["forwarded_from"]["name"]
            if "file" in item or "photo" in item:
                totals["attachments"] += 1
                [attachment] = record.attachments
                assert attachment.size_bytes > 0 and attachment.content_type
            if not text and ("file" in item or "photo" in item or "poll" in item):
                totals["media only"] += 1
                assert any(note.startswith("no text:") for note in record.notes)
                assert record.full_text
            if "poll" in item:
                assert item["poll"]["question"] in record.full_text
    assert totals == {
        "messages": 1179,
        "replies": 555,
        "deleted": 56,
        "edited": 113,
        "forwards": 21,
        "attachments": 45,
        "media only": totals["media only"],
    }
    assert totals["media only"] >= 20


def test_replies_to_replies_join_the_thread_of_the_first_message() -> None:
    chat = next(c for c in exported_chats() if c.slug == "database-isolation-level")
    threads: dict[str, str] = {}
    converter = Converter(Scope(BOT_ID, mentions_only=False), threads)
    peers = Peers.of(chat.users.values(), [chat.channel], BOT_ID)
    records = {}
    for message in chat.messages:
        record = converter.convert(message, peers)
        assert record is not None and not isinstance(record, FailedMessage)
        records[record.external_id] = record
    for record in records.values():
        parent = records.get(record.in_reply_to or "")
        if parent is not None:
            assert record.thread_key == parent.thread_key
    grandchildren = [
        (record, records[parent.in_reply_to])
        for record in records.values()
        if (parent := records.get(record.in_reply_to or "")) and parent.in_reply_to in records
    ]
    assert len(grandchildren) >= 5
    for record, grandparent in grandchildren:
        assert record.thread_key == grandparent.thread_key


def test_entity_text_is_cut_at_utf16_offsets_after_emoji() -> None:
    text, entities = flatten(
        ["🇲🇨👍🏽 ask ", {"type": "mention", "text": "@acme_support_bot"}, " now"]
    )
    message = types.Message(
        1, private(ALICE), date=_when(), message=text, entities=entities, from_id=None
    )
    record = to_message(message, Peers.of([], [], BOT_ID))
    [mention] = record.meta["entities"]
    assert mention["text"] == "@acme_support_bot"
    assert record.text == text


def test_exported_indonesian_chats_are_detected_as_indonesian() -> None:
    from inbox_daemon.pipeline.language import detect_language

    chat = next(c for c in exported_chats() if c.slug == "software-testing")
    peers = Peers.of(chat.users.values(), [chat.channel], BOT_ID)
    languages = Counter(
        detect_language(to_message(m, peers).text)
        for m in chat.messages
        if len(m.message or "") > 80
    )
    assert languages.most_common(1)[0][0] == "id"


def test_unknown_message_types_and_broken_messages_are_dead_letters_with_a_reason() -> None:
    converter = Converter(Scope(BOT_ID), {})
    peers = Peers.of([], [], BOT_ID)
    unknown = converter.convert(types.PollAnswer(types.TextWithEntities("x", []), b"1"), peers)
    assert isinstance(unknown, FailedMessage)
    assert "unknown Telegram message type PollAnswer" in unknown.error
    no_date = types.Message(7, private(ALICE), date=None, message="hello")
    broken = converter.convert(no_date, peers)
    assert isinstance(broken, FailedMessage)
    assert broken.external_id == f"{ALICE}@0:7" or broken.external_id.endswith(":7")
    assert "no date" in broken.error
    service = types.MessageService(8, private(ALICE), _when(), types.MessageActionPinMessage())
    assert converter.convert(service, peers) is None


def test_unsupported_media_is_stored_with_a_note() -> None:
    message = types.Message(
        9, private(ALICE), date=_when(), message="", media=types.MessageMediaUnsupported()
    )
    record = to_message(message, Peers.of([], [], BOT_ID))
    assert record.meta["media"]["type"] == "unsupported"
    assert any("does not read" in note for note in record.notes)


def _when() -> Any:
    from datetime import UTC, datetime

    return datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


# A bot against the loopback server ------------------------------------------------------


async def test_bot_starts_at_the_current_state_and_keeps_private_support_and_mentions(
    telegram: FakeTelegram, bot: TelegramAdapter
) -> None:
    world = telegram.world
    world.post(private(ALICE), "before the source existed")
    first = await bot.fetch(None, 100)
    assert first.messages == () and not first.more
    assert first.next_cursor["channels"] == {
        str(SUPPORT): {"pts": 10, "access_hash": SUPPORT * 3, "after_id": 0, "after_pts": 0}
    }
    world.post(private(ALICE), "my withdrawal is stuck")
    world.post(group(SUPPORT), "deposit not credited", from_id=by_user(BOB))
    world.post(group(LOUNGE), "wen moon", from_id=by_user(BOB))
    world.post(
        group(LOUNGE), "@acme_support_bot my KYC failed", from_id=by_user(ALICE), mentioned=True
    )
    world.post(types.PeerChat(SMALL_GROUP), "chatter", from_id=by_user(BOB))
    world.post(private(BOB), "our own answer", out=True)
    batches = await drain(bot, first.next_cursor)
    assert ids(batches) == [
        f"{ALICE}@{BOT_ID}:2",
        f"{marked(SUPPORT)}:1",
        f"{marked(LOUNGE)}:2",
    ]
    private_message, support, mention = (m for b in batches for m in b.messages)
    assert private_message.meta["public"] is False
    assert private_message.sender == Identity("telegram", str(ALICE), "@alice_w", "Alice")
    assert support.meta["public"] is True and support.reply_to is not None
    assert support.reply_to.id == f"{marked(SUPPORT)}"
    assert mention.meta["mentioned"] is True
    assert str(LOUNGE) in batches[-1].next_cursor["channels"]  # revealed by the difference
    assert bot.own_addresses() == {str(BOT_ID), "@acme_support_bot"}


async def test_a_restarted_bot_resumes_from_the_committed_cursor_losing_nothing(
    telegram: FakeTelegram, secrets: None
) -> None:
    world = telegram.world
    first = TelegramAdapter(bot_settings())
    await first.open()
    cursor = (await first.fetch(None, 10)).next_cursor
    world.post(private(ALICE), "one")
    cursor = (await drain(first, cursor))[-1].next_cursor
    await first.close()
    world.post(private(ALICE), "two")  # while the daemon is down
    world.post(group(SUPPORT), "three", from_id=by_user(BOB))
    second = TelegramAdapter(bot_settings())
    await second.open()
    try:
        batches = await drain(second, cursor)
    finally:
        await second.close()
    assert [m.text for b in batches for m in b.messages] == ["two", "three"]


async def test_edit_keeps_the_external_id_and_carries_the_new_text(
    telegram: FakeTelegram, bot: TelegramAdapter
) -> None:
    world = telegram.world
    cursor = (await bot.fetch(None, 10)).next_cursor
    message = world.post(group(SUPPORT), "withdrawl stuk", from_id=by_user(ALICE))
    first = await drain(bot, cursor)
    world.edit(message, "withdrawal stuck since Monday")
    second = await drain(bot, first[-1].next_cursor)
    [original], [edited] = (
        [m for b in first for m in b.messages],
        [m for b in second for m in b.messages],
    )
    assert edited.external_id == original.external_id
    assert edited.text == "withdrawal stuck since Monday"
    assert "edit_date" in edited.meta and "edit_date" not in original.meta
    assert original.revision == 0
    assert edited.revision == int(message.edit_date.timestamp()) > 0


async def test_a_message_edited_before_it_is_read_comes_once_with_its_new_text(
    telegram: FakeTelegram, bot: TelegramAdapter
) -> None:
    world = telegram.world
    cursor = (await bot.fetch(None, 10)).next_cursor
    message = world.post(private(ALICE), "draft")
    world.edit(message, "final words")
    [only] = [m for b in await drain(bot, cursor) for m in b.messages]
    assert only.text == "final words"


async def test_the_buffer_is_bounded_and_a_cut_response_is_read_again_from_the_cursor(
    telegram: FakeTelegram, secrets: None
) -> None:
    world = telegram.world
    adapter = TelegramAdapter(bot_settings(max_buffered_updates=3, support_chats=()))
    await adapter.open()
    try:
        cursor = (await adapter.fetch(None, 10)).next_cursor
        for n in range(8):
            world.post(private(ALICE), f"message {n}")
        seen = []
        for _ in range(20):
            batch = await adapter.fetch(cursor, 2)
            assert len(batch.messages) <= 2
            assert adapter._round is None or adapter._round.buffered() <= 3
            seen += [m.text for m in batch.messages]
            cursor = batch.next_cursor
            if not batch.more:
                break
    finally:
        await adapter.close()
    assert seen == [f"message {n}" for n in range(8)]
    assert cursor["common"]["after_id"] == 0 and cursor["common"]["pts"] == world.common_pts
    assert len(telegram.calls(functions.updates.GetDifferenceRequest)) >= 3  # re-read when cut


async def test_a_batch_that_was_not_committed_is_read_again_and_nothing_is_skipped(
    telegram: FakeTelegram, bot: TelegramAdapter
) -> None:
    world = telegram.world
    cursor = (await bot.fetch(None, 10)).next_cursor
    for n in range(5):
        world.post(private(ALICE), f"m{n}")
    committed = await bot.fetch(cursor, 2)
    lost = await bot.fetch(committed.next_cursor, 2)  # this batch's commit fails
    assert [m.text for m in lost.messages] == ["m2", "m3"]
    again = await drain(bot, committed.next_cursor, limit=2)  # the daemon retries
    assert [m.text for b in again for m in b.messages] == ["m2", "m3", "m4"]


async def test_difference_slices_are_followed_to_the_end(
    telegram: FakeTelegram, bot: TelegramAdapter
) -> None:
    world = telegram.world
    world.slice_size = 2
    cursor = (await bot.fetch(None, 10)).next_cursor
    for n in range(5):
        world.post(private(BOB), f"slice {n}")
    batches = await drain(bot, cursor)
    assert [m.text for b in batches for m in b.messages] == [f"slice {n}" for n in range(5)]
    assert batches[-1].next_cursor["common"]["pts"] == world.common_pts


async def test_flood_wait_becomes_a_retryable_error_with_the_stated_delay(
    telegram: FakeTelegram, bot: TelegramAdapter
) -> None:
    cursor = (await bot.fetch(None, 10)).next_cursor
    telegram.world.post(private(ALICE), "hello")
    telegram.flood_next(functions.updates.GetDifferenceRequest, 17)
    with pytest.raises(RetryableError) as raised:
        await bot.fetch(cursor, 10)
    assert raised.value.defer_s == 17
    from inbox_daemon.config import ServiceSettings

    assert backoff_delay_s(1, ServiceSettings(), raised.value) >= 17
    [message] = [m for b in await drain(bot, cursor) for m in b.messages]
    assert message.text == "hello"


async def test_a_dropped_connection_is_reopened_on_the_next_fetch(
    telegram: FakeTelegram, bot: TelegramAdapter
) -> None:
    cursor = (await bot.fetch(None, 10)).next_cursor
    before = telegram.connections
    telegram.drop_connections()
    for _ in range(100):  # the client notices the closed socket
        if not bot._client.is_connected():
            break
        await asyncio.sleep(0.02)
    telegram.world.post(private(ALICE), "still there?")
    [message] = [m for b in await drain(bot, cursor) for m in b.messages]
    assert message.text == "still there?"
    assert telegram.connections == before + 1


async def test_updates_telegram_no_longer_holds_become_a_visible_dead_letter(
    telegram: FakeTelegram, bot: TelegramAdapter
) -> None:
    world = telegram.world
    cursor = (await bot.fetch(None, 10)).next_cursor
    world.post(private(ALICE), "lost in the gap")
    world.post(group(SUPPORT), "support one", from_id=by_user(BOB))
    world.forget(None)
    world.forget(SUPPORT)
    batches = await drain(bot, cursor)
    gaps = [f for b in batches for f in b.failures]
    assert {g.external_id.split(":")[1] for g in gaps} == {"common", "channel"}
    assert all("no longer holds" in g.error for g in gaps)
    assert [m.text for b in batches for m in b.messages] == ["support one"]  # latest of the channel


async def test_an_update_telethon_cannot_parse_is_retried_then_isolated_and_skipped(
    telegram: FakeTelegram, bot: TelegramAdapter
) -> None:
    world = telegram.world
    cursor = (await bot.fetch(None, 10)).next_cursor
    world.post(group(SUPPORT), "unreadable", from_id=by_user(BOB))
    world.post(group(SUPPORT), "fine afterwards", from_id=by_user(BOB))
    telegram.break_next(functions.updates.GetChannelDifferenceRequest, times=4)
    for _ in range(2):  # max_attempts = 3: two retries for now
        with pytest.raises(RetryableError, match="cannot read"):
            await bot.fetch(cursor, 10)
    batches = await drain(bot, cursor)
    [dead] = [f for b in batches for f in b.failures]
    assert dead.external_id == f"unreadable:channel:{SUPPORT}:pts11"
    assert "0badc0de" in dead.error
    assert [m.text for b in batches for m in b.messages] == ["fine afterwards"]


async def test_a_group_the_bot_was_removed_from_stops_being_followed(
    telegram: FakeTelegram, bot: TelegramAdapter
) -> None:
    cursor = (await bot.fetch(None, 10)).next_cursor
    del telegram.world.channels[SUPPORT]
    telegram.world.post(private(ALICE), "hi")
    batches = await drain(bot, cursor)
    assert [m.text for b in batches for m in b.messages] == ["hi"]


async def test_a_bot_logs_in_with_its_token_and_a_wrong_token_is_a_permanent_error(
    telegram: FakeTelegram, secrets: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    telegram.world.authorized = False
    monkeypatch.setenv("TG_BOT_TOKEN", "123:wrong")
    with pytest.raises(PermanentError, match="bot token"):
        await TelegramAdapter(bot_settings()).open()
    monkeypatch.setenv("TG_BOT_TOKEN", telegram.world.bot_token)
    adapter = TelegramAdapter(bot_settings())
    await adapter.open()
    await adapter.close()
    assert telegram.calls(functions.auth.ImportBotAuthorizationRequest)


async def test_a_damaged_cursor_is_a_permanent_error_naming_the_field(bot: TelegramAdapter) -> None:
    with pytest.raises(PermanentError, match="'pts'"):
        await bot.fetch({"mode": "bot", "common": {"qts": 1}, "channels": {}}, 10)
    with pytest.raises(PermanentError, match="mode"):
        await bot.fetch(UserCursor().to_json(), 10)


# Replies --------------------------------------------------------------------------------


def reply_to(message: Any, text: str, key: str = "41") -> OutboundReply:
    return OutboundReply(
        idempotency_key=key,
        channel="telegram",
        recipient=message.reply_to,
        subject="",
        text=text,
        language="en",
        thread_key=message.thread_key,
        in_reply_to=message.external_id,
    )


async def test_a_reply_answers_the_message_and_a_retried_reply_is_not_posted_twice(
    telegram: FakeTelegram, bot: TelegramAdapter
) -> None:
    cursor = (await bot.fetch(None, 10)).next_cursor
    telegram.world.post(group(SUPPORT), "help", from_id=by_user(ALICE))
    [message] = [m for b in await drain(bot, cursor) for m in b.messages]
    first = await bot.send(reply_to(message, "Ref. FB-AAAA-BBBB"))
    again = await bot.send(reply_to(message, "Ref. FB-AAAA-BBBB"))
    assert first.outcome == again.outcome == "sent"
    [sent] = telegram.world.sent
    assert sent.reply_to.reply_to_msg_id == 1
    assert sent.random_id == random_id_for("tg-bot", "41")
    assert first.external_id == f"{marked(SUPPORT)}:2"


async def test_a_reply_that_timed_out_is_retried_without_a_second_copy(
    telegram: FakeTelegram, secrets: None
) -> None:
    adapter = TelegramAdapter(bot_settings(timeout_s=3))
    await adapter.open()
    try:
        cursor = (await adapter.fetch(None, 10)).next_cursor
        telegram.world.post(private(ALICE), "help")
        [message] = [m for b in await drain(adapter, cursor) for m in b.messages]
        telegram.delay_s[functions.messages.SendMessageRequest] = 3.5
        first = await adapter.send(reply_to(message, "Thanks"))
        telegram.delay_s.clear()
        # telethon pauses 2 s on RANDOM_ID_DUPLICATE (a 500): still within timeout_s.
        second = await adapter.send(reply_to(message, "Thanks"))
    finally:
        await adapter.close()
    assert first.outcome == "retry" and "did not answer" in first.reason
    assert second.outcome == "sent", second.reason
    assert len(telegram.world.sent) == 1  # Telegram refused the second copy by its random_id


async def test_a_flood_wait_on_send_is_a_retry_after_the_stated_seconds(
    telegram: FakeTelegram, bot: TelegramAdapter
) -> None:
    cursor = (await bot.fetch(None, 10)).next_cursor
    telegram.world.post(private(ALICE), "help")
    [message] = [m for b in await drain(bot, cursor) for m in b.messages]
    telegram.flood_next(functions.messages.SendMessageRequest, 30)
    result = await bot.send(reply_to(message, "Thanks"))
    assert (result.outcome, result.defer_s) == ("retry", 30)
    assert telegram.world.sent == []


# User accounts reading history ----------------------------------------------------------


async def test_a_user_account_reads_chat_history_after_its_min_id(
    secrets: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat = next(c for c in exported_chats() if c.slug == "praktik-load-balancer")
    me = types.User(4242, is_self=True, access_hash=9, first_name="Support agent")
    async with FakeTelegram(me) as server:
        world = server.world
        world.chats[chat.channel.id] = chat.channel
        world.channels[chat.channel.id] = []
        world.users.update(chat.users)
        for message in chat.messages:
            world.history.setdefault(chat.marked_id, {})[message.id] = message
        monkeypatch.setenv("TG_SESSION", server.session_string())
        settings = TelegramSourceSettings.model_validate(
            {
                "name": "tg-user",
                "kind": "telegram",
                "mode": "user",
                "api_id": 12345,
                "api_hash_env": "TG_API_HASH",
                "session_env": "TG_SESSION",
                "chats": [chat.marked_id],
                "backfill_days": 36500,
                "timeout_s": 5,
            }
        )
        adapter = TelegramAdapter(settings)
        await adapter.open()
        try:
            batches = await drain(adapter, None, limit=15)
            assert ids(batches) == [f"{chat.marked_id}:{m.id}" for m in chat.messages]
            assert sum(len(b.failures) for b in batches) == 0
            cursor = batches[-1].next_cursor
            assert cursor["chats"][str(chat.marked_id)]["min_id"] == chat.messages[-1].id
            assert (await adapter.fetch(cursor, 15)).messages == ()
            world.post(types.PeerChannel(chat.channel.id), "a new question", id=10**7)
            [new] = (await adapter.fetch(cursor, 15)).messages
            assert new.text == "a new question"
        finally:
            await adapter.close()
        assert server.calls(functions.messages.GetDialogsRequest)  # the numeric id was found


# Through the daemon ---------------------------------------------------------------------


@pytest.fixture
def config_path(tmp_path: Path, database: str, secrets: None) -> Path:
    path = tmp_path / "inbox.toml"
    path.write_text(
        f"""
config_version = 1
[storage]
url = "{database}"
[[sources]]
name = "tg-bot"
kind = "telegram"
mode = "bot"
api_id = 12345
api_hash_env = "TG_API_HASH"
bot_token_env = "TG_BOT_TOKEN"
session_env = "TG_SESSION"
support_chats = ["@acme_help"]
timeout_s = 5
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
async def engine(config_path: Path) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(config_path) as engine:
        yield engine


async def test_the_daemon_stores_acknowledges_in_private_and_publicly_and_applies_edits(
    telegram: FakeTelegram, config_path: Path, engine: AsyncEngine
) -> None:
    world = telegram.world
    assert (await run_once(config_path)).errors == {}  # the first poll takes the state
    world.post(private(ALICE), "My USDT withdrawal has been pending for two days, UID 52019374")
    asked = world.post(group(SUPPORT), "deposit of 2 ETH not credited", from_id=by_user(BOB))
    report = await run_once(config_path)
    assert report.errors == {}
    assert report.polls["tg-bot"].stored == 2
    assert report.delivery.sent == 2
    by_chat = {type(s.peer).__name__: s for s in world.sent}
    in_private, in_group = by_chat["InputPeerUser"], by_chat["InputPeerChannel"]
    assert "Hello Alice" in in_private.message
    assert "Bob" not in in_group.message and "ETH" not in in_group.message
    assert in_group.reply_to.reply_to_msg_id == asked.id
    async with engine.connect() as conn:
        records = (await conn.execute(select(feedback_records))).all()
        sent = (await conn.execute(select(outbox.c.state, outbox.c.external_id))).all()
    references = {r.external_id: r.reference for r in records}
    assert references[f"{ALICE}@{BOT_ID}:1"] in in_private.message
    assert references[f"{marked(SUPPORT)}:{asked.id}"] in in_group.message
    assert {state for state, _ in sent} == {"sent"}
    world.edit(asked, "deposit of 2 ETH not credited, tx 0xabc")
    again = await run_once(config_path)
    assert again.polls["tg-bot"].stored == 0 and again.polls["tg-bot"].absorbed == 1
    assert again.delivery.sent == 0 and len(world.sent) == 2
    edited_id = f"{marked(SUPPORT)}:{asked.id}"
    async with engine.connect() as conn:
        rows = (await conn.execute(select(feedback_records))).all()
        replies = (await conn.execute(select(outbox.c.id))).all()
    assert len(rows) == 2 and len(replies) == 2  # the record updated, no second one or reply
    [edited] = [row for row in rows if row.external_id == edited_id]
    assert edited.reference == references[edited_id]
    assert edited.text == "deposit of 2 ETH not credited, tx 0xabc"
    assert edited.revision == int(asked.edit_date.timestamp())
    assert any(note.startswith("edited at") for note in edited.notes)
    history = (await show_item(engine, edited.reference)).history
    assert [event.action for event in history] == ["edited"]


async def test_a_flood_wait_backs_the_source_off_for_the_stated_time(
    telegram: FakeTelegram, config_path: Path, engine: AsyncEngine
) -> None:
    await run_once(config_path)
    telegram.world.post(private(ALICE), "hello")
    telegram.flood_next(functions.updates.GetDifferenceRequest, 600)
    report = await run_once(config_path)
    assert "600 s" in report.errors["tg-bot"]
    from inbox_daemon.storage.repository import source_states

    [state] = await source_states(engine)
    assert state.backoff_until is not None and state.last_poll_at is not None
    assert (state.backoff_until - state.last_poll_at).total_seconds() >= 590
    async with engine.connect() as conn:
        assert (await conn.execute(select(dead_letters))).all() == []


def test_check_config_names_a_missing_bot_token(
    tmp_path: Path, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_settings(config_path)
    monkeypatch.delenv("TG_BOT_TOKEN")
    with pytest.raises(ConfigError, match=r"sources\[0\].*bot_token_env.*TG_BOT_TOKEN"):
        load_settings(config_path)
    broken = config_path.read_text(encoding="utf-8").replace('mode = "bot"', 'mode = "user"')
    path = tmp_path / "user.toml"
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(ConfigError, match="chats"):
        load_settings(path)


def test_the_example_config_documents_a_telegram_source() -> None:
    example = Path(__file__).resolve().parents[1] / "config" / "inbox.example.toml"
    text = example.read_text(encoding="utf-8")
    assert 'kind = "telegram"' in text
    for key in ("mode", "api_id", "bot_token_env", "session_env", "support_chats", "chats"):
        assert f"{key} =" in text


def test_a_bot_cursor_reads_back_what_it_wrote() -> None:
    cursor = BotCursor.from_json(
        {
            "mode": "bot",
            "common": {"pts": 5, "qts": 1, "date": 10, "seq": 2, "after_id": 3, "after_pts": 0},
            "channels": {"9": {"pts": 4, "access_hash": 8, "after_id": 0, "after_pts": 1}},
        }
    )
    assert BotCursor.from_json(cursor.to_json()) == cursor
