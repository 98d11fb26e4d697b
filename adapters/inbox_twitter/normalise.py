"""Posts and direct-message events of the X API v2 as inbound messages: pure functions, no I/O.

A post's ``external_id`` is ``tweet:<id>`` and a DM's ``dm:<event id>``, so a post found by
the mentions stream and by a search is one record. A post's conversation
(``conversation_id``, else the post it answers) is its ``thread_key``; a one-to-one DM
conversation has no threads, so its messages of one UTC day share one (a burst is
acknowledged once, a new problem the next week again).

What the API leaves out is noted, never guessed: an author missing from ``includes.users``
(deleted, suspended or protected) keeps its id with no handle, and so gets no reply; a post it
answers that the API could not return is named in ``notes``. Short links (``t.co``) are
replaced by the address they stand for; media links are left out of the sender's words.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from inbox_daemon.errors import MessageError
from inbox_daemon.interfaces import Attachment, Identity, InboundMessage
from inbox_daemon.pipeline.normalise import clean_text

CHANNEL: Final = "twitter"

#: X ids are "snowflakes": milliseconds since this epoch, shifted left by 22 bits.
_SNOWFLAKE_EPOCH: Final = datetime(2010, 11, 4, 1, 42, 54, 657000, tzinfo=UTC)
_ID: Final = re.compile(r"^[0-9]{1,20}$")
_MEDIA_TYPES: Final = {"photo": "image/jpeg", "video": "video/mp4", "animated_gif": "video/mp4"}
_MEDIA_HOSTS: Final = ("pic.twitter.com/", "pic.x.com/")


@dataclass(frozen=True, slots=True)
class Includes:
    """A page's expansions, by id: users, posts and media."""

    users: Mapping[str, Mapping[str, Any]]
    tweets: Mapping[str, Mapping[str, Any]]
    media: Mapping[str, Mapping[str, Any]]
    errors: tuple[Mapping[str, Any], ...]

    @classmethod
    def of(cls, includes: Mapping[str, Any], errors: Sequence[Mapping[str, Any]]) -> Includes:
        """Index the ``includes`` and partial ``errors`` of one page."""
        return cls(
            users=_by_key(includes.get("users"), "id"),
            tweets=_by_key(includes.get("tweets"), "id"),
            media=_by_key(includes.get("media"), "media_key"),
            errors=tuple(errors),
        )

    def error_about(self, resource_id: str) -> str | None:
        """The API's explanation of why ``resource_id`` is missing, if it gave one."""
        for error in self.errors:
            if str(error.get("resource_id") or error.get("value") or "") == resource_id:
                return str(error.get("detail") or error.get("title") or "not returned")
        return None


def item_id(item: object) -> str | None:
    """The id of a post or DM event as the API sent it, when it is a valid id."""
    value = item.get("id") if isinstance(item, Mapping) else None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and _ID.match(value) else None


def id_time(snowflake: str) -> datetime:
    """When the post or event with id ``snowflake`` was created (to the millisecond)."""
    return _SNOWFLAKE_EPOCH + timedelta(milliseconds=int(snowflake) >> 22)


def tweet_message(tweet: Mapping[str, Any], includes: Includes, *, stream: str) -> InboundMessage:
    """The inbound message of one post.

    Raises:
        MessageError: the post has no valid id, or neither text nor media.
    """
    tweet_id = _required_id(tweet, "post")
    notes: list[str] = []
    raw_text = _tweet_text(tweet)
    media = _media(tweet.get("attachments"), includes)
    if raw_text is None and not media:
        raise MessageError(f"post {tweet_id} has no text and no media")
    entities = _mapping(tweet.get("entities"))
    full_text, own_words = _texts(raw_text or "", entities)
    if not own_words.strip() and media:
        notes.append(f"media only: {', '.join(str(m.get('type', 'media')) for m in media)}")
    sender = _author(tweet.get("author_id"), includes, notes)
    replied_to, quoted = _references(tweet, includes, notes)
    conversation = _id_field(tweet, "conversation_id") or replied_to or tweet_id
    full_text = "\n".join(filter(None, (full_text, *quoted)))
    return InboundMessage(
        external_id=f"tweet:{tweet_id}",
        channel=CHANNEL,
        received_at=_created_at(tweet, tweet_id, notes),
        sender=sender,
        subject="",
        text=clean_text(own_words),
        full_text=clean_text(full_text),
        thread_key=f"tweet:{conversation}",
        in_reply_to=f"tweet:{replied_to}" if replied_to else None,
        references=(f"tweet:{conversation}",) if conversation != tweet_id else (),
        meta=_tweet_meta(tweet, tweet_id, conversation, entities, includes, media, stream),
        attachments=_attachments(media),
        raw_ref=f"https://x.com/i/web/status/{tweet_id}",
        notes=tuple(notes + _withheld_notes(tweet)),
    )


