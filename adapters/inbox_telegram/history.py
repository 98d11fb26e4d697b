"""A user account's chats read by history: ``messages.getHistory`` after a ``min_id`` per chat.

Telegram does not tell a history reader about edits or deletions: a message is read once, as
it stood then (an edit made later is not seen).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from telethon import utils
from telethon.tl import functions
from telethon.tl import types as tl

from inbox_daemon.errors import PermanentError

from .client import telegram_errors
from .cursor import ChatPosition, UserCursor
from .normalise import Peers, TLObject
from .updates import Converter, Result

#: Telegram returns at most this many messages per history request.
HISTORY_PAGE = 100


@dataclass(frozen=True, slots=True)
class HistoryBatch:
    """What one read over the configured chats gave."""

    results: tuple[Result, ...]
    cursor: UserCursor
    more: bool


async def read_chats(
    client: TLObject,
    chats: tuple[int | str, ...],
    cursor: UserCursor,
    *,
    limit: int,
    since: datetime,
    converter: Converter,
) -> HistoryBatch:
    """Up to ``limit`` new messages over ``chats``, oldest first within each chat."""
    results: list[Result] = []
    more = False
    for ref in chats:
        remaining = min(limit - len(results), HISTORY_PAGE)
        if remaining <= 0:
            return HistoryBatch(tuple(results), cursor, True)
        position = cursor.chats.get(str(ref)) or await resolve_chat(client, ref)
        page, position, full = await _read_chat(client, position, remaining, since, converter)
        results.extend(page)
        cursor = cursor.with_chat(str(ref), position)
        more = more or full
    return HistoryBatch(tuple(results), cursor, more)


async def _read_chat(
    client: TLObject, position: ChatPosition, limit: int, since: datetime, converter: Converter
) -> tuple[list[Result], ChatPosition, bool]:
    # Telegram ignores min_id for ids far below the newest, so the window is placed with
    # offset_id / offset_date and add_offset = -limit (the messages after the offset), and
    # min_id and the date are checked here.
    request = functions.messages.GetHistoryRequest(
        peer=input_peer(position),
        offset_id=position.min_id + 1 if position.min_id else 0,
        offset_date=None if position.min_id else since,
        add_offset=-limit,
        limit=limit,
        max_id=0,
        min_id=0,
        hash=0,
    )
    async with telegram_errors(f"reading the history of chat {position.peer_id}"):
        response = await client(request)
    if isinstance(response, tl.messages.MessagesNotModified):
        return [], position, False
    fresh = sorted(
        (m for m in response.messages if m.id > position.min_id and _after(m, since, position)),
        key=lambda m: int(m.id),
    )
    peers = Peers.of(response.users, response.chats, converter.scope.self_id)
    results = [converter.convert(message, peers) for message in fresh]
    newest = max((int(m.id) for m in fresh), default=position.min_id)
    return results, replace(position, min_id=newest), len(fresh) >= limit


def _after(message: TLObject, since: datetime, position: ChatPosition) -> bool:
    date = getattr(message, "date", None)
    return bool(position.min_id) or date is None or date >= since


def input_peer(position: ChatPosition) -> TLObject:
    """The ``InputPeer`` that addresses a chat read by history."""
    if position.kind == "user":
        return tl.InputPeerUser(position.peer_id, position.access_hash)
    if position.kind == "chat":
        return tl.InputPeerChat(position.peer_id)
    return tl.InputPeerChannel(position.peer_id, position.access_hash)


async def resolve_chat(client: TLObject, ref: int | str) -> ChatPosition:
    """Where a configured chat is, before it was ever read (``min_id`` 0).

    Raises:
        PermanentError: the account cannot see that chat.
    """
    async with telegram_errors(f"finding chat {ref}"):
        try:
            peer = await client.get_input_entity(ref)
        except ValueError:
            await client.get_dialogs()  # a numeric id is known once the dialogs were listed
            try:
                peer = await client.get_input_entity(ref)
            except ValueError:
                raise PermanentError(
                    f"chat {ref}: not among this account's chats; join it or fix the id"
                ) from None
    return position_of(peer)


def position_of(peer: TLObject) -> ChatPosition:
    """A ``ChatPosition`` (``min_id`` 0) for an ``InputPeer``."""
    if isinstance(peer, tl.InputPeerUser):
        return ChatPosition("user", peer.user_id, peer.access_hash, 0)
    if isinstance(peer, tl.InputPeerChat):
        return ChatPosition("chat", peer.chat_id, 0, 0)
    if isinstance(peer, tl.InputPeerChannel):
        return ChatPosition("channel", peer.channel_id, peer.access_hash, 0)
    raise PermanentError(f"cannot read the history of {utils.get_display_name(peer) or peer!r}")
