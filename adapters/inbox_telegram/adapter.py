"""The Telegram source: a bot's updates or a user account's chat history in, replies out.

- Bots read updates with ``updates.getDifference`` / ``updates.getChannelDifference`` from the
  state stored in the cursor (``pts``, ``qts``, ``date``, ``seq``, and ``pts`` per supergroup),
  committed with each batch: a restart loses nothing Telegram still holds. Telegram keeps a
  bot's pending updates for a limited time (about a day); an older gap comes back as
  ``differenceTooLong``, which is stored as a dead letter naming the lost range. A bot cannot
  read history, so a new bot source starts at its first update. The part of a response not
  yet handed to the daemon waits in a bounded buffer (``max_buffered_updates``, see
  :mod:`.updates`); when it would overflow, the rest is read again later from the cursor.
- In groups a bot sees every message only when its privacy mode is off (@BotFather,
  /setprivacy) or it is an administrator; otherwise only commands, mentions and replies to it.
  Outside ``support_chats`` only private messages and group messages that mention the bot or
  reply to it are kept; our own messages never are.
- ``external_id`` is ``<chat>:<message id>`` (:mod:`.normalise`); ``thread_key`` is the first
  message of a reply chain in groups (``reply_to_top_id``, else the root remembered from
  earlier messages and our replies, else the message answered), and the chat and UTC day in a
  private chat, so a burst of messages is acknowledged once.
- Edits arrive as updates (bots) with the same ``external_id`` and a ``revision`` that is the
  edit time, so they never make a second record: storage replaces the stored text and labels
  with the edited ones (no second acknowledgment). User accounts read history with a
  ``min_id`` per chat and do not see edits made after a message was read.
- Flood waits are never slept through: ``FLOOD_WAIT_X`` becomes ``RetryableError(defer_s=X)``
  and the scheduler rests this source only; a reply gets ``retry`` with the same delay.
- Media is listed as attachments (name, type, size; no sha256: nothing is downloaded).

Not testable without a Telegram account (the tests use telethon's real client against a
Telegram server on loopback, see ``tests/telegram_server.py``): whether Telegram announces a
bot's supergroup news in ``getDifference`` (configured support groups are followed from the
start regardless), how long it holds a bot's updates, privacy mode, and a real login. An
operator checks a source with ``inbox-daemon check-source NAME``: it connects, logs in and
shows what the next fetch would read, and stores nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from telethon import errors, utils
from telethon.tl import functions
from telethon.tl import types as tl

from inbox_daemon.errors import PermanentError, RetryableError
from inbox_daemon.interfaces import (
    Batch,
    Cursor,
    FailedMessage,
    InboundMessage,
    OutboundReply,
    SendResult,
)

from .client import build_client, connect, load_session, telegram_errors
from .cursor import BotCursor, ChannelState, CommonState, UserCursor
from .history import read_chats
from .normalise import TLObject
from .send import post_reply
from .settings import TelegramSourceSettings
from .updates import COMMON, Converter, Result, Round, Scope, StreamId, load_channel, load_common

logger = logging.getLogger(__name__)

#: Telegram's own cap on one ``getChannelDifference`` for a bot.
_CHANNEL_DIFF_LIMIT: Final = 100_000
#: Thread keys remembered for replies to earlier messages, at most.
_REMEMBERED_THREADS: Final = 10_000


class RecentThreads(OrderedDict[str, str]):
    """Thread keys of recent messages and of our replies, least recently set dropped first."""

    def __init__(self, size: int = _REMEMBERED_THREADS) -> None:
        super().__init__()
        self.size = size

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class TelegramAdapter:
    """A :class:`~inbox_daemon.interfaces.SourceAdapter` for one Telegram bot or account."""

    def __init__(self, settings: TelegramSourceSettings) -> None:
        self.settings = settings
        self._session: Any = None  # kept across reconnects: the auth key and known peers
        self._client: Any = None
        self._me: Any = None
        self._support: frozenset[int] = frozenset()
        self._support_channels: dict[int, int] = {}  # bare id -> access hash
        self._round: Round | None = None
        self._threads = RecentThreads()
        self._strikes: dict[tuple[StreamId, int], int] = {}
        self._isolating: set[int] = set()
        self._reconnecting = asyncio.Lock()

    async def open(self) -> None:
        """Connect and log in (a bot with its token when the session is not logged in yet)."""
        if self._session is None:
            self._session = await load_session(self.settings)
        client = build_client(self.settings, self._session)
        try:
            async with asyncio.timeout(self.settings.timeout_s * 2):
                self._me = await connect(client, self.settings)
                if self.settings.mode == "bot":
                    await self._resolve_support_chats(client)
        except TimeoutError as exc:
            await client.disconnect()
            raise RetryableError(
                f"connecting to Telegram took over {self.settings.timeout_s * 2:.0f} s"
            ) from exc
        except BaseException:
            await client.disconnect()
            raise
        self._client = client

    async def close(self) -> None:
        """Disconnect; buffered updates are dropped (they are read again from the cursor)."""
        client, self._client, self._round = self._client, None, None
        if client is not None:
            await client.disconnect()

    async def _connected(self) -> TLObject:
        # The outbox sender and the poll share the connection: one of them reconnects.
        async with self._reconnecting:
            if self._client is None or not self._client.is_connected():
                await self.close()
                await self.open()
        return self._client

    async def _resolve_support_chats(self, client: TLObject) -> None:
        support: set[int] = set()
        for ref in self.settings.support_chats:
            async with telegram_errors(f"finding support chat {ref}"):
                try:
                    entity = await client.get_entity(ref)
                except ValueError as exc:
                    raise PermanentError(f"support chat {ref}: {exc}") from exc
            support.add(utils.get_peer_id(entity))
            if isinstance(entity, tl.Channel):
                self._support_channels[entity.id] = entity.access_hash
        self._support = frozenset(support)

    def _converter(self) -> Converter:
        scope = Scope(self._me.id, self._support, mentions_only=self.settings.mode == "bot")
        return Converter(scope, self._threads)

    async def fetch(self, cursor: Cursor | None, limit: int) -> Batch:
        """Up to ``limit`` new messages after ``cursor`` (see the module docstring)."""
        client = await self._connected()
        if self.settings.mode == "user":
            return await self._fetch_history(client, cursor, limit)
        if cursor is None:
            return Batch((), (await self._first_cursor(client)).to_json())
        state = await self._follow_support_channels(client, BotCursor.from_json(cursor))
        active = self._round if self._round and self._round.continues(state) else Round(state)
        self._round = None  # kept only if this fetch completes
        messages: list[InboundMessage] = []
        failures: list[FailedMessage] = []
        while len(messages) + len(failures) < limit:
            if active.buffered():
                _collect(active.take(), messages, failures)
                continue
            stream = active.next_stream()
            if stream is None:
                break
            failures.extend(await self._read_stream(client, active, stream))
        self._round = active if active.pending() else None
        return Batch(tuple(messages), active.cursor.to_json(), tuple(failures), active.pending())

    async def _fetch_history(self, client: TLObject, cursor: Cursor | None, limit: int) -> Batch:
        since = datetime.now(UTC) - timedelta(days=self.settings.backfill_days)
        batch = await read_chats(
            client,
            self.settings.chats,
            UserCursor.from_json(cursor) if cursor else UserCursor(),
            limit=limit,
            since=since,
            converter=self._converter(),
        )
        messages: list[InboundMessage] = []
        failures: list[FailedMessage] = []
        for result in batch.results:
            _collect(result, messages, failures)
        return Batch(tuple(messages), batch.cursor.to_json(), tuple(failures), batch.more)

    async def _first_cursor(self, client: TLObject) -> BotCursor:
        # A bot cannot read history: a new source starts at the current update state.
        async with telegram_errors("reading the update state"):
            state = await client(functions.updates.GetStateRequest())
        common = CommonState(state.pts, state.qts, int(state.date.timestamp()), state.seq)
        return await self._follow_support_channels(client, BotCursor(common))

    async def _follow_support_channels(self, client: TLObject, cursor: BotCursor) -> BotCursor:
        """Add the support supergroups the cursor does not follow yet, from their current pts."""
        for channel_id, access_hash in self._support_channels.items():
            if channel_id in cursor.channels:
                continue
            async with telegram_errors(f"reading the state of support chat {channel_id}"):
                full = await client(
                    functions.channels.GetFullChannelRequest(
                        tl.InputChannel(channel_id, access_hash)
                    )
                )
            cursor = cursor.with_channel(channel_id, ChannelState(full.full_chat.pts, access_hash))
        return cursor

    async def _read_stream(
        self, client: TLObject, active: Round, stream: StreamId
    ) -> tuple[FailedMessage, ...]:
        """Read one stream's difference into the round; returns the gaps Telegram reported."""
        base = active.cursor.common if stream == COMMON else active.cursor.channels[stream]
        try:
            async with telegram_errors("reading updates"):
                try:
                    response = await client(self._difference_request(stream, base))
                except (errors.ChannelPrivateError, errors.ChannelInvalidError) as exc:
                    logger.warning(
                        "channel %s is no longer readable (%s); not followed", stream, exc.message
                    )
                    active.drop_channel(stream)
                    return ()
        except errors.TypeNotFoundError as exc:
            return await self._unreadable(client, active, stream, base, exc)
        self._strikes.pop((stream, base.pts), None)
        capacity = self.settings.max_buffered_updates
        converter = self._converter()
        if stream == COMMON:
            assert isinstance(base, CommonState)  # noqa: S101 - by the stream
            loaded, gaps = load_common(response, base, active.cursor, converter, capacity)
        else:
            assert isinstance(base, ChannelState)  # noqa: S101 - by the stream
            loaded, gaps = load_channel(stream, response, base, converter, capacity)
        if not loaded.more:
            self._isolating.discard(stream)
        active.load(loaded)
        return gaps

    def _difference_request(self, stream: StreamId, base: CommonState | ChannelState) -> TLObject:
        if isinstance(base, CommonState):
            return functions.updates.GetDifferenceRequest(
                pts=base.pts, date=base.when, qts=base.qts
            )
        limit = 1 if stream in self._isolating else _CHANNEL_DIFF_LIMIT
        return functions.updates.GetChannelDifferenceRequest(
            channel=tl.InputChannel(stream, base.access_hash),
            filter=tl.ChannelMessagesFilterEmpty(),
            pts=base.pts,
            limit=min(limit, self.settings.max_buffered_updates),
            force=False,
        )

    async def _unreadable(
        self,
        client: TLObject,
        active: Round,
        stream: StreamId,
        base: CommonState | ChannelState,
        exc: errors.TypeNotFoundError,
    ) -> tuple[FailedMessage, ...]:
        """A response this telethon cannot parse (a type from a newer Telegram layer).

        Retried ``max_attempts`` times; then a channel is read one update at a time so only
        the unreadable one is skipped, and the common stream skips to the current state. The
        skipped range becomes a dead letter.
        """
        what = (
            "an update of a type this telethon cannot read "
            f"(constructor {exc.invalid_constructor_id:08x})"
        )
        key = (stream, base.pts)
        if not (isinstance(base, ChannelState) and stream in self._isolating):
            self._strikes[key] = self._strikes.get(key, 0) + 1
            if self._strikes[key] < self.settings.max_attempts:
                raise RetryableError(f"reading updates: {what}") from exc
            if isinstance(base, ChannelState):
                self._isolating.add(stream)
                active.streams.appendleft(stream)  # read again, one update at a time
                return ()
        self._strikes.pop(key, None)
        self._isolating.discard(stream)
        if isinstance(base, ChannelState):
            active.skip(stream, ChannelState(base.pts + 1, base.access_hash))
            where = f"channel:{stream}:pts{base.pts + 1}"
        else:
            async with telegram_errors("reading the update state"):
                state = await client(functions.updates.GetStateRequest())
            active.skip(
                COMMON, CommonState(state.pts, state.qts, int(state.date.timestamp()), state.seq)
            )
            where = f"common:pts{base.pts}-{state.pts}"
        logger.warning("unreadable telegram updates skipped at %s", where, extra={"stage": "fetch"})
        active.streams.appendleft(stream)  # read on past it
        return (FailedMessage(f"unreadable:{where}", f"telegram updates {where}", what, 0),)

    async def after_commit(self, batch: Batch) -> None:
        """Nothing: reading marks nothing on Telegram."""

    async def send(self, reply: OutboundReply) -> SendResult:
        """Post the acknowledgment into the chat it answers (see :mod:`.send`)."""
        if not self.settings.send_replies:
            return SendResult.failed(f"source {self.settings.name!r} has send_replies = false")
        try:
            client = await self._connected()
            peer = await self._peer_of(client, reply.recipient.id)
        except RetryableError as exc:
            return SendResult.retry(str(exc), exc.defer_s)
        except PermanentError as exc:
            return SendResult.failed(str(exc))
        if peer is None:
            return SendResult.retry(
                f"chat {reply.recipient.id} is not known yet; it is learnt by fetching"
            )
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                result = await post_reply(client, peer, reply, source=self.settings.name)
        except TimeoutError:
            # Safe to retry: the same random_id makes Telegram refuse a second copy.
            return SendResult.retry(f"Telegram did not answer within {self.settings.timeout_s} s")
        if result.outcome == "sent" and result.external_id:
            self._threads[result.external_id] = reply.thread_key
        return result

    async def _peer_of(self, client: TLObject, chat: str) -> TLObject:
        user, _, _ = chat.partition("@")
        try:
            marked = int(user)
        except ValueError:
            raise PermanentError(f"not a Telegram chat id: {chat!r}") from None
        async with telegram_errors(f"finding chat {chat}"):
            try:
                return await client.get_input_entity(marked)
            except ValueError:
                return None

    def own_addresses(self) -> frozenset[str]:
        """Our user id and ``@username`` (known once connected)."""
        if self._me is None:
            return frozenset()
        own = {str(self._me.id)}
        if self._me.username:
            own.add(f"@{self._me.username.lower()}")
        return frozenset(own)

    def can_send(self) -> bool:
        """True unless ``send_replies = false``."""
        return self.settings.send_replies


def _collect(result: Result, messages: list[InboundMessage], failures: list[FailedMessage]) -> None:
    if isinstance(result, InboundMessage):
        messages.append(result)
    elif isinstance(result, FailedMessage):
        failures.append(result)
