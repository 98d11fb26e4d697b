"""Telethon ``Message`` objects to :class:`~inbox_daemon.interfaces.InboundMessage`.

Pure functions over telethon's TL objects: no network. ``external_id`` is
``"<chat>:<message id>"`` where ``<chat>`` is the marked chat id (``-100…`` for supergroups and
channels, ``-…`` for basic groups), so the same group read by two sources (a bot and a user
account) yields the same id and storage recognises the repeat. Message ids of private chats are
numbered per account, so a private chat is ``<user id>@<our id>``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeAlias

from telethon import utils
from telethon.tl import types as tl

from inbox_daemon.errors import MessageError
from inbox_daemon.interfaces import Attachment, Identity, InboundMessage
from inbox_daemon.pipeline.normalise import clean_text

CHANNEL: Final = "telegram"

#: A telethon TL object or client: telethon ships no type hints, so these stay dynamic.
TLObject: TypeAlias = Any

_ENTITY_NAMES: Final = {
    "MessageEntityMention": "mention",
    "MessageEntityMentionName": "mention_name",
    "MessageEntityHashtag": "hashtag",
    "MessageEntityCashtag": "cashtag",
    "MessageEntityBotCommand": "bot_command",
    "MessageEntityUrl": "url",
    "MessageEntityTextUrl": "text_url",
    "MessageEntityEmail": "email",
    "MessageEntityPhone": "phone",
    "MessageEntityCode": "code",
    "MessageEntityPre": "pre",
    "MessageEntityBold": "bold",
    "MessageEntityItalic": "italic",
    "MessageEntityUnderline": "underline",
    "MessageEntityStrike": "strikethrough",
    "MessageEntitySpoiler": "spoiler",
    "MessageEntityBlockquote": "blockquote",
    "MessageEntityCustomEmoji": "custom_emoji",
    "MessageEntityBankCard": "bank_card",
}
#: Entity kinds whose covered text is worth keeping in ``meta`` (the rest is formatting).
_KEPT_ENTITY_TEXT: Final = frozenset(
    {"mention", "mention_name", "hashtag", "cashtag", "bot_command", "url", "text_url", "email"}
)


@dataclass(frozen=True, slots=True)
class Peers:
    """The users and chats a response carried, by bare id, and who we are.

    Attributes:
        users: ``User`` objects by user id.
        chats: ``Chat`` / ``Channel`` objects by bare chat or channel id.
        self_id: our own user id (the bot's or the account's).
        threads: thread keys already known, by external id (earlier messages, our replies),
            so a reply to a reply joins the first message's thread.
    """

    users: Mapping[int, Any]
    chats: Mapping[int, Any]
    self_id: int
    threads: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        users: Iterable[Any],
        chats: Iterable[Any],
        self_id: int,
        threads: Mapping[str, str] | None = None,
    ) -> Peers:
        """Index the ``users`` and ``chats`` lists of a Telegram response."""
        return cls(
            {user.id: user for user in users},
            {chat.id: chat for chat in chats},
            self_id,
            threads or {},
        )


def chat_key(peer: TLObject, self_id: int) -> str:
    """The chat part of an external id (see the module docstring)."""
    if isinstance(peer, tl.PeerUser):
        return f"{peer.user_id}@{self_id}"
    return str(utils.get_peer_id(peer))


def external_id_of(message: TLObject, self_id: int) -> str:
    """``"<chat>:<message id>"`` of a Telegram message."""
    return f"{chat_key(message.peer_id, self_id)}:{message.id}"


def is_private(message: TLObject) -> bool:
    """True for a message of a one-to-one chat."""
    return isinstance(message.peer_id, tl.PeerUser)


def to_message(message: TLObject, peers: Peers, *, now: datetime | None = None) -> InboundMessage:
    """The normalised form of one telethon ``Message``.

    Raises:
        MessageError: the object is not a message or lacks a field every message has.
    """
    _check_shape(message)
    now = now or datetime.now(UTC)
    chat = chat_key(message.peer_id, peers.self_id)
    external_id = f"{chat}:{message.id}"
    raw_text = message.message or ""
    media = describe_media(message.media)
    quote = _quote(message.reply_to)
    text = clean_text(raw_text)
    full_text = clean_text("\n\n".join(part for part in (quote, raw_text, media.summary) if part))
    return InboundMessage(
        external_id=external_id,
        channel=CHANNEL,
        received_at=min(message.date, now),
        sender=sender_of(message, peers),
        recipients=(chat_identity(message.peer_id, peers),),
        reply_to=chat_identity(message.peer_id, peers),
        subject="",
        text=text,
        full_text=full_text,
        thread_key=_thread_key(message, chat, external_id, peers),
        in_reply_to=_in_reply_to(message, chat, peers.self_id),
        meta=_meta(message, raw_text, media, peers),
        attachments=media.attachments,
        raw_ref=f"chat {utils.get_peer_id(message.peer_id)} message {message.id}",
        notes=_notes(message, media, text),
        revision=revision_of(message),
    )


def revision_of(message: TLObject) -> int:
    """The message's version: its last edit time as a Unix timestamp, 0 if never edited.

    Telegram keeps the message id through an edit; a later edit time is how storage tells the
    edited text from the one it holds (and an old edit re-read from a stale cursor from a new
    one).
    """
    edited = message.edit_date
    return int(edited.timestamp()) if isinstance(edited, datetime) else 0


def _check_shape(message: TLObject) -> None:
    if not isinstance(message, tl.Message):
        raise MessageError(f"not a Telegram message: {type(message).__name__}")
    if not isinstance(message.peer_id, tl.PeerUser | tl.PeerChat | tl.PeerChannel):
        raise MessageError(f"message {message.id}: no chat (peer_id {message.peer_id!r})")
    if not isinstance(message.id, int) or message.id <= 0:
        raise MessageError(f"message id {message.id!r} is not a positive integer")
    if not isinstance(message.date, datetime):
        raise MessageError(f"message {message.id}: no date")


def sender_of(message: TLObject, peers: Peers) -> Identity:
    """Who wrote ``message``: a user, or the chat itself (channel posts, anonymous admins)."""
    peer = message.from_id
    if peer is None and isinstance(message.peer_id, tl.PeerUser) and not message.out:
        peer = message.peer_id  # private chats name the other party in peer_id only
    if peer is None:
        peer = message.peer_id
    if isinstance(peer, tl.PeerUser):
        return user_identity(peer.user_id, peers.users.get(peer.user_id))
    return chat_identity(peer, peers)


def user_identity(user_id: int, user: TLObject) -> Identity:
    """A user as an :class:`Identity`; a deleted account keeps its id and loses its name."""
    if user is None:
        return Identity(CHANNEL, str(user_id), "", "")
    if getattr(user, "deleted", False):
        return Identity(CHANNEL, str(user_id), "", "Deleted Account")
    name = " ".join(part for part in (user.first_name, user.last_name) if part)
    username = _username(user)
    return Identity(CHANNEL, str(user_id), f"@{username}" if username else "", name)


def chat_identity(peer: TLObject, peers: Peers) -> Identity:
    """A chat as an :class:`Identity`: where replies to its messages go."""
    key = chat_key(peer, peers.self_id)
    if isinstance(peer, tl.PeerUser):
        user = user_identity(peer.user_id, peers.users.get(peer.user_id))
        return Identity(CHANNEL, key, user.handle or key, user.display_name)
    bare = peer.chat_id if isinstance(peer, tl.PeerChat) else peer.channel_id
    chat = peers.chats.get(bare)
    title = getattr(chat, "title", "") or ""
    username = _username(chat) if chat is not None else None
    return Identity(CHANNEL, key, f"@{username}" if username else key, title)


def _username(entity: TLObject) -> str | None:
    username = getattr(entity, "username", None)
    if username:
        return str(username)
    for alias in getattr(entity, "usernames", None) or ():
        if getattr(alias, "active", False):
            return str(alias.username)
    return None


def _quote(reply_to: TLObject) -> str:
    quote = getattr(reply_to, "quote_text", None)
    if not quote:
        return ""
    return "\n".join(f"> {line}" for line in str(quote).splitlines())


def _reply_target(message: TLObject, chat: str, self_id: int) -> str | None:
    reply_to = message.reply_to
    if not isinstance(reply_to, tl.MessageReplyHeader) or not reply_to.reply_to_msg_id:
        return None
    peer = reply_to.reply_to_peer_id
    where = chat_key(peer, self_id) if peer is not None else chat
    return f"{where}:{reply_to.reply_to_msg_id}"


def _in_reply_to(message: TLObject, chat: str, self_id: int) -> str | None:
    return _reply_target(message, chat, self_id)


def _thread_key(message: TLObject, chat: str, external_id: str, peers: Peers) -> str:
    # A private chat has no threads: one conversation per chat and UTC day, so a burst of
    # messages is acknowledged once and a new problem days later is acknowledged again.
    if isinstance(message.peer_id, tl.PeerUser):
        return f"{chat}:{message.date.astimezone(UTC):%Y-%m-%d}"
    reply_to = message.reply_to
    top = getattr(reply_to, "reply_to_top_id", None)
    if top:
        return f"{chat}:{top}"
    parent = _reply_target(message, chat, peers.self_id)
    if parent is None:
        return external_id
    return peers.threads.get(parent, parent)


@dataclass(frozen=True, slots=True)
class Media:
    """What a message's media is, without downloading it."""

    kind: str
    attachments: tuple[Attachment, ...] = ()
    summary: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)
    known: bool = True


