"""A bot's updates: differences of its update streams turned into items, and the bounded buffer.

Telegram keeps a bot's updates in streams: the account's common sequence (private chats, basic
groups) and one sequence per supergroup or channel. ``updates.getDifference`` and
``updates.getChannelDifference`` return what happened after a stream's state; the new state
is only known for the whole response. A :class:`Round` reads the streams one after the other
and hands their items out in batches of the size the daemon asks for; what a response holds
beyond that waits in memory, at most ``max_buffered_updates`` items. A response larger than
that is cut: the stream then keeps its old state and the progress within it (highest message
id and update pts returned), and the next read of the same state skips what was returned. So
nothing is ever held only in memory: a restart, a lost batch or a full buffer read again from
the committed cursor, and storage absorbs what was stored before.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

from telethon import utils
from telethon.tl import types as tl

from inbox_daemon.errors import MessageError
from inbox_daemon.interfaces import FailedMessage, InboundMessage

from .cursor import BotCursor, ChannelState, CommonState, Progress
from .normalise import Peers, TLObject, external_id_of, is_private, to_message

logger = logging.getLogger(__name__)

#: The stream of the account's common sequence; channel streams are their (positive) bare ids.
COMMON: Final = 0
StreamId = int


@dataclass(frozen=True, slots=True)
class Scope:
    """Which messages a source keeps.

    Attributes:
        self_id: our own user id.
        everything_in: marked ids of chats whose every message is kept (support groups).
        mentions_only: outside those chats, keep only private messages and group messages
            that mention us or answer us (bots); ``False`` keeps all (user accounts).
    """

    self_id: int
    everything_in: frozenset[int] = frozenset()
    mentions_only: bool = True

    def keeps(self, message: TLObject) -> bool:
        """True when ``message`` is feedback this source collects."""
        if message.out:
            return False  # our own messages, our acknowledgments included
        if not self.mentions_only or is_private(message):
            return True
        if utils.get_peer_id(message.peer_id) in self.everything_in:
            return True
        return bool(message.mentioned)


Result = InboundMessage | FailedMessage | None


@dataclass(frozen=True, slots=True)
class Item:
    """One update of a response: where it stands in its stream and what it became.

    ``result`` is ``None`` for what the source does not keep (service messages, chatter
    outside its scope, an edit already contained in a new message of the same response).
    """

    message_id: int | None
    pts: int | None
    result: Result


@dataclass(slots=True)
class Loaded:
    """One difference response of one stream, as items in the order they are handed out.

    Attributes:
        stream: ``COMMON`` or a channel's bare id.
        items: new messages by id, then other updates by pts; already returned ones skipped.
        final: the stream's state once every item is handed out (used only when complete).
        complete: false when the response held more than the buffer: the stream then keeps
            its old state plus progress, and is read again.
        more: Telegram holds more for this stream right now.
        channels: channels this response revealed, with the state to start reading them at.
    """

    stream: StreamId
    items: deque[Item]
    final: CommonState | ChannelState
    complete: bool = True
    more: bool = False
    channels: dict[int, ChannelState] = field(default_factory=dict)


@dataclass(slots=True)
class Converter:
    """Turns messages of a response into results, remembering thread roots as it goes."""

    scope: Scope
    threads: MutableMapping[str, str]

    def convert(self, message: TLObject, peers: Peers) -> Result:
        """A message as kept, skipped (``None``) or dead-lettered."""
        if isinstance(message, tl.MessageEmpty | tl.MessageService):
            return None  # deleted, or joins, pins and other actions: not feedback
        if not isinstance(message, tl.Message):
            return _failure(message, f"unknown Telegram message type {type(message).__name__}")
        try:
            if not self.scope.keeps(message):
                return None
            converted = to_message(message, replace(peers, threads=self.threads))
        except (MessageError, AttributeError, TypeError, ValueError) as exc:
            return _failure(message, f"cannot read Telegram message: {exc}")
        self.threads[converted.external_id] = converted.thread_key
        return converted


def _failure(message: TLObject, reason: str) -> FailedMessage:
    logger.warning("telegram message dead-lettered: %s", reason, extra={"stage": "normalise"})
    try:
        external_id = external_id_of(message, 0)
    except (AttributeError, TypeError):
        external_id = f"unreadable:{id(message)}"
    return FailedMessage(external_id, f"telegram {external_id}", reason, 0)


def load_common(
    difference: TLObject,
    base: CommonState,
    cursor: BotCursor,
    converter: Converter,
    capacity: int,
) -> tuple[Loaded, tuple[FailedMessage, ...]]:
    """The items of an ``updates.getDifference`` response read from ``base``.

    Returns the loaded response and the gaps Telegram reported, as dead letters.
    """
    if isinstance(difference, tl.updates.DifferenceEmpty):
        final = replace(base, date=_unix(difference.date), seq=difference.seq)
        return Loaded(COMMON, deque(), replace(final, progress=Progress())), ()
    if isinstance(difference, tl.updates.DifferenceTooLong):
        gap = _gap(f"common:{base.pts}-{difference.pts}", "updates.differenceTooLong")
        final = replace(base, pts=difference.pts, progress=Progress())
        return Loaded(COMMON, deque(), final, more=True), (gap,)
    if not isinstance(difference, tl.updates.Difference | tl.updates.DifferenceSlice):
        raise MessageError(f"unknown difference type {type(difference).__name__}")
    state = getattr(difference, "intermediate_state", None) or difference.state
    final = CommonState(state.pts, state.qts, _unix(state.date), state.seq)
    peers = Peers.of(difference.users, difference.chats, converter.scope.self_id)
    items = _items(
        difference.new_messages, difference.other_updates, base.progress, converter, peers
    )
    loaded = Loaded(
        COMMON,
        items,
        final,
        more=isinstance(difference, tl.updates.DifferenceSlice),
        channels=_revealed_channels(difference.other_updates, difference.chats, cursor),
    )
    return _bounded(loaded, capacity), ()


def load_channel(
    channel_id: int,
    difference: TLObject,
    base: ChannelState,
    converter: Converter,
    capacity: int,
) -> tuple[Loaded, tuple[FailedMessage, ...]]:
    """The items of an ``updates.getChannelDifference`` response read from ``base``."""
    if isinstance(difference, tl.updates.ChannelDifferenceEmpty):
        final = replace(base, pts=difference.pts, progress=Progress())
        return Loaded(channel_id, deque(), final, more=not difference.final), ()
    peers = Peers.of(difference.users, difference.chats, converter.scope.self_id)
    if isinstance(difference, tl.updates.ChannelDifferenceTooLong):
        # The channel's latest messages come instead of the missed updates.
        gap = _gap(
            f"channel:{channel_id}:{base.pts}-{difference.dialog.pts}",
            "updates.channelDifferenceTooLong (the latest messages were read instead)",
        )
        items = _items(difference.messages, (), Progress(), converter, peers)
        final = replace(base, pts=difference.dialog.pts or base.pts, progress=Progress())
        return _bounded(Loaded(channel_id, items, final, more=not difference.final), capacity), (
            gap,
        )
    if not isinstance(difference, tl.updates.ChannelDifference):
        raise MessageError(f"unknown channel difference type {type(difference).__name__}")
    items = _items(
        difference.new_messages, difference.other_updates, base.progress, converter, peers
    )
    final = replace(base, pts=difference.pts, progress=Progress())
    loaded = Loaded(channel_id, items, final, more=not difference.final)
    return _bounded(loaded, capacity), ()


def _items(
    messages: Iterable[Any],
    updates: Iterable[Any],
    progress: Progress,
    converter: Converter,
    peers: Peers,
) -> deque[Item]:
    items: deque[Item] = deque()
    seen: set[str] = set()
    for message in sorted(messages, key=lambda m: int(getattr(m, "id", 0) or 0)):
        message_id = int(getattr(message, "id", 0) or 0)
        if progress.covers(message_id=message_id):
            continue
        result = converter.convert(message, peers)
        if result is not None:
            seen.add(result.external_id)
        items.append(Item(message_id, None, result))
    for update in sorted(_message_updates(updates), key=lambda u: int(u.pts)):
        if progress.covers(pts=update.pts):
            continue
        result = converter.convert(update.message, peers)
        if result is not None and result.external_id in seen:
            result = None  # the new message of this response is already the edited text
        items.append(Item(None, update.pts, result))
    return items


_MESSAGE_UPDATES = (
    tl.UpdateNewMessage,
    tl.UpdateEditMessage,
    tl.UpdateNewChannelMessage,
    tl.UpdateEditChannelMessage,
)


def _message_updates(updates: Iterable[Any]) -> list[Any]:
    return [u for u in updates if isinstance(u, _MESSAGE_UPDATES) and getattr(u, "pts", None)]


def _revealed_channels(
    updates: Iterable[Any], chats: Iterable[Any], cursor: BotCursor
) -> dict[int, ChannelState]:
    """Channels with news that the cursor does not follow yet, and where to start them."""
    hashes = {chat.id: chat.access_hash for chat in chats if isinstance(chat, tl.Channel)}
    found: dict[int, ChannelState] = {}
    for update in updates:
        if isinstance(update, tl.UpdateChannelTooLong):
            channel_id, start = update.channel_id, update.pts or 1
        elif isinstance(update, tl.UpdateNewChannelMessage | tl.UpdateEditChannelMessage):
            peer = getattr(update.message, "peer_id", None)
            if not isinstance(peer, tl.PeerChannel):
                continue
            channel_id, start = peer.channel_id, update.pts - update.pts_count
        else:
            continue
        if channel_id in cursor.channels or channel_id in found:
            continue
        if hashes.get(channel_id) is None:
            logger.warning("channel %s has news but no access hash; not followed", channel_id)
            continue
        found[channel_id] = ChannelState(max(start, 1), hashes[channel_id])
    return found


def _bounded(loaded: Loaded, capacity: int) -> Loaded:
    if len(loaded.items) <= capacity:
        return loaded
    logger.info(
        "update buffer full: %d of %d updates kept; the rest is read again from the cursor",
        capacity,
        len(loaded.items),
        extra={"stage": "fetch"},
    )
    while len(loaded.items) > capacity:
        loaded.items.pop()
    loaded.complete = False
    loaded.more = True
    return loaded


def _gap(where: str, what: str) -> FailedMessage:
    reason = f"Telegram no longer holds these updates ({what}); messages in them were not read"
    logger.warning("telegram gap %s: %s", where, reason, extra={"stage": "fetch"})
    return FailedMessage(f"gap:{where}", f"telegram updates {where}", reason, 0)


def _unix(when: datetime | int) -> int:
    return when if isinstance(when, int) else int(when.timestamp())


class Round:
    """One pass over a bot's streams, handing items out in batches; lives between fetches.

    The round is only continued by a fetch whose cursor is the one this round last handed
    out: any other cursor (a batch that was not committed, another replica) starts anew.
    """

    def __init__(self, cursor: BotCursor) -> None:
        self.cursor = cursor
        self.streams: deque[StreamId] = deque([COMMON, *sorted(cursor.channels)])
        self.loaded: Loaded | None = None

    def continues(self, cursor: BotCursor) -> bool:
        """True when ``cursor`` is where this round stands."""
        return self.cursor == cursor

    def pending(self) -> bool:
        """True while items wait in the buffer or streams remain to be read."""
        return self.loaded is not None or bool(self.streams)

    def buffered(self) -> int:
        """How many items wait in the buffer."""
        return len(self.loaded.items) if self.loaded is not None else 0

    def next_stream(self) -> StreamId | None:
        """The next stream to read, or ``None`` when the round is over."""
        return self.streams.popleft() if self.streams else None

    def load(self, loaded: Loaded) -> None:
        """Buffer a stream's response; the channels it revealed join the round."""
        for channel_id, state in loaded.channels.items():
            if channel_id not in self.cursor.channels:
                self.cursor = self.cursor.with_channel(channel_id, state)
                self.streams.append(channel_id)
        self.loaded = loaded
        self._finish_if_empty()

    def drop_channel(self, channel_id: int) -> None:
        """Stop following a channel the source can no longer read."""
        channels = {k: v for k, v in self.cursor.channels.items() if k != channel_id}
        self.cursor = replace(self.cursor, channels=channels)

    def skip(self, stream: StreamId, state: CommonState | ChannelState) -> None:
        """Move a stream past something unreadable (its dead letter is made by the caller)."""
        self._set(stream, state)

    def take(self) -> Result:
        """Hand out the next buffered item and move the cursor past it."""
        assert self.loaded is not None  # noqa: S101 - callers check buffered()
        item = self.loaded.items.popleft()
        state = self._state(self.loaded.stream)
        moved = state.progress.past(message_id=item.message_id, pts=item.pts)
        self._set(self.loaded.stream, replace(state, progress=moved))
        self._finish_if_empty()
        return item.result

    def _finish_if_empty(self) -> None:
        loaded = self.loaded
        if loaded is None or loaded.items:
            return
        if loaded.complete:
            self._set(loaded.stream, loaded.final)
        if loaded.more:
            self.streams.appendleft(loaded.stream)
        self.loaded = None

    def _state(self, stream: StreamId) -> CommonState | ChannelState:
        if stream == COMMON:
            return self.cursor.common
        return self.cursor.channels[stream]

    def _set(self, stream: StreamId, state: CommonState | ChannelState) -> None:
        if isinstance(state, CommonState):
            self.cursor = self.cursor.with_common(state)
        else:
            self.cursor = self.cursor.with_channel(stream, state)
