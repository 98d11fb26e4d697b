"""Telegram Desktop JSON exports turned into telethon's TL objects, as Telegram's API sends them.

The exports in ``../shared/corpora/telegram-export`` are real chats in the export format, not the
API's: this module builds the ``types.Message``, ``types.User`` and ``types.Channel`` objects the
API would have sent for each exported message (text and UTF-16 entity offsets, replies, forwards,
edits, stickers, animations, photos, files, polls, deleted accounts). Dates without an offset
are the exporter's local time, UTC+7 in every file (``SOURCE.md``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from telethon.tl import types

from tests.conftest import CORPORA

EXPORTS = CORPORA / "telegram-export" / "chats"
EXPORT_TZ = timezone(timedelta(hours=7))

_ENTITIES: dict[str, Any] = {
    "mention": types.MessageEntityMention,
    "hashtag": types.MessageEntityHashtag,
    "cashtag": types.MessageEntityCashtag,
    "bot_command": types.MessageEntityBotCommand,
    "link": types.MessageEntityUrl,
    "email": types.MessageEntityEmail,
    "phone": types.MessageEntityPhone,
    "bold": types.MessageEntityBold,
    "italic": types.MessageEntityItalic,
    "underline": types.MessageEntityUnderline,
    "strikethrough": types.MessageEntityStrike,
    "spoiler": types.MessageEntitySpoiler,
    "code": types.MessageEntityCode,
}


@dataclass
class ExportedChat:
    """One exported chat: its raw JSON and the TL objects made from it."""

    slug: str
    raw: dict[str, Any]
    channel: Any
    users: dict[int, Any]
    messages: list[Any]

    @property
    def marked_id(self) -> int:
        return -1_000_000_000_000 - int(self.channel.id)


def exported_chats() -> Iterator[ExportedChat]:
    """Every export of the corpus, in folder order."""
    for path in sorted(EXPORTS.glob("*/exported.json")):
        yield load_chat(path)


def load_chat(path: Path) -> ExportedChat:
    raw = json.loads(path.read_text(encoding="utf-8"))
    channel = types.Channel(
        raw["id"],
        raw["name"],
        types.ChatPhotoEmpty(),
        datetime(2021, 1, 1, tzinfo=UTC),
        megagroup=raw["type"] != "public_channel",
        access_hash=raw["id"] * 3,
        username=None,
    )
    users: dict[int, Any] = {}
    messages = [tl_message(item, channel.id, users) for item in raw["messages"]]
    return ExportedChat(path.parent.name, raw, channel, users, messages)


def tl_message(item: dict[str, Any], channel_id: int, users: dict[int, Any]) -> Any:
    """The ``types.Message`` the API would have sent for one exported message."""
    text, entities = flatten(item["text"])
    sender = _sender(item, users)
    return types.Message(
        id=item["id"],
        peer_id=types.PeerChannel(channel_id),
        date=exported_date(item, "date"),
        message=text,
        from_id=sender,
        entities=entities or None,
        reply_to=_reply(item),
        fwd_from=_forward(item),
        edit_date=exported_date(item, "edited") if "edited" in item else None,
        media=_media(item),
        via_bot_id=hash(item["via_bot"]) & 0xFFFFFF if "via_bot" in item else None,
    )


def exported_date(item: dict[str, Any], key: str) -> datetime:
    unix = item.get(f"{key}_unixtime")
    if unix is not None:
        return datetime.fromtimestamp(int(unix), UTC)
    return datetime.fromisoformat(item[key]).replace(tzinfo=EXPORT_TZ).astimezone(UTC)


def flatten(text: str | list[Any]) -> tuple[str, list[Any]]:
    """The export's text (a string, or strings and entity objects) as text and API entities."""
    if isinstance(text, str):
        return text, []
    parts: list[str] = []
    entities: list[Any] = []
    offset = 0
    for part in text:
        chunk = part if isinstance(part, str) else part["text"]
        length = len(chunk.encode("utf-16-le")) // 2
        if isinstance(part, dict):
            entity = _entity(part, offset, length)
            if entity is not None:
                entities.append(entity)
        parts.append(chunk)
        offset += length
    return "".join(parts), entities


def _entity(part: dict[str, Any], offset: int, length: int) -> Any:
    kind = part["type"]
    if kind == "pre":
        return types.MessageEntityPre(offset, length, part.get("language", ""))
    if kind == "text_link":
        return types.MessageEntityTextUrl(offset, length, part["href"])
    cls = _ENTITIES.get(kind)
    return cls(offset, length) if cls else types.MessageEntityUnknown(offset, length)


def _sender(item: dict[str, Any], users: dict[int, Any]) -> Any:
    from_id = item.get("from_id") or ""
    if from_id.startswith("channel"):
        return types.PeerChannel(int(from_id.removeprefix("channel")))
    user_id = int(from_id.removeprefix("user"))
    if user_id not in users:
        name = item.get("from")
        users[user_id] = (
            types.User(user_id, deleted=True, access_hash=user_id)
            if name is None
            else types.User(user_id, first_name=name, access_hash=user_id)
        )
    return types.PeerUser(user_id)


def _reply(item: dict[str, Any]) -> Any:
    if "reply_to_message_id" not in item:
        return None
    return types.MessageReplyHeader(reply_to_msg_id=item["reply_to_message_id"])


def _forward(item: dict[str, Any]) -> Any:
    if "forwarded_from" not in item:
        return None
    return types.MessageFwdHeader(
        date=exported_date(item, "date"), from_name=item["forwarded_from"] or "Hidden"
    )


def _media(item: dict[str, Any]) -> Any:
    if "photo" in item:
        size = types.PhotoSize("y", item.get("width", 0), item.get("height", 0), 48_000)
        photo = types.Photo(item["id"], 1, b"", exported_date(item, "date"), [size], 2)
        return types.MessageMediaPhoto(photo=photo)
    if "poll" in item:
        poll = item["poll"]
        answers = [
            types.PollAnswer(types.TextWithEntities(a["text"], []), bytes([i]))
            for i, a in enumerate(poll["answers"])
        ]
        question = types.TextWithEntities(poll["question"], [])
        return types.MessageMediaPoll(
            types.Poll(item["id"], question, answers, 0), types.PollResults()
        )
    if "file" in item:
        return types.MessageMediaDocument(document=_document(item))
    return None


def _document(item: dict[str, Any]) -> Any:
    kind = item.get("media_type")
    width, height = item.get("width", 0), item.get("height", 0)
    attributes: list[Any] = []
    mime = item.get("mime_type", "application/octet-stream")
    if kind == "sticker":
        mime = "image/webp"
        attributes = [
            types.DocumentAttributeSticker(
                item.get("sticker_emoji", ""), types.InputStickerSetEmpty()
            ),
            types.DocumentAttributeImageSize(width, height),
        ]
    elif kind == "animation":
        attributes = [
            types.DocumentAttributeAnimated(),
            types.DocumentAttributeVideo(float(item.get("duration_seconds", 0)), width, height),
        ]
    else:
        attributes = [types.DocumentAttributeFilename(Path(item["file"]).name)]
    return types.Document(
        item["id"], 1, b"", exported_date(item, "date"), mime, 20_000, 2, attributes
    )