_NO_MEDIA: Final = Media("")


def describe_media(media: TLObject) -> Media:
    """Attachment metadata and a one-line description of ``media`` (nothing is downloaded)."""
    if media is None or isinstance(media, tl.MessageMediaEmpty):
        return _NO_MEDIA
    if isinstance(media, tl.MessageMediaPhoto):
        return _photo(media.photo)
    if isinstance(media, tl.MessageMediaDocument):
        return _document(media.document)
    if isinstance(media, tl.MessageMediaWebPage):
        return Media("webpage", meta={"url": getattr(media.webpage, "url", None)})
    if isinstance(media, tl.MessageMediaPoll):
        return _poll(media.poll)
    describe = _OTHER_MEDIA.get(type(media).__name__)
    if describe is not None:
        return describe(media)
    name = type(media).__name__
    return Media(name, summary=f"[{name}]", known=False)


def _photo(photo: TLObject) -> Media:
    if not isinstance(photo, tl.Photo):
        return Media("photo", summary="[photo, no longer available]")
    size = max((_photo_size_bytes(size) for size in photo.sizes), default=0)
    attachment = Attachment(f"photo-{photo.id}.jpg", "image/jpeg", size, "")
    return Media("photo", (attachment,), "[photo]", {"id": photo.id})


def _photo_size_bytes(size: TLObject) -> int:
    if isinstance(size, tl.PhotoSizeProgressive):
        return max(size.sizes, default=0)
    if isinstance(size, tl.PhotoCachedSize):
        return len(size.bytes)
    return int(getattr(size, "size", 0) or 0)


