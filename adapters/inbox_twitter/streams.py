"""The streams of one X account and how each is read from its cursor position.

Every stream the API serves newest first. Mentions and searches take ``since_id`` (only posts
newer than it come back); ``GET /2/dm_events`` takes no ``since_id``, so its pages are read
until an event at or below it appears. A stream is read as a **walk**: from the newest page
down to ``since_id``, following ``meta.next_token``. A walk that does not finish within one
fetch (the batch is full, or ``max_pages_per_fetch`` pages were read) keeps its pagination
token, the query it belongs to and the newest id it saw in the cursor, and the next fetch goes
on from there; when it reaches the bottom, ``since_id`` becomes that newest id. So nothing
between two polls is skipped, whatever arrives meanwhile, and each batch stays within its
limit (the first page of a stream is read whole, so a ``batch_size`` below the API's smallest
page, 5 posts for mentions and 10 for searches, may be exceeded up to it); the price is that a
long backlog is stored newest chunk first.

The cursor is one JSON object: ``{"streams": {"mentions": {"since_id": "…"}, …}}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from .api import Page, XApi
from .normalise import Includes, id_time, item_id
from .settings import TwitterSourceSettings

#: Recent search reaches seven days back; a first walk starts a minute inside that.
_RECENT_SEARCH_SPAN: Final = timedelta(days=7) - timedelta(minutes=1)
_MAX_PAGE: Final = 100

StreamKind = Literal["mentions", "direct_messages", "search"]


@dataclass(frozen=True, slots=True)
class Stream:
    """One thing read from the account: its mentions, its DMs, or one saved search."""

    name: str
    kind: StreamKind
    endpoint: str
    min_page: int
    query: str = ""


def account_streams(settings: TwitterSourceSettings) -> tuple[Stream, ...]:
    """The streams ``settings`` enable, in the order each fetch reads them."""
    streams: list[Stream] = []
    if settings.mentions:
        streams.append(Stream("mentions", "mentions", "GET /2/users/:id/mentions", 5))
    if settings.direct_messages:
        streams.append(Stream("direct_messages", "direct_messages", "GET /2/dm_events", 1))
    endpoint = f"GET /2/tweets/search/{settings.search_endpoint}"
    streams.extend(
        Stream(f"search:{search.name}", "search", endpoint, 10, search.query)
        for search in settings.searches
    )
    return tuple(streams)


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """Where a stream's reading stands.

    Attributes:
        since_id: everything up to this id was read.
        newest_id: the newest id seen by the walk in progress.
        token: the pagination token the walk in progress goes on from.
        start_time: the time bound of a first walk (no ``since_id`` yet), kept so the
            token stays valid for the same query.
    """

    since_id: str | None = None
    newest_id: str | None = None
    token: str | None = None
    start_time: str | None = None

    @classmethod
    def from_json(cls, value: object) -> StreamPosition:
        """Read a position from the cursor; a missing or unreadable one starts afresh."""
        if not isinstance(value, Mapping):
            return cls()
        return cls(**{key: _str(value.get(key)) for key in cls.__slots__})

    def to_json(self) -> dict[str, str]:
        """The position as the cursor keeps it (absent fields left out)."""
        return {key: getattr(self, key) for key in self.__slots__ if getattr(self, key)}

    @property
    def walking(self) -> bool:
        """True when a walk is in progress (a token to go on from)."""
        return self.token is not None


@dataclass(slots=True)
class Walk:
    """What reading one stream in one fetch gave: items newest first, and the new position."""

    stream: Stream
    position: StreamPosition
    items: list[tuple[Mapping[str, Any], Includes]] = field(default_factory=list)
    complete: bool = False


async def read_stream(
    api: XApi,
    stream: Stream,
    position: StreamPosition,
    *,
    budget: int,
    settings: TwitterSourceSettings,
    user_id: str,
    now: datetime,
) -> Walk:
    """Read ``stream`` from ``position``: at most ``budget`` items, newest first.

    Raises:
        RateLimitedError, RefusedError, UnavailableError, BrokenResponseError: as :meth:`XApi.call`.
    """
    start_time = position.start_time
    if position.since_id is None and start_time is None:
        start_time = _first_walk_start(stream, settings, now)
    walk = Walk(stream, position)
    token, newest = position.token, position.newest_id
    for _ in range(settings.max_pages_per_fetch):
        room = budget - len(walk.items)
        if walk.items and room < stream.min_page:
            break
        size = min(max(room, stream.min_page), _MAX_PAGE)
        page = await _page(api, stream, position.since_id, start_time, token, size, user_id)
        includes = Includes.of(page.includes, page.errors)
        fresh, reached_end = _fresh(page, stream, position.since_id, start_time)
        walk.items.extend((item, includes) for item in fresh)
        newest = _newest(newest, (item_id(item) for item in fresh))
        token = page.next_token
        if reached_end or token is None:
            walk.complete = True
            break
    if walk.complete:
        walk.position = StreamPosition(since_id=newest or position.since_id)
    else:
        walk.position = StreamPosition(position.since_id, newest, token, start_time)
    return walk


def skip_to(now: datetime) -> str:
    """An id at ``now``: a stream positioned there reads only what comes later."""
    return str(int((now - id_time("0")).total_seconds() * 1000) << 22)


def _first_walk_start(stream: Stream, settings: TwitterSourceSettings, now: datetime) -> str:
    back = timedelta(days=settings.backfill_days)
    if stream.kind == "search" and settings.search_endpoint == "recent":
        back = min(back, _RECENT_SEARCH_SPAN)
    return (now - back).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _page(
    api: XApi,
    stream: Stream,
    since_id: str | None,
    start_time: str | None,
    token: str | None,
    size: int,
    user_id: str,
) -> Page:
    bounds: dict[str, Any] = {"max_results": size}
    if stream.kind == "direct_messages":
        return await api.dm_events(**bounds, pagination_token=token)
    bounds |= {"since_id": since_id, "start_time": None if since_id else start_time}
    if stream.kind == "mentions":
        return await api.mentions(user_id, **bounds, pagination_token=token)
    archive = stream.endpoint.endswith("/all")
    return await api.search(stream.query, archive=archive, **bounds, next_token=token)


def _fresh(
    page: Page, stream: Stream, since_id: str | None, start_time: str | None
) -> tuple[list[Mapping[str, Any]], bool]:
    """The page's items past ``since_id``, and whether the walk reached its bottom."""
    if stream.kind != "direct_messages":
        return list(page.data), False  # the API applied since_id and start_time itself
    floor = int(since_id) if since_id else None
    oldest = datetime.fromisoformat(start_time.replace("Z", "+00:00")) if start_time else None
    fresh: list[Mapping[str, Any]] = []
    for item in page.data:
        event_id = item_id(item)
        if event_id is not None and floor is not None and int(event_id) <= floor:
            return fresh, True
        if event_id is not None and oldest is not None and id_time(event_id) < oldest:
            return fresh, True
        fresh.append(item)
    return fresh, False


def _newest(current: str | None, ids: Iterable[str | None]) -> str | None:
    valid = [int(value) for value in ids if value is not None]
    if current is not None:
        valid.append(int(current))
    return str(max(valid)) if valid else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