def dm_message(
    event: Mapping[str, Any], includes: Includes, *, own_user_id: str | None
) -> InboundMessage:
    """The inbound message of one ``MessageCreate`` DM event.

    Raises:
        MessageError: the event has no valid id, or neither text nor media.
    """
    event_id = _required_id(event, "DM event")
    notes: list[str] = []
    text = event.get("text")
    media = _media(event.get("attachments"), includes)
    if not isinstance(text, str) and not media:
        raise MessageError(f"DM event {event_id} has no text and no media")
    entities = _mapping(event.get("entities"))
    full_text, own_words = _texts(text if isinstance(text, str) else "", entities)
    if not own_words.strip() and media:
        notes.append(f"media only: {', '.join(str(m.get('type', 'media')) for m in media)}")
    sender = _author(event.get("sender_id"), includes, notes)
    received_at = _created_at(event, event_id, notes)
    conversation = _id_field(event, "dm_conversation_id", pattern=r"^[0-9-]{1,41}$")
    if conversation is None and sender.id and own_user_id:
        conversation = "-".join(sorted((sender.id, own_user_id), key=int))
    conversation = conversation or f"event-{event_id}"
    meta: dict[str, Any] = {
        "public": False,
        "stream": ["direct_messages"],
        "dm_event_id": event_id,
        "dm_conversation_id": conversation,
        **_entity_meta(entities),
    }
    if media:
        meta["media"] = [_media_meta(m) for m in media]
    return InboundMessage(
        external_id=f"dm:{event_id}",
        channel=CHANNEL,
        received_at=received_at,
        sender=sender,
        subject="",
        text=clean_text(own_words),
        full_text=clean_text(full_text),
        thread_key=f"dm:{conversation}:{received_at:%Y-%m-%d}",
        meta=meta,
        attachments=_attachments(media),
        raw_ref=f"dm_conversation:{conversation};event={event_id}",
        notes=tuple(notes),
    )


def _required_id(item: Mapping[str, Any], what: str) -> str:
    found = item_id(item)
    if found is None:
        raise MessageError(f"{what} without a valid id (got {item.get('id')!r})")
    return found


def _id_field(item: Mapping[str, Any], key: str, *, pattern: str = _ID.pattern) -> str | None:
    value = item.get(key)
    return value if isinstance(value, str) and re.match(pattern, value) else None


def _tweet_text(tweet: Mapping[str, Any]) -> str | None:
    # A long post (over 280 characters) carries its whole text in note_tweet; "text" then
    # holds only its start.
    note = tweet.get("note_tweet")
    if isinstance(note, Mapping) and isinstance(note.get("text"), str):
        return str(note["text"])
    text = tweet.get("text")
    return text if isinstance(text, str) else None


def _texts(text: str, entities: Mapping[str, Any]) -> tuple[str, str]:
    """The full text (short links expanded) and the sender's words (media links removed)."""
    full, own = text, text
    for url in _list(entities.get("urls")):
        short = url.get("url")
        if not isinstance(short, str) or not short:
            continue
        expanded = str(url.get("expanded_url") or short)
        display = str(url.get("display_url") or "")
        is_media = "media_key" in url or display.startswith(_MEDIA_HOSTS)
        full = full.replace(short, expanded)
        own = own.replace(short, "" if is_media else expanded)
    # The API escapes "&", "<" and ">" in text as HTML entities.
    return html.unescape(full), html.unescape(own).strip()


def _author(author_id: object, includes: Includes, notes: list[str]) -> Identity:
    if not isinstance(author_id, str) or not _ID.match(author_id):
        notes.append("sender unknown: the API gave no author id")
        return Identity(CHANNEL, "", "")
    user = includes.users.get(author_id)
    if user is None:
        why = includes.error_about(author_id) or "not returned by the API"
        notes.append(f"sender account {author_id} not available ({why}): no reply possible")
        return Identity(CHANNEL, author_id, "")
    username = user.get("username")
    handle = f"@{username}" if isinstance(username, str) and username else ""
    name = user.get("name")
    return Identity(CHANNEL, author_id, handle, name if isinstance(name, str) else "")