_DOCUMENT_KINDS: Final = (
    ("DocumentAttributeSticker", "sticker"),
    ("DocumentAttributeAnimated", "animation"),
    ("DocumentAttributeVideo", "video"),
    ("DocumentAttributeAudio", "audio"),
)
_EXTENSIONS: Final = {"sticker": "webp", "animation": "mp4", "video": "mp4", "audio": "ogg"}


def _document(document: TLObject) -> Media:
    if not isinstance(document, tl.Document):
        return Media("document", summary="[file, no longer available]")
    attributes = {type(attribute).__name__: attribute for attribute in document.attributes}
    kind = next((kind for name, kind in _DOCUMENT_KINDS if name in attributes), "document")
    if kind == "audio" and getattr(attributes["DocumentAttributeAudio"], "voice", False):
        kind = "voice"
    file_name = getattr(attributes.get("DocumentAttributeFilename"), "file_name", None)
    name = file_name or f"{kind}-{document.id}.{_EXTENSIONS.get(kind, 'bin')}"
    attachment = Attachment(
        name, document.mime_type or "application/octet-stream", document.size, ""
    )
    meta: dict[str, Any] = {"id": document.id, "kind": kind}
    emoji = getattr(attributes.get("DocumentAttributeSticker"), "alt", None)
    if emoji:
        meta["emoji"] = emoji
    for attribute in ("DocumentAttributeVideo", "DocumentAttributeAudio"):
        duration = getattr(attributes.get(attribute), "duration", None)
        if duration is not None:
            meta["duration_s"] = float(duration)
    label = f"[{kind} {emoji}]" if emoji else f"[{kind}: {name}]"
    return Media("document", (attachment,), label, meta)


def _poll(poll: TLObject) -> Media:
    question = _plain(getattr(poll, "question", ""))
    answers = [_plain(getattr(answer, "text", "")) for answer in getattr(poll, "answers", ())]
    summary = f"[poll] {question}" + "".join(f"\n- {answer}" for answer in answers)
    return Media("poll", summary=summary, meta={"question": question, "answers": answers})


def _plain(text: TLObject) -> str:
    # Newer layers wrap poll texts in TextWithEntities.
    return str(getattr(text, "text", text) or "")


def _simple(kind: str, label: str) -> Callable[[TLObject], Media]:
    def describe(media: TLObject) -> Media:
        return Media(kind, summary=label)

    return describe


def _unsupported(media: TLObject) -> Media:
    return Media("unsupported", summary="[a message this Telegram client cannot show]", known=False)


def _contact(media: TLObject) -> Media:
    name = " ".join(part for part in (media.first_name, media.last_name) if part)
    return Media("contact", summary=f"[contact] {name}".rstrip())


