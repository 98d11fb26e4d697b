"""An X API v2 server on 127.0.0.1 (aiohttp) for the demo and the tests.

It plays one account's side of the API: the mentions timeline, recent and full-archive search,
DM events, user lookup, posting a reply and sending a DM, with ``since_id`` / ``until_id`` /
``start_time``, ``max_results`` and pagination tokens, expansions (authors, referenced posts,
media) and partial ``errors`` for what it cannot return (deleted posts and accounts, protected
posts), in the shapes of the X API v2 OpenAPI description. Every response carries
``x-rate-limit-limit / -remaining / -reset`` from a per-endpoint window, and an exhausted
window answers 429 as X does.

A test or the demo feeds it a scenario: users, posts and DMs (:meth:`LoopbackXApi.add_user`,
:meth:`~LoopbackXApi.post`, :meth:`~LoopbackXApi.add_dm`), or canned responses for an
endpoint (:meth:`~LoopbackXApi.script`: a recorded response, a 429 with reset headers, a
broken body), served before the built-in behaviour. It records every request it received, and
the replies and DMs posted through it.

Point tweepy at it by sending its requests for api.twitter.com to :attr:`LoopbackXApi.base_url`
(the X adapter's ``api_base_url``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from aiohttp import web

_HOST: Final = "127.0.0.1"
_SNOWFLAKE_EPOCH_MS: Final = 1288834974657
_WINDOW_S: Final = 900
#: Per-endpoint requests per 15-minute window (X's Pro figures) unless a scenario sets others.
DEFAULT_LIMITS: Final[Mapping[str, int]] = {
    "GET /2/users/:id/mentions": 450,
    "GET /2/tweets/search/recent": 450,
    "GET /2/tweets/search/all": 300,
    "GET /2/dm_events": 300,
    "GET /2/users/by/username/:username": 300,
    "GET /2/users/me": 75,
    "POST /2/tweets": 100,
    "POST /2/dm_conversations/with/:id/messages": 200,
}
_PROBLEM: Final = "https://api.twitter.com/2/problems/"
_ID_SEGMENT: Final = re.compile(r"^[0-9][0-9-]*$")
_DROPPED_HEADERS: Final = frozenset(
    {"content-encoding", "content-length", "transfer-encoding", "set-cookie", "connection"}
)


def endpoint_of(method: str, path: str) -> str:
    """The endpoint a request is for: ``GET /2/users/:id/mentions``."""
    head, *rest = path.lstrip("/").split("/")
    segments = ["", head, *(":id" if _ID_SEGMENT.match(part) else part for part in rest)]
    if segments[2:5] == ["users", "by", "username"] and len(segments) > 5:
        segments[5] = ":username"
    return f"{method.upper()} {'/'.join(segments)}"


def snowflake(at: datetime, sequence: int = 0) -> str:
    """An X id for something created at ``at`` (``sequence`` tells apart ids of one moment)."""
    millis = int(at.timestamp() * 1000) - _SNOWFLAKE_EPOCH_MS
    return str((millis << 22) | (sequence & 0x3FFFFF))


def iso(at: datetime) -> str:
    """A time as the API writes it: ``2026-11-23T08:00:00.000Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Canned:
    """A canned response: status, headers and body (JSON, or raw bytes sent as they are)."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    raw: bytes | None = None

    @classmethod
    def from_recording(cls, path: Path) -> Canned:
        """A response recorded in ``corpora/twitter-v2/tweepy/`` (first value of each header)."""
        document = json.loads(path.read_text(encoding="utf-8"))
        headers = {
            name: values[0]
            for name, values in document.get("headers", {}).items()
            if values and name.lower() not in _DROPPED_HEADERS
        }
        return cls(int(document["status"]), document.get("body"), headers)

    @classmethod
    def rate_limited(cls, reset_at: datetime, *, limit: int = 15) -> Canned:
        """A 429 as X sends it, the window resetting at ``reset_at``."""
        return cls(
            429,
            {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank"},
            {
                "x-rate-limit-limit": str(limit),
                "x-rate-limit-remaining": "0",
                "x-rate-limit-reset": str(int(reset_at.timestamp())),
            },
        )

    @classmethod
    def broken(cls, raw: bytes, *, status: int = 200) -> Canned:
        """A body sent byte for byte (``application/json`` whatever it holds)."""
        return cls(status, raw=raw)


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request the server answered.

    Attributes:
        method: ``GET`` or ``POST``.
        path: the request path.
        endpoint: the endpoint it was for (``GET /2/users/:id/mentions``).
        query: the query parameters (one value each).
        body: the parsed JSON body of a POST, else ``None``.
        auth: ``bearer``, ``oauth1`` or ``none``: how the request was authenticated.
        status: the status it was answered with.
    """

    method: str
    path: str
    endpoint: str
    query: Mapping[str, str]
    body: Any
    auth: str
    status: int


