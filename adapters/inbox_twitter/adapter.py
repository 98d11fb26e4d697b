"""The X (Twitter) source: mentions, direct messages and saved searches in; replies and DMs out.

Reading (X API v2 through ``tweepy.asynchronous.AsyncClient``; see :mod:`.api` for how its
requests reach ``api_base_url`` and how rate limits are read):

- Streams are read in order: mentions, DMs, then each search, each from its own position in
  the cursor (:mod:`.streams`). A post found by two streams is one message.
- Rate limits come from the headers of every response. A stream whose endpoint has no call
  left is not called before the window resets; the other streams go on. When no stream can be
  read, the fetch raises ``RetryableError(defer_s=until the earliest reset)``, so the source
  backs off and ``status`` shows why. A 429 ends the fetch the same way, after what was read
  before it is stored.
- 5xx, timeouts and dropped connections are retried twice within the call, then raised as
  ``RetryableError`` (the scheduler's backoff takes over). 400/401/403/404 are a
  ``PermanentError`` naming the endpoint and the API's explanation: that source stops, the
  others go on.
- A post or event that cannot be read (no id, no text and no media) is dead-lettered with the
  reason; a page whose body is not JSON is retried at the next polls and, after
  ``max_attempts``, dead-lettered with the range of posts it hid, and the stream moves on.
  The account's own posts and DMs (our replies) are never read as feedback.

Replying: a mention gets a public reply (the short public template: no detail of the
sender's message, a pointer to the ticket link); a DM gets a DM with the full acknowledgment.
The X API has no idempotency key, so "idempotent" here means **at most once**: the outbox
commits a row as ``sending`` before the call (after a crash it becomes ``unknown`` and is
never resent), and :meth:`TwitterAdapter.send` retries only failures after which X certainly
did not act (429, 503, a refused connection, refused credentials). A timeout or a dropped
connection after the request was sent is reported ``failed`` with "outcome unknown", for a
person to check, rather than risk a second public post.

Tiers and limits (as X published them in 2024-2025; X changes them, the adapter follows the
headers, not these numbers):

- **Free**: posting only (about 17 posts a day per user, 500 a month); no mentions, search or
  DM reading: not enough for this adapter.
- **Basic**: mentions 10 requests / 15 min per user (15 per app), recent search (7 days,
  queries up to 512 characters) 60 / 15 min, DM events 15 / 15 min, 100 posts per user a
  day, and a monthly cap of posts read (10,000-15,000). Poll every 90 s or more.
- **Pro**: mentions 300 / 15 min per user (450 per app), recent search 300 / 15 min (450 per
  app), full-archive search (``search_endpoint = "all"``, queries up to 1,024 characters),
  1,000,000 posts read a month.
- The mentions timeline reaches the 800 most recent mentions; DM events the last 30 days.
- Replies through the API are accepted only to posts that mention or quote the account
  (X's automation rules); searches therefore get no public reply unless the post mentions
  the account, which the reply policy checks ("not addressed to us").

Not testable without a real account: the real rate-limit numbers and monthly caps, OAuth 1.0a
signatures and OAuth 2.0 scopes as X checks them, X's refusals of replies (reply settings,
blocked accounts, DMs closed to us) beyond the status codes, and the automatic @mention X adds
to a reply.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

from inbox_daemon.errors import MessageError, PermanentError, RetryableError
from inbox_daemon.interfaces import (
    Batch,
    Cursor,
    FailedMessage,
    InboundMessage,
    OutboundReply,
    SendResult,
)

from .api import BrokenResponseError, RateLimitedError, RefusedError, UnavailableError, XApi, utcnow
from .normalise import Includes, dm_message, item_id, tweet_message
from .ratelimit import RateLimitBook
from .settings import TwitterSourceSettings
from .streams import Stream, StreamPosition, Walk, account_streams, read_stream, skip_to

logger = logging.getLogger(__name__)

#: After X refused our credentials for a reply, try again this much later (an operator may
#: fix them meanwhile); the outbox gives up after its max_attempts.
_CREDENTIALS_RETRY_S: Final = 900.0


@dataclass(slots=True)
class _Fetch:
    """What one fetch gathered so far."""

    limit: int
    positions: dict[str, StreamPosition]
    walks: list[Walk] = field(default_factory=list)
    failures: list[FailedMessage] = field(default_factory=list)
    blocked: list[RateLimitedError] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    read: int = 0
    more: bool = False

    @property
    def room(self) -> int:
        return self.limit - self.read - len(self.failures)


class TwitterAdapter:
    """A :class:`~inbox_daemon.interfaces.SourceAdapter` for one X account."""

    def __init__(self, settings: TwitterSourceSettings) -> None:
        self.settings = settings
        self._book = RateLimitBook()  # outlives reconnections: windows are the API's
        self._api = XApi(settings, self._book)
        self._streams = account_streams(settings)
        self._user_id = settings.user_id
        # Streams whose walk finished during this poll: the batches that follow in the same
        # poll (while a fetch says "more") do not spend a request on them again.
        self._done: set[str] = set()
        self._pending: RateLimitedError | None = None
        self._strikes: dict[tuple[str, StreamPosition], int] = {}

    async def open(self) -> None:
        """Read the credentials; look the account's user id up when it is not configured."""
        self._api.open()
        if self._user_id is not None:
            return
        try:
            user = await self._api.user_by_handle(self.settings.handle)
        except BaseException:
            await self.close()
            raise
        found = item_id(user)
        if found is None:
            await self.close()
            raise PermanentError(f"X returned no usable id for {self.settings.handle}")
        self._user_id = found

    async def close(self) -> None:
        """Close the connection; the next fetch reads every stream afresh."""
        self._done.clear()
        self._pending = None
        await self._api.close()

    async def after_commit(self, batch: Batch) -> None:
        """Nothing: reading X changes nothing there."""

    def own_addresses(self) -> frozenset[str]:
        """The account's @handle and, once known, its numeric user id."""
        own = {self.settings.handle.lower()}
        if self._user_id is not None:
            own.add(self._user_id)
        return frozenset(own)

    def can_send(self) -> bool:
        """True when replies are enabled and user-context credentials are configured."""
        return self.settings.send_replies and self.settings.user_auth != "none"

    async def fetch(self, cursor: Cursor | None, limit: int) -> Batch:
        """Up to ``limit`` new posts and DMs over the account's streams."""
        if self._pending is not None:  # a 429 ended the previous batch of this poll
            pending, self._pending = self._pending, None
            self._done.clear()
            raise pending
        if not self._api.is_open or self._user_id is None:
            await self.open()
        state = _Fetch(limit, _positions(cursor))
        read_earlier_in_poll = bool(self._done)
        now = utcnow()
        for stream in self._streams:
            if stream.name in self._done:
                continue
            if state.room <= 0:
                state.more = True
                break
            await self._read(stream, state, now)
            if self._pending is not None:
                break
        if not (state.walks or state.failures or read_earlier_in_poll):
            self._raise_when_unreadable(state)
        if not state.more:
            self._done.clear()
        messages, failures = self._messages(state.walks)
        cursor_out = {"streams": {name: p.to_json() for name, p in state.positions.items()}}
        return Batch(tuple(messages), cursor_out, (*state.failures, *failures), state.more)

    async def _read(self, stream: Stream, state: _Fetch, now: datetime) -> None:
        until = self._api.blocked_until(stream.endpoint)
        if until is not None:
            state.blocked.append(RateLimitedError(stream.endpoint, until, now=now))
            logger.warning(
                "X stream %s skipped: rate limit exhausted until %s",
                stream.name,
                until.isoformat(timespec="seconds"),
                extra={"source": self.settings.name, "stage": "fetch"},
            )
            return
        position = state.positions.get(stream.name, StreamPosition())
        try:
            walk = await read_stream(
                self._api,
                stream,
                position,
                budget=state.room,
                settings=self.settings,
                user_id=self._user_id or "",
                now=now,
            )
        except RateLimitedError as exc:
            if not (state.walks or state.failures):
                raise
            self._pending, state.more = exc, True  # store what was read, then back off
            return
        except BrokenResponseError as exc:
            self._broken(stream, position, exc, state, now)
            return
        self._strikes.pop((stream.name, position), None)
        state.walks.append(walk)
        state.positions[stream.name] = walk.position
        state.read += len(walk.items)
        if walk.complete:
            self._done.add(stream.name)
        else:
            state.more = True

    def _broken(
        self,
        stream: Stream,
        position: StreamPosition,
        error: BrokenResponseError,
        state: _Fetch,
        now: datetime,
    ) -> None:
        key = (stream.name, position)
        strikes = self._strikes[key] = self._strikes.get(key, 0) + 1
        self._done.add(stream.name)  # tried again at the next poll, not in this one
        if strikes < self.settings.max_attempts:
            state.broken.append(f"{stream.name}: {error}")
            logger.warning(
                "X stream %s: %s (attempt %d of %d)",
                stream.name,
                error,
                strikes,
                self.settings.max_attempts,
                extra={"source": self.settings.name, "stage": "fetch"},
            )
            return
        del self._strikes[key]
        moved = StreamPosition(since_id=position.newest_id or skip_to(now))
        state.positions[stream.name] = moved
        hidden = f"ids above {position.since_id or 'the backfill start'} up to {moved.since_id}"
        reason = f"{error}; failed {strikes} times, stream moved past it ({hidden} not read)"
        where = position.token or position.since_id or "first"
        state.failures.append(
            FailedMessage(f"{stream.name}:page:{where}", stream.endpoint, reason, error.size_bytes)
        )
        logger.warning(
            "X page dead-lettered: %s",
            reason,
            extra={"source": self.settings.name, "stage": "fetch"},
        )

    def _raise_when_unreadable(self, state: _Fetch) -> None:
        # Nothing could be read this poll: back off (and show it in status) until the
        # earliest reset, or as for any failure when the API's bodies are unreadable.
        if state.blocked:
            self._done.clear()
            raise min(state.blocked, key=lambda error: error.until)
        if state.broken:
            self._done.clear()
            raise RetryableError("; ".join(state.broken))

    def _messages(self, walks: list[Walk]) -> tuple[list[InboundMessage], list[FailedMessage]]:
        """The walks' items as messages, oldest first per stream; one message per post."""
        messages: dict[str, InboundMessage] = {}
        failures: list[FailedMessage] = []
        for walk in walks:
            for item, includes in reversed(walk.items):
                if self._is_own(item, walk.stream):
                    continue
                try:
                    message = self._message(item, includes, walk.stream)
                except MessageError as exc:
                    failures.append(self._failure(item, walk.stream, str(exc)))
                    continue
                earlier = messages.get(message.external_id)
                messages[message.external_id] = (
                    _also_in(earlier, walk.stream) if earlier is not None else message
                )
        return list(messages.values()), failures

    def _message(self, item: object, includes: Includes, stream: Stream) -> InboundMessage:
        if not isinstance(item, Mapping):
            raise MessageError(f"a {type(item).__name__} where a JSON object was expected")
        if stream.kind == "direct_messages":
            return dm_message(item, includes, own_user_id=self._user_id)
        return tweet_message(item, includes, stream=stream.name)

    def _is_own(self, item: object, stream: Stream) -> bool:
        if not isinstance(item, Mapping) or self._user_id is None:
            return False
        key = "sender_id" if stream.kind == "direct_messages" else "author_id"
        return item.get(key) == self._user_id

    def _failure(self, item: object, stream: Stream, error: str) -> FailedMessage:
        found = item_id(item)
        prefix = "dm" if stream.kind == "direct_messages" else "tweet"
        external_id = f"{prefix}:{found}" if found else f"{stream.name}:{_digest(item)}"
        logger.warning(
            "X item dead-lettered: %s",
            error,
            extra={"source": self.settings.name, "stage": "normalise", "raw_ref": external_id},
        )
        return FailedMessage(external_id, f"{stream.endpoint} {external_id}", error, _size(item))

    async def send(self, reply: OutboundReply) -> SendResult:
        """Post a public reply to a mention, or a DM answering a DM."""
        if not self.can_send():
            return SendResult.failed(f"source {self.settings.name!r} does not send replies")
        kind, _, target = (reply.in_reply_to or "").partition(":")
        if kind == "tweet" and target:
            return await self._deliver(lambda api: api.post_reply(reply.text, target), "tweet")
        if kind == "dm" and reply.recipient.id:
            recipient = reply.recipient.id
            return await self._deliver(lambda api: api.send_dm(recipient, reply.text), "dm")
        return SendResult.failed(f"nothing to answer on X: in_reply_to={reply.in_reply_to!r}")

    async def _deliver(self, post: Callable[[XApi], Awaitable[str]], kind: str) -> SendResult:
        # A session of its own: a poll that fails closes the reading session meanwhile.
        api = XApi(self.settings, self._book)
        try:
            api.open()
            return SendResult.sent(f"{kind}:{await post(api)}")
        except RateLimitedError as exc:
            return SendResult.retry(str(exc), defer_s=exc.defer_s)
        except UnavailableError as exc:
            if exc.sent:
                return SendResult.failed(
                    f"outcome unknown ({exc}); not sent again, to avoid a second post: check "
                    f"the account {self.settings.handle}"
                )
            return SendResult.retry(str(exc))
        except RefusedError as exc:
            if exc.status == 401:
                return SendResult.retry(str(exc), defer_s=_CREDENTIALS_RETRY_S)
            return SendResult.failed(str(exc))
        except BrokenResponseError:
            return SendResult.sent(f"{kind}:unconfirmed")  # a success status: it was created
        except PermanentError as exc:
            return SendResult.failed(str(exc))
        finally:
            await api.close()


def _positions(cursor: Cursor | None) -> dict[str, StreamPosition]:
    streams = (cursor or {}).get("streams")
    if not isinstance(streams, Mapping):
        return {}
    return {str(name): StreamPosition.from_json(value) for name, value in streams.items()}


def _also_in(message: InboundMessage, stream: Stream) -> InboundMessage:
    streams = [*message.meta.get("stream", ()), stream.name]
    return replace(message, meta={**message.meta, "stream": streams})


def _digest(item: object) -> str:
    raw = json.dumps(item, sort_keys=True, default=str).encode()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _size(item: object) -> int:
    return len(json.dumps(item, default=str).encode())