def _references(
    tweet: Mapping[str, Any], includes: Includes, notes: list[str]
) -> tuple[str | None, list[str]]:
    """The id of the post this one answers, and quoted lines of the posts it refers to."""
    replied_to: str | None = None
    quoted: list[str] = []
    for reference in _list(tweet.get("referenced_tweets")):
        ref_id, kind = reference.get("id"), reference.get("type")
        if not isinstance(ref_id, str) or not _ID.match(ref_id):
            continue
        if kind == "replied_to":
            replied_to = ref_id
        referenced = includes.tweets.get(ref_id)
        if referenced is None:
            why = includes.error_about(ref_id) or "not returned by the API"
            notes.append(f"{kind} post {ref_id} not available ({why})")
            continue
        author = includes.users.get(str(referenced.get("author_id", "")), {})
        who = f"@{author['username']}" if author.get("username") else "a deleted account"
        text = _tweet_text(referenced) or ""
        lines = html.unescape(text).splitlines() or [""]
        quoted.extend(f"> {who}: {line}" if i == 0 else f"> {line}" for i, line in enumerate(lines))
    return replied_to, quoted


def _created_at(item: Mapping[str, Any], snowflake: str, notes: list[str]) -> datetime:
    value = item.get("created_at")
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            notes.append(f"unreadable created_at {value[:40]!r}: time taken from the id")
        else:
            if parsed.tzinfo is not None:
                return parsed.astimezone(UTC)
            notes.append("created_at without a time zone: time taken from the id")
    return id_time(snowflake)


def _media(attachments: object, includes: Includes) -> list[Mapping[str, Any]]:
    keys = attachments.get("media_keys") if isinstance(attachments, Mapping) else None
    found: list[Mapping[str, Any]] = []
    for key in keys if isinstance(keys, list) else []:
        if isinstance(key, str):
            found.append(includes.media.get(key) or {"media_key": key, "type": "media"})
    return found


def _attachments(media: Iterable[Mapping[str, Any]]) -> tuple[Attachment, ...]:
    # X media are not downloaded: the size and digest are unknown, the key names them.
    return tuple(
        Attachment(
            name=str(item.get("media_key", "")),
            content_type=_MEDIA_TYPES.get(str(item.get("type")), "application/octet-stream"),
            size_bytes=0,
            sha256="",
        )
        for item in media
    )


def _media_meta(item: Mapping[str, Any]) -> dict[str, Any]:
    kept = ("media_key", "type", "url", "preview_image_url", "alt_text", "duration_ms")
    return {key: item[key] for key in kept if key in item}


def _entity_meta(entities: Mapping[str, Any]) -> dict[str, Any]:
    tags = {
        "hashtags": [f"#{e['tag']}" for e in _list(entities.get("hashtags")) if e.get("tag")],
        "cashtags": [f"${e['tag']}" for e in _list(entities.get("cashtags")) if e.get("tag")],
        "mentions": [
            f"@{e['username']}" for e in _list(entities.get("mentions")) if e.get("username")
        ],
        "urls": [
            str(e.get("expanded_url") or e["url"])
            for e in _list(entities.get("urls"))
            if e.get("url")
        ],
    }
    return {key: values for key, values in tags.items() if values}


def _tweet_meta(
    tweet: Mapping[str, Any],
    tweet_id: str,
    conversation: str,
    entities: Mapping[str, Any],
    includes: Includes,
    media: Sequence[Mapping[str, Any]],
    stream: str,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "public": True,
        "stream": [stream],
        "tweet_id": tweet_id,
        "conversation_id": conversation,
        **_entity_meta(entities),
    }
    for key in ("lang", "reply_settings", "in_reply_to_user_id"):
        if isinstance(tweet.get(key), str):
            meta[key] = tweet[key]
    references = [
        {"type": str(r.get("type")), "id": str(r.get("id"))}
        for r in _list(tweet.get("referenced_tweets"))
    ]
    if references:
        meta["referenced_tweets"] = references
    author = includes.users.get(str(tweet.get("author_id", "")))
    if author is not None:
        meta["author"] = {k: author[k] for k in ("protected", "verified") if k in author}
    if media:
        meta["media"] = [_media_meta(m) for m in media]
    return meta


def _withheld_notes(tweet: Mapping[str, Any]) -> list[str]:
    withheld = tweet.get("withheld")
    if not isinstance(withheld, Mapping):
        return []
    countries = ", ".join(str(c) for c in _list_of_str(withheld.get("country_codes")))
    return [f"withheld in {countries or 'some countries'}"]


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _list_of_str(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _by_key(items: object, key: str) -> dict[str, Mapping[str, Any]]:
    return {str(item[key]): item for item in _list(items) if key in item}