@dataclass(slots=True)
class XUser:
    """An account the server knows."""

    id: str
    username: str
    name: str
    protected: bool = False
    #: False: ``POST …/messages`` to this user answers 403 ("cannot send messages").
    accepts_dms: bool = True
    #: True: the account is gone; its posts stay, but lookups return an error instead.
    deleted: bool = False

    def as_json(self) -> dict[str, Any]:
        """The user object of ``includes.users`` / ``data``."""
        return {
            "id": self.id,
            "username": self.username,
            "name": self.name,
            "protected": self.protected,
            "verified": False,
        }


@dataclass(slots=True)
class _Window:
    limit: int
    remaining: int
    reset_at: int


class LoopbackXApi:
    """The X API v2 of one account, served on ``127.0.0.1`` (an async context manager).

    Args:
        account: the account whose mentions and DMs are served and who posts replies.
        tokens: when given, the bearer tokens and OAuth 1.0a access tokens accepted; any
            other request is answered 401. ``None`` accepts every request.

    Attributes:
        received: every request answered, in order.
        replies: the posts created through ``POST /2/tweets``.
        sent_dms: the DM events created through ``POST …/messages``.
    """

    def __init__(self, account: XUser, *, tokens: Iterable[str] | None = None) -> None:
        self.account = account
        self.port = 0
        self.users: dict[str, XUser] = {account.id: account}
        self.tweets: dict[str, dict[str, Any]] = {}
        self.dm_events: dict[str, dict[str, Any]] = {}
        self.media: dict[str, dict[str, Any]] = {}
        self.received: list[ReceivedRequest] = []
        self.replies: list[dict[str, Any]] = []
        self.sent_dms: list[dict[str, Any]] = []
        self._tokens = frozenset(tokens) if tokens is not None else None
        self._scripts: dict[str, deque[Canned]] = {}
        self._windows: dict[str, _Window] = {}
        self._limits: dict[str, int] = dict(DEFAULT_LIMITS)
        self._sequence = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """Where to send the API's requests: ``http://127.0.0.1:<port>``."""
        return f"http://{_HOST}:{self.port}"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on a free port (or :attr:`port` when set)."""
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((_HOST, self.port))
        self.port = listener.getsockname()[1]
        await web.SockSite(self._runner, listener).start()

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # --- the scenario ---------------------------------------------------------------------

    def add_user(
        self, username: str, name: str = "", *, user_id: str | None = None, **flags: bool
    ) -> XUser:
        """Make an account known (``protected``, ``accepts_dms``, ``deleted`` as flags)."""
        user = XUser(user_id or self._next_id(datetime(2015, 1, 1, tzinfo=UTC)), username, name)
        for flag, value in flags.items():
            setattr(user, flag, value)
        self.users[user.id] = user
        return user

    def post(
        self,
        author: XUser,
        text: str,
        *,
        at: datetime | None = None,
        reply_to: str | None = None,
        quote: str | None = None,
        media: Iterable[str] = (),
        lang: str = "en",
    ) -> str:
        """Publish a post by ``author``; its id. ``media`` are types (``photo``, ``video``)."""
        when = at or datetime.now(UTC)
        tweet_id = self._next_id(when)
        tweet: dict[str, Any] = {
            "id": tweet_id,
            "text": text,
            "author_id": author.id,
            "created_at": iso(when),
            "conversation_id": tweet_id,
            "lang": lang,
            "edit_history_tweet_ids": [tweet_id],
            "reply_settings": "everyone",
        }
        tweet |= self._references(reply_to, quote)
        entities = _entities(text, self.users)
        keys = [self._add_media(tweet_id, kind, index) for index, kind in enumerate(media)]
        if keys:
            tweet["attachments"] = {"media_keys": keys}
            link = f"https://t.co/m{tweet_id[-8:]}"
            tweet["text"] = f"{text} {link}".strip()
            entities.setdefault("urls", []).append(_media_url(tweet, link, tweet_id, keys[0]))
        if entities:
            tweet["entities"] = entities
        self.tweets[tweet_id] = tweet
        return tweet_id

    def add_dm(self, sender: XUser, text: str, *, at: datetime | None = None) -> str:
        """A DM from ``sender`` to the account (or from the account: ``sender`` is it)."""
        when = at or datetime.now(UTC)
        event_id = self._next_id(when)
        other = sender if sender.id != self.account.id else None
        conversation = "-".join(sorted({sender.id, self.account.id}, key=int))
        event = {
            "id": event_id,
            "event_type": "MessageCreate",
            "text": text,
            "sender_id": sender.id,
            "created_at": iso(when),
            "dm_conversation_id": conversation,
            "participant_ids": sorted({self.account.id, (other or sender).id}, key=int),
        }
        self.dm_events[event_id] = event
        return event_id

    def delete_post(self, tweet_id: str) -> None:
        """Delete a post: it is no longer served, and answers to it name it in ``errors``."""
        self.tweets.pop(tweet_id, None)

    def script(self, endpoint: str, *responses: Canned) -> None:
        """Answer the next calls of ``endpoint`` (``GET /2/dm_events``) with ``responses``."""
        self._scripts.setdefault(endpoint, deque()).extend(responses)

    def set_limit(
        self, endpoint: str, limit: int, *, remaining: int | None = None, reset_in_s: int = 900
    ) -> None:
        """Set ``endpoint``'s window: ``limit`` calls, ``remaining`` left until the reset."""
        self._limits[endpoint] = limit
        reset_at = int(time.time()) + reset_in_s
        self._windows[endpoint] = _Window(
            limit, limit if remaining is None else remaining, reset_at
        )

    def calls(self, endpoint: str) -> list[ReceivedRequest]:
        """The requests received for ``endpoint``."""
        return [request for request in self.received if request.endpoint == endpoint]

    async def wait_for(self, condition: Callable[[], bool], timeout_s: float) -> None:
        """Wait until ``condition()`` holds after a request (replies, DMs …).

        Raises:
            TimeoutError: it did not hold within ``timeout_s`` seconds.
        """
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(condition)

    # --- requests -------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        endpoint = endpoint_of(request.method, request.path)
        body = await _json_body(request)
        auth = _auth_kind(request.headers.get("Authorization", ""))
        response = self._answer(request, endpoint, body, auth)
        self.received.append(
            ReceivedRequest(
                request.method,
                request.path,
                endpoint,
                dict(request.query),
                body,
                auth,
                response.status,
            )
        )
        async with self._changed:
            self._changed.notify_all()
        return response

    def _answer(
        self, request: web.Request, endpoint: str, body: object, auth: str
    ) -> web.StreamResponse:
        if not self._authorised(request.headers.get("Authorization", "")):
            return _problem(401, "Unauthorized", "Unauthorized")
        scripted = self._scripts.get(endpoint)
        if scripted:
            return _canned(scripted.popleft())
        window = self._window(endpoint)
        if window.remaining <= 0 and window.reset_at > time.time():
            return _with_limits(_problem(429, "Too Many Requests", "Too Many Requests"), window)
        window.remaining -= 1
        handler = self._handlers().get(endpoint)
        if handler is None:
            return _with_limits(_problem(404, "Not Found Error", f"no route {endpoint}"), window)
        try:
            answer = handler(request, body)
        except _ApiError as exc:
            answer = _problem(exc.status, exc.title, exc.detail)
        return _with_limits(answer, window)

    def _handlers(self) -> dict[str, Callable[[web.Request, object], web.Response]]:
        return {
            "GET /2/users/:id/mentions": self._mentions,
            "GET /2/tweets/search/recent": self._search,
            "GET /2/tweets/search/all": self._search,
            "GET /2/dm_events": self._dm_events,
            "GET /2/users/by/username/:username": self._user_by_username,
            "GET /2/users/me": lambda request, body: _json({"data": self.account.as_json()}),
            "POST /2/tweets": self._create_tweet,
            "POST /2/dm_conversations/with/:id/messages": self._create_dm,
        }

    def _authorised(self, header: str) -> bool:
        if self._tokens is None:
            return True
        if header.startswith("Bearer "):
            return header.removeprefix("Bearer ") in self._tokens
        found = re.search(r'oauth_token="([^"]*)"', header)
        return found is not None and found.group(1) in self._tokens

    def _window(self, endpoint: str) -> _Window:
        window = self._windows.get(endpoint)
        now = int(time.time())
        if window is None or window.reset_at <= now:
            limit = self._limits.get(endpoint, 300)
            window = self._windows[endpoint] = _Window(limit, limit, now + _WINDOW_S)
        return window

    def _mentions(self, request: web.Request, body: object) -> web.Response:
        user = self.users.get(request.path.split("/")[3])
        if user is None:
            raise _ApiError(404, "Not Found Error", "Could not find user")
        handle = f"@{user.username}".lower()
        found = [t for t in self.tweets.values() if handle in t["text"].lower()]
        return self._tweet_page(request, found, "pagination_token", minimum=5)

    def _search(self, request: web.Request, body: object) -> web.Response:
        query = request.query.get("query", "")
        if not query.strip():
            raise _ApiError(400, "Invalid Request", "The `query` query parameter can not be empty")
        matches = _query_matcher(query)
        visible = [
            tweet
            for tweet in self.tweets.values()
            if matches(tweet["text"]) and not self._author_protected(tweet)
        ]
        return self._tweet_page(request, visible, "next_token", minimum=10)

    def _dm_events(self, request: web.Request, body: object) -> web.Response:
        events = sorted(self.dm_events.values(), key=lambda e: int(e["id"]), reverse=True)
        page, token = _paginate(events, request.query.get("pagination_token"), request, 1)
        users = {e["sender_id"] for e in page}
        document: dict[str, Any] = {"data": page} if page else {}
        included = [self.users[u].as_json() for u in sorted(users) if u in self.users]
        if included and "sender_id" in request.query.get("expansions", ""):
            document["includes"] = {"users": included}
        document["meta"] = {"result_count": len(page), **({"next_token": token} if token else {})}
        return _json(document)

    def _user_by_username(self, request: web.Request, body: object) -> web.Response:
        username = request.path.rsplit("/", 1)[-1].lower()
        for user in self.users.values():
            if user.username.lower() == username and not user.deleted:
                return _json({"data": user.as_json()})
        return _json({"errors": [_not_found("user", username, "username")]})

    def _create_tweet(self, request: web.Request, body: object) -> web.Response:
        fields: dict[str, Any] = body if isinstance(body, dict) else {}
        text = fields.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _ApiError(400, "Invalid Request", "text is required")
        if weighted_length(text) > 280:
            raise _ApiError(403, "Forbidden", "Tweet text is too long.")
        reply = fields.get("reply")
        target = reply.get("in_reply_to_tweet_id") if isinstance(reply, dict) else None
        if target is not None and target not in self.tweets:
            raise _ApiError(403, "Forbidden", "You attempted to reply to a Tweet that is deleted.")
        tweet_id = self.post(self.account, text, reply_to=target)
        created = {"id": tweet_id, "text": text, "edit_history_tweet_ids": [tweet_id]}
        self.replies.append({**created, "in_reply_to_tweet_id": target})
        return _json({"data": created}, status=201)

    def _create_dm(self, request: web.Request, body: object) -> web.Response:
        recipient = self.users.get(request.path.split("/")[4])
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text:
            raise _ApiError(400, "Invalid Request", "text is required")
        if recipient is None or recipient.deleted or not recipient.accepts_dms:
            raise _ApiError(403, "Forbidden", "You cannot send messages to this user.")
        event_id = self.add_dm(self.account, text)
        event = self.dm_events[event_id]
        self.sent_dms.append({**event, "recipient_id": recipient.id})
        created = {"dm_conversation_id": event["dm_conversation_id"], "dm_event_id": event_id}
        return _json({"data": created}, status=201)

    # --- pages ----------------------------------------------------------------------------

    def _tweet_page(
        self, request: web.Request, tweets: list[dict[str, Any]], token_name: str, minimum: int
    ) -> web.Response:
        selected = _time_bounded(tweets, request.query)
        ordered = sorted(selected, key=lambda t: int(t["id"]), reverse=True)
        page, token = _paginate(ordered, request.query.get(token_name), request, minimum)
        document: dict[str, Any] = {}
        if page:
            document["data"] = page
            includes, errors = self._expansions(page, request.query.get("expansions", ""))
            if includes:
                document["includes"] = includes
            if errors:
                document["errors"] = errors
        meta: dict[str, Any] = {"result_count": len(page)}
        if page:
            meta |= {"newest_id": page[0]["id"], "oldest_id": page[-1]["id"]}
        if token:
            meta["next_token"] = token
        document["meta"] = meta
        return _json(document)

    def _expansions(
        self, page: list[dict[str, Any]], expansions: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        wanted = set(expansions.split(",")) if expansions else set()
        users: dict[str, dict[str, Any]] = {}
        tweets: dict[str, dict[str, Any]] = {}
        errors: list[dict[str, Any]] = []
        if "referenced_tweets.id" in wanted:
            self._referenced(page, tweets, errors)
        if "author_id" in wanted:
            for tweet in [*page, *tweets.values()]:
                self._include_author(tweet["author_id"], users, errors)
        includes: dict[str, Any] = {}
        if users:
            includes["users"] = list(users.values())
        if tweets:
            includes["tweets"] = list(tweets.values())
        media = [
            self.media[k] for t in page for k in t.get("attachments", {}).get("media_keys", [])
        ]
        if media and "attachments.media_keys" in wanted:
            includes["media"] = media
        return includes, errors

    def _referenced(
        self, page: list[dict[str, Any]], found: dict[str, dict[str, Any]], errors: list[Any]
    ) -> None:
        for tweet in page:
            for reference in tweet.get("referenced_tweets", []):
                target = self.tweets.get(reference["id"])
                if target is None:
                    errors.append(_not_found("tweet", reference["id"], "referenced_tweets.id"))
                elif self._author_protected(target):
                    errors.append(_not_authorised(reference["id"]))
                else:
                    found[target["id"]] = target

    def _include_author(
        self, user_id: str, users: dict[str, dict[str, Any]], errors: list[Any]
    ) -> None:
        user = self.users.get(user_id)
        if user is None or user.deleted:
            if not any(e.get("resource_id") == user_id for e in errors):
                errors.append(_not_found("user", user_id, "author_id"))
            return
        users[user_id] = user.as_json()

    def _author_protected(self, tweet: Mapping[str, Any]) -> bool:
        author = self.users.get(tweet["author_id"])
        return author is not None and author.protected and author.id != self.account.id

    def _references(self, reply_to: str | None, quote: str | None) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        references = []
        if reply_to is not None:
            parent = self.tweets.get(reply_to)
            references.append({"type": "replied_to", "id": reply_to})
            fields["conversation_id"] = parent["conversation_id"] if parent else reply_to
            if parent is not None:
                fields["in_reply_to_user_id"] = parent["author_id"]
        if quote is not None:
            references.append({"type": "quoted", "id": quote})
        if references:
            fields["referenced_tweets"] = references
        return fields

    def _add_media(self, tweet_id: str, kind: str, index: int) -> str:
        key = f"{3 if kind == 'photo' else 7}_{tweet_id}{index}"
        item: dict[str, Any] = {"media_key": key, "type": kind}
        if kind == "photo":
            item["url"] = f"https://pbs.twimg.com/media/{key}.jpg"
        self.media[key] = item
        return key

    def _next_id(self, at: datetime) -> str:
        return snowflake(at, next(self._sequence))


class _ApiError(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


#: twitter-text's ranges of characters that count 1; every other character counts 2.
_LIGHT_RANGES: Final = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))