def _dice(media: TLObject) -> Media:
    return Media("dice", summary=f"[dice {media.emoticon} {media.value}]")


_OTHER_MEDIA: Final[Mapping[str, Callable[[TLObject], Media]]] = {
    "MessageMediaGeo": _simple("geo", "[location]"),
    "MessageMediaGeoLive": _simple("geo_live", "[live location]"),
    "MessageMediaVenue": _simple("venue", "[venue]"),
    "MessageMediaContact": _contact,
    "MessageMediaDice": _dice,
    "MessageMediaGame": _simple("game", "[game]"),
    "MessageMediaInvoice": _simple("invoice", "[invoice]"),
    "MessageMediaStory": _simple("story", "[story]"),
    "MessageMediaGiveaway": _simple("giveaway", "[giveaway]"),
    "MessageMediaGiveawayResults": _simple("giveaway_results", "[giveaway results]"),
    "MessageMediaPaidMedia": _simple("paid_media", "[paid media]"),
    "MessageMediaUnsupported": _unsupported,
}


def _meta(message: TLObject, raw_text: str, media: Media, peers: Peers) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "public": not is_private(message),
        "chat_id": utils.get_peer_id(message.peer_id),
        "chat_type": _chat_type(message.peer_id, peers),
        "message_id": message.id,
        "mentioned": bool(message.mentioned),
    }
    entities = entity_list(raw_text, message.entities or ())
    if entities:
        meta["entities"] = entities
    if media.kind:
        meta["media"] = {"type": media.kind, **media.meta}
    forward = _forward(message.fwd_from)
    if forward:
        meta["forwarded_from"] = forward
    if message.edit_date is not None:
        meta["edit_date"] = message.edit_date.astimezone(UTC).isoformat()
    if message.via_bot_id:
        meta["via_bot_id"] = message.via_bot_id
    if message.grouped_id:
        meta["album_id"] = message.grouped_id
    sender = message.from_id
    if isinstance(sender, tl.PeerUser) and getattr(
        peers.users.get(sender.user_id), "deleted", None
    ):
        meta["sender_deleted"] = True
    if sender is not None and not isinstance(sender, tl.PeerUser):
        meta["sender_is_chat"] = True
    return meta


def _chat_type(peer: TLObject, peers: Peers) -> str:
    if isinstance(peer, tl.PeerUser):
        return "private"
    if isinstance(peer, tl.PeerChat):
        return "group"
    chat = peers.chats.get(peer.channel_id)
    return "channel" if getattr(chat, "broadcast", False) else "supergroup"


def entity_list(text: str, entities: Iterable[Any]) -> list[dict[str, Any]]:
    """Telegram's entities of ``text`` as JSON: kind, UTF-16 offset and length, and the text.

    Formatting entities (bold, code…) keep their position only; mentions, hashtags, links and
    commands keep the text they cover, and hidden links their URL.
    """
    encoded = text.encode("utf-16-le")
    found = []
    for entity in entities:
        kind = _ENTITY_NAMES.get(type(entity).__name__, "unknown")
        item: dict[str, Any] = {"type": kind, "offset": entity.offset, "length": entity.length}
        if kind in _KEPT_ENTITY_TEXT:
            covered = encoded[2 * entity.offset : 2 * (entity.offset + entity.length)]
            item["text"] = covered.decode("utf-16-le", errors="replace")
        if kind == "text_url":
            item["url"] = entity.url
        if kind == "mention_name":
            item["user_id"] = entity.user_id
        if kind == "pre" and getattr(entity, "language", None):
            item["language"] = entity.language
        found.append(item)
    return found


def _forward(header: TLObject) -> dict[str, Any] | None:
    if not isinstance(header, tl.MessageFwdHeader):
        return None
    forward: dict[str, Any] = {}
    if header.from_id is not None:
        forward["id"] = utils.get_peer_id(header.from_id)
    if header.from_name:
        forward["name"] = header.from_name
    if header.date is not None:
        forward["date"] = header.date.astimezone(UTC).isoformat()
    if header.channel_post:
        forward["channel_post"] = header.channel_post
    return forward


def _notes(message: TLObject, media: Media, text: str) -> tuple[str, ...]:
    notes = []
    if message.fwd_from is not None:
        notes.append("forwarded message: the text is someone else's words")
    if message.edit_date is not None:
        notes.append(f"edited at {message.edit_date.astimezone(UTC).isoformat()}")
    if media.kind and not text:
        notes.append(f"no text: {media.summary.splitlines()[0]}")
    if not media.known:
        notes.append(f"media of a kind this adapter does not read ({media.kind}); stored as is")
    if media.attachments:
        notes.append("attachments are listed, not downloaded")
    return tuple(notes)
