"""The source cursor: Telegram's update state (bots) or the last message id per chat (users).

A cursor is committed in the same transaction as the messages read before it, so it must say
exactly what was returned. Telegram's update state is per stream: the account's common
sequence (``pts``, ``qts``, ``date``, ``seq``) and one ``pts`` per supergroup or channel. A
difference fetched from a stream's state may be returned to the daemon in several batches;
until all of it is, the stream keeps its old state plus the highest message id and update
``pts`` already returned (``after_id``, ``after_pts``), so a re-read skips what was stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Self

from inbox_daemon.errors import PermanentError
from inbox_daemon.interfaces import Cursor


@dataclass(frozen=True, slots=True)
class Progress:
    """How much of the difference fetched from a stream's state was already returned."""

    after_id: int = 0
    after_pts: int = 0

    def covers(self, *, message_id: int | None = None, pts: int | None = None) -> bool:
        """True when the message (by id) or update (by pts) was returned before."""
        if message_id is not None:
            return message_id <= self.after_id
        return pts is not None and pts <= self.after_pts

    def past(self, *, message_id: int | None = None, pts: int | None = None) -> Progress:
        """The progress once that message or update is returned too."""
        return Progress(max(self.after_id, message_id or 0), max(self.after_pts, pts or 0))


@dataclass(frozen=True, slots=True)
class CommonState:
    """The account's common update sequence (private chats and basic groups)."""

    pts: int
    qts: int
    date: int
    seq: int
    progress: Progress = Progress()

    @property
    def when(self) -> datetime:
        """``date`` as the aware datetime telethon expects."""
        return datetime.fromtimestamp(self.date, UTC)


@dataclass(frozen=True, slots=True)
class ChannelState:
    """One supergroup's or channel's update sequence, and the hash that addresses it."""

    pts: int
    access_hash: int
    progress: Progress = Progress()


@dataclass(frozen=True, slots=True)
class BotCursor:
    """Where a bot source stands in each of its update streams."""

    common: CommonState
    channels: Mapping[int, ChannelState] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The cursor as stored."""
        return {
            "mode": "bot",
            "common": {
                "pts": self.common.pts,
                "qts": self.common.qts,
                "date": self.common.date,
                "seq": self.common.seq,
                **_progress_json(self.common.progress),
            },
            "channels": {
                str(channel_id): {
                    "pts": state.pts,
                    "access_hash": state.access_hash,
                    **_progress_json(state.progress),
                }
                for channel_id, state in sorted(self.channels.items())
            },
        }

    @classmethod
    def from_json(cls, cursor: Cursor) -> Self:
        """Read a stored cursor.

        Raises:
            PermanentError: the cursor is not a bot cursor or a field is missing or wrong.
        """
        reader = _Reader(cursor, "bot")
        common = reader.table("common")
        channels = {
            reader.integer_key(key): ChannelState(
                reader.number(state, "pts"),
                reader.number(state, "access_hash"),
                _progress(reader, state),
            )
            for key, state in reader.table("channels", nested=True).items()
        }
        return cls(
            CommonState(
                reader.number(common, "pts"),
                reader.number(common, "qts"),
                reader.number(common, "date"),
                reader.number(common, "seq"),
                _progress(reader, common),
            ),
            channels,
        )

    def with_common(self, common: CommonState) -> BotCursor:
        """This cursor with the common stream moved."""
        return replace(self, common=common)

    def with_channel(self, channel_id: int, state: ChannelState) -> BotCursor:
        """This cursor with one channel stream moved (or added)."""
        return replace(self, channels={**self.channels, channel_id: state})


@dataclass(frozen=True, slots=True)
class ChatPosition:
    """A user-mode chat: how to address it and the last message id read."""

    kind: str  # "user", "chat" or "channel"
    peer_id: int
    access_hash: int
    min_id: int


@dataclass(frozen=True, slots=True)
class UserCursor:
    """Where a user-account source stands in each configured chat (keyed as configured)."""

    chats: Mapping[str, ChatPosition] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The cursor as stored."""
        return {
            "mode": "user",
            "chats": {
                ref: {
                    "kind": position.kind,
                    "peer_id": position.peer_id,
                    "access_hash": position.access_hash,
                    "min_id": position.min_id,
                }
                for ref, position in sorted(self.chats.items())
            },
        }

    @classmethod
    def from_json(cls, cursor: Cursor) -> Self:
        """Read a stored cursor.

        Raises:
            PermanentError: the cursor is not a user cursor or a field is missing or wrong.
        """
        reader = _Reader(cursor, "user")
        chats = {}
        for ref, state in reader.table("chats", nested=True).items():
            kind = state.get("kind")
            if kind not in ("user", "chat", "channel"):
                raise reader.error(f"chats.{ref}.kind")
            chats[ref] = ChatPosition(
                kind,
                reader.number(state, "peer_id"),
                reader.number(state, "access_hash"),
                reader.number(state, "min_id"),
            )
        return cls(chats)

    def with_chat(self, ref: str, position: ChatPosition) -> UserCursor:
        """This cursor with one chat moved (or added)."""
        return replace(self, chats={**self.chats, ref: position})


def _progress_json(progress: Progress) -> dict[str, int]:
    return {"after_id": progress.after_id, "after_pts": progress.after_pts}


def _progress(reader: _Reader, table: Mapping[str, Any]) -> Progress:
    return Progress(reader.number(table, "after_id"), reader.number(table, "after_pts"))


class _Reader:
    """Checks a stored cursor field by field, naming the first one that is wrong."""

    def __init__(self, cursor: Cursor, mode: str) -> None:
        self.cursor = cursor
        self.mode = mode
        if cursor.get("mode") != mode:
            raise PermanentError(
                f"the stored cursor is a {cursor.get('mode')!r} cursor, not a {mode!r} one: "
                "the source's mode changed; give the new mode a new source name"
            )

    def error(self, key: str) -> PermanentError:
        return PermanentError(
            f"the stored Telegram cursor is damaged at {key!r}; reset the source's cursor"
        )

    def table(self, key: str, *, nested: bool = False) -> dict[str, Any]:
        value = self.cursor.get(key)
        if not isinstance(value, dict):
            raise self.error(key)
        if nested and not all(isinstance(item, dict) for item in value.values()):
            raise self.error(key)
        return value

    def number(self, table: Mapping[str, Any], key: str) -> int:
        value = table.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(key)
        return value

    def integer_key(self, key: str) -> int:
        try:
            return int(key)
        except ValueError:
            raise self.error(f"channels.{key}") from None