def weighted_length(text: str) -> int:
    """The length X counts (twitter-text): 1 or 2 per character, 23 per URL."""
    counted = re.sub(r"https?://\S+", "x" * 23, unicodedata.normalize("NFC", text))
    return sum(
        1 if any(low <= ord(c) <= high for low, high in _LIGHT_RANGES) else 2 for c in counted
    )


def _entities(text: str, users: Mapping[str, XUser]) -> dict[str, Any]:
    by_name = {user.username.lower(): user for user in users.values()}
    found: dict[str, list[dict[str, Any]]] = {}
    for match in re.finditer(r"(?<![\w@])@(\w{1,50})", text):
        mention: dict[str, Any] = {"start": match.start(), "end": match.end(), "username": match[1]}
        if match[1].lower() in by_name:
            mention["id"] = by_name[match[1].lower()].id
        found.setdefault("mentions", []).append(mention)
    for kind, sign in (("hashtags", "#"), ("cashtags", r"\$")):
        for match in re.finditer(rf"(?<!\w){sign}([A-Za-z_]\w*)", text):
            found.setdefault(kind, []).append(
                {"start": match.start(), "end": match.end(), "tag": match[1]}
            )
    return found


def _media_url(tweet: Mapping[str, Any], link: str, tweet_id: str, key: str) -> dict[str, Any]:
    start = len(tweet["text"]) - len(link)
    return {
        "start": start,
        "end": start + len(link),
        "url": link,
        "expanded_url": f"https://x.com/i/web/status/{tweet_id}/photo/1",
        "display_url": f"pic.x.com/{tweet_id[-10:]}",
        "media_key": key,
    }


def _query_matcher(query: str) -> Callable[[str], bool]:
    """A post matcher for a small part of X's query language: terms, "phrases", OR, -term."""
    words = re.findall(r'-?"[^"]*"|\S+', query)
    alternatives: list[list[str]] = [[]]
    excluded: list[str] = []
    for word in words:
        if word == "OR":
            alternatives.append([])
        elif word.startswith("-"):
            excluded.append(word[1:].strip('"').lower())
        elif ":" not in word or word.startswith('"'):  # operators (lang:, is:) are ignored
            alternatives[-1].append(word.strip('"').lower())

    def matches(text: str) -> bool:
        lowered = text.lower()
        if any(term and term in lowered for term in excluded if ":" not in term):
            return False
        if "is:retweet" in excluded and lowered.startswith("rt @"):
            return False
        return any(group and all(term in lowered for term in group) for group in alternatives)

    return matches


def _time_bounded(tweets: list[dict[str, Any]], query: Mapping[str, str]) -> list[dict[str, Any]]:
    since, until = query.get("since_id"), query.get("until_id")
    start = query.get("start_time")
    start_at = datetime.fromisoformat(start.replace("Z", "+00:00")) if start else None
    return [
        tweet
        for tweet in tweets
        if (since is None or int(tweet["id"]) > int(since))
        and (until is None or int(tweet["id"]) < int(until))
        and (start_at is None or _id_time(tweet["id"]) >= start_at)
    ]


def _paginate(
    items: list[dict[str, Any]], token: str | None, request: web.Request, minimum: int
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``items`` (newest first) below the token's id, and the next token."""
    size = _max_results(request, minimum)
    if token is not None:
        if not re.fullmatch(r"b[0-9]+", token):
            raise _ApiError(400, "Invalid Request", "The `pagination_token` is invalid")
        items = [item for item in items if int(item["id"]) < int(token[1:])]
    page = items[:size]
    more = len(items) > size
    return page, (f"b{page[-1]['id']}" if more else None)


def _max_results(request: web.Request, minimum: int) -> int:
    raw = request.query.get("max_results", "10")
    if not raw.isdigit() or not minimum <= int(raw) <= 100:
        raise _ApiError(
            400,
            "Invalid Request",
            f"The `max_results` query parameter value [{raw}] is not between {minimum} and 100",
        )
    return int(raw)


def _id_time(snowflake_id: str) -> datetime:
    return datetime.fromtimestamp(((int(snowflake_id) >> 22) + _SNOWFLAKE_EPOCH_MS) / 1000, UTC)


def _auth_kind(header: str) -> str:
    if header.startswith("Bearer "):
        return "bearer"
    return "oauth1" if header.startswith("OAuth ") else "none"


async def _json_body(request: web.Request) -> object:
    if not request.can_read_body:
        return None
    try:
        return await request.json()
    except ValueError:
        return None


def _json(document: object, *, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(document).encode(),
        content_type="application/json",
        charset="utf-8",
    )


def _canned(canned: Canned) -> web.Response:
    body = canned.raw if canned.raw is not None else json.dumps(canned.body).encode()
    headers = {k: v for k, v in canned.headers.items() if k.lower() != "content-type"}
    return web.Response(
        status=canned.status,
        body=body,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


def _with_limits(response: web.Response, window: _Window) -> web.Response:
    response.headers["x-rate-limit-limit"] = str(window.limit)
    response.headers["x-rate-limit-remaining"] = str(max(window.remaining, 0))
    response.headers["x-rate-limit-reset"] = str(window.reset_at)
    return response


def _problem(status: int, title: str, detail: str) -> web.Response:
    kind = "about:blank" if status in (401, 429) else f"{_PROBLEM}invalid-request"
    return _json({"title": title, "detail": detail, "type": kind, "status": status}, status=status)


def _not_found(resource: str, value: str, parameter: str) -> dict[str, Any]:
    what = "tweet" if resource == "tweet" else "user"
    return {
        "value": value,
        "detail": f"Could not find {what} with {parameter}: [{value}].",
        "title": "Not Found Error",
        "resource_type": resource,
        "parameter": parameter,
        "resource_id": value,
        "type": f"{_PROBLEM}resource-not-found",
    }


def _not_authorised(tweet_id: str) -> dict[str, Any]:
    return {
        "value": tweet_id,
        "detail": f"Sorry, you are not authorized to see the Tweet with id: [{tweet_id}].",
        "title": "Authorization Error",
        "resource_type": "tweet",
        "parameter": "referenced_tweets.id",
        "resource_id": tweet_id,
        "type": f"{_PROBLEM}not-authorized-for-resource",
    }
