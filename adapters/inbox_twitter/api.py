"""The X API v2 as this adapter uses it: tweepy's asyncio client over one aiohttp session.

tweepy has no setting for the API's address: ``AsyncBaseClient.request`` builds every URL as
``"https://api.twitter.com" + route``. What it does offer is ``AsyncClient.session``, the
aiohttp session its requests go through. The adapter gives both of its clients one session of
its own (which it wants anyway, for connection reuse and timeouts) with an aiohttp client
middleware that

- sends requests for api.twitter.com to ``api_base_url`` when that is not the default (a
  loopback server in tests and the demo, or another address for the same API), and
- records the rate-limit headers of every response, errors included, in a
  :class:`~.ratelimit.RateLimitBook`: tweepy's own objects drop the headers of a success.

tweepy is asked for ``aiohttp.ClientResponse`` objects, so this module parses the JSON itself
and tells a broken body apart from a refusal. ``wait_on_rate_limit`` stays off: a 429 becomes
:class:`RateLimitedError` (a ``RetryableError`` carrying the reset) instead of a sleep that would
hold the event loop's job for up to fifteen minutes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import tweepy
from aiohttp import hdrs
from aiohttp.client_middlewares import ClientHandlerType, ClientMiddlewareType
from tweepy.asynchronous import AsyncClient
from yarl import URL

from inbox_daemon.errors import InboxError, PermanentError, RetryableError

from .ratelimit import RateLimitBook, endpoint_key
from .settings import DEFAULT_API_BASE_URL, TwitterSourceSettings

logger = logging.getLogger(__name__)

_TWEEPY_HOST: Final = URL(DEFAULT_API_BASE_URL).host

#: Fields asked of every post: what normalisation, threading and the reply policy read.
TWEET_FIELDS: Final = (
    "attachments",
    "author_id",
    "conversation_id",
    "created_at",
    "entities",
    "in_reply_to_user_id",
    "lang",
    "note_tweet",
    "referenced_tweets",
    "reply_settings",
    "withheld",
)
#: Authors, the posts a post answers or quotes (and their authors), and media descriptions.
TWEET_EXPANSIONS: Final = (
    "author_id",
    "referenced_tweets.id",
    "referenced_tweets.id.author_id",
    "in_reply_to_user_id",
    "attachments.media_keys",
)
USER_FIELDS: Final = ("id", "name", "username", "protected", "verified", "withheld")
MEDIA_FIELDS: Final = ("media_key", "type", "url", "preview_image_url", "alt_text", "duration_ms")
#: The DM event fields and expansions the API v2 description (openapi.json) lists; the sender
#: comes with the ``sender_id`` expansion.
DM_EVENT_FIELDS: Final = (
    "id",
    "text",
    "event_type",
    "created_at",
    "dm_conversation_id",
    "attachments",
    "entities",
)
DM_EXPANSIONS: Final = ("sender_id", "attachments.media_keys")


class RateLimitedError(RetryableError):
    """An endpoint's window is exhausted (or the API answered 429) until ``until``."""

    def __init__(self, endpoint: str, until: datetime, *, now: datetime) -> None:
        super().__init__(
            f"X rate limit of {endpoint} exhausted until {until.isoformat(timespec='seconds')}",
            defer_s=max((until - now).total_seconds(), 0.0),
        )
        self.endpoint = endpoint
        self.until = until


class RefusedError(PermanentError):
    """The API refused the request (400, 401, 403, 404): retrying the same call cannot help.

    Attributes:
        status: the HTTP status.
        detail: the API's own explanation, when it gave one.
    """

    def __init__(self, endpoint: str, status: int, detail: str) -> None:
        what = _REFUSALS.get(status, "refused the request")
        super().__init__(f"X {what} ({status}) for {endpoint}: {detail or 'no detail given'}")
        self.status = status
        self.detail = detail


_REFUSALS: Final = {
    400: "rejected the request as invalid",
    401: "refused the credentials",
    403: "forbids this call with these credentials or this access tier",
    404: "does not know the resource",
}


class UnavailableError(RetryableError):
    """The API or the network failed for now (5xx, a timeout, a dropped connection).

    Attributes:
        sent: whether the request may have reached the API (a timeout or a reset after the
            connection was made); a refused connection means it did not.
    """

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class BrokenResponseError(InboxError):
    """A successful status with a body that is not the JSON object the API documents."""

    def __init__(self, endpoint: str, reason: str, size_bytes: int) -> None:
        super().__init__(f"unreadable response from {endpoint}: {reason}")
        self.size_bytes = size_bytes


@dataclass(frozen=True, slots=True)
class Page:
    """One response page: ``data``, ``includes``, partial ``errors`` and ``meta``."""

    endpoint: str
    data: tuple[Any, ...]
    includes: Mapping[str, Any] = field(default_factory=dict)
    errors: tuple[Mapping[str, Any], ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def next_token(self) -> str | None:
        """The token of the next (older) page, if there is one."""
        token = self.meta.get("next_token")
        return token if isinstance(token, str) and token else None


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def api_middleware(base_url: str, book: RateLimitBook) -> ClientMiddlewareType:
    """The aiohttp client middleware that re-targets tweepy's requests and reads rate limits."""
    target = URL(base_url)
    rebase = target.host != _TWEEPY_HOST or target.scheme != "https" or target.explicit_port

    async def middleware(
        request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        if rebase and request.url.host == _TWEEPY_HOST:
            request.url = request.url.with_scheme(target.scheme).with_host(target.raw_host or "")
            request.url = request.url.with_port(target.explicit_port)
            request.headers[hdrs.HOST] = target.authority
        response = await handler(request)
        key = endpoint_key(request.method, request.url.path)
        book.record(key, response.status, response.headers, utcnow())
        return response

    return middleware


class XApi:
    """The calls the adapter makes, each checked against the rate-limit book first.

    Args:
        settings: the source's settings (credentials are read in :meth:`open`).
        book: where rate limits are kept; it outlives reconnections.
    """

    def __init__(self, settings: TwitterSourceSettings, book: RateLimitBook) -> None:
        self._settings = settings
        self._book = book
        self._session: aiohttp.ClientSession | None = None
        self._reader: AsyncClient | None = None
        self._reader_oauth1 = False
        self._user: AsyncClient | None = None
        self._user_oauth1 = False

    @property
    def is_open(self) -> bool:
        """True between :meth:`open` and :meth:`close`."""
        return self._session is not None

    def open(self) -> None:
        """Read the credentials now and build the clients (no request is made).

        Raises:
            PermanentError: a credential's variable or file is missing or empty.
        """
        settings = self._settings
        try:
            bearer = settings.bearer_token()
            user = self._user_client()
        except ValueError as exc:
            raise PermanentError(f"X credentials: {exc}") from exc
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.timeout_s),
            middlewares=(api_middleware(settings.api_base_url, self._book),),
        )
        if user is not None:
            user.session = self._session
        self._user = user
        self._user_oauth1 = settings.user_auth == "oauth1"
        if bearer is not None:
            self._reader = AsyncClient(bearer_token=bearer, return_type=aiohttp.ClientResponse)
            self._reader.session = self._session
            self._reader_oauth1 = False
        else:  # reading with the user's own windows
            self._reader, self._reader_oauth1 = self._user, self._user_oauth1

    def _user_client(self) -> AsyncClient | None:
        settings = self._settings
        if settings.user_auth == "oauth1":
            keys = settings.oauth1()
            return AsyncClient(
                consumer_key=keys.consumer_key,
                consumer_secret=keys.consumer_secret,
                access_token=keys.access_token,
                access_token_secret=keys.access_token_secret,
                return_type=aiohttp.ClientResponse,
            )
        if settings.user_auth == "oauth2":
            # tweepy sends an OAuth 2.0 user access token as a bearer token (user_auth=False).
            token = settings.user_token()
            return AsyncClient(bearer_token=token, return_type=aiohttp.ClientResponse)
        return None

    async def close(self) -> None:
        """Close the session; safe when not open."""
        session, self._session = self._session, None
        self._reader = self._user = None
        if session is not None:
            await session.close()

    async def user_by_handle(self, handle: str) -> Mapping[str, Any]:
        """The user object of ``@handle`` (``id``, ``username``, ``name``)."""
        client, oauth1 = self._reading()
        page = await self.call(
            "GET /2/users/by/username/:username",
            lambda: client.get_user(
                username=handle.removeprefix("@"), user_fields=list(USER_FIELDS), user_auth=oauth1
            ),
        )
        if len(page.data) != 1 or not isinstance(page.data[0], Mapping):
            raise RefusedError(page.endpoint, 404, f"no user {handle}")
        return page.data[0]

    async def mentions(self, user_id: str, **params: str | int | None) -> Page:
        """One page of ``GET /2/users/:id/mentions`` (newest first)."""
        client, oauth1 = self._reading()
        return await self.call(
            "GET /2/users/:id/mentions",
            lambda: client.get_users_mentions(user_id, **_tweet_params(params), user_auth=oauth1),
        )

    async def search(self, query: str, *, archive: bool, **params: str | int | None) -> Page:
        """One page of recent (or full-archive) search, newest first."""
        client, oauth1 = self._reading()
        if archive:  # full-archive search takes app-only authentication
            return await self.call(
                "GET /2/tweets/search/all",
                lambda: client.search_all_tweets(query, **_tweet_params(params)),
            )
        return await self.call(
            "GET /2/tweets/search/recent",
            lambda: client.search_recent_tweets(
                query, sort_order="recency", **_tweet_params(params), user_auth=oauth1
            ),
        )

    async def dm_events(self, **params: str | int | None) -> Page:
        """One page of ``GET /2/dm_events`` (the account's DM events, newest first)."""
        client = self._user_client_open()
        return await self.call(
            "GET /2/dm_events",
            lambda: client.get_direct_message_events(
                event_types="MessageCreate",
                dm_event_fields=list(DM_EVENT_FIELDS),
                expansions=list(DM_EXPANSIONS),
                user_fields=list(USER_FIELDS),
                media_fields=list(MEDIA_FIELDS),
                **params,
                user_auth=self._user_oauth1,
            ),
        )

    async def post_reply(self, text: str, in_reply_to_tweet_id: str) -> str:
        """Post ``text`` as a public reply; the new post's id."""
        client = self._user_client_open()
        page = await self.call(
            "POST /2/tweets",
            lambda: client.create_tweet(
                text=text, in_reply_to_tweet_id=in_reply_to_tweet_id, user_auth=self._user_oauth1
            ),
            retries=0,
        )
        return _created_id(page, "id")

    async def send_dm(self, participant_id: str, text: str) -> str:
        """Send ``text`` as a one-to-one direct message; the new DM event's id."""
        client = self._user_client_open()
        page = await self.call(
            "POST /2/dm_conversations/with/:id/messages",
            lambda: client.create_direct_message(
                participant_id=participant_id, text=text, user_auth=self._user_oauth1
            ),
            retries=0,
        )
        return _created_id(page, "dm_event_id")

    def blocked_until(self, endpoint: str) -> datetime | None:
        """When ``endpoint`` may be called again (``None``: now)."""
        return self._book.blocked_until(endpoint, utcnow())

    async def call(
        self,
        endpoint: str,
        request: Callable[[], Awaitable[aiohttp.ClientResponse]],
        *,
        retries: int = 2,
    ) -> Page:
        """Make one request unless its window is exhausted; parse the page it returns.

        A GET that fails for now (5xx, timeout, dropped connection) is repeated up to
        ``retries`` times with a doubling pause; a POST is never repeated here, since the
        API may have acted on it.

        Raises:
            RateLimitedError: the window is exhausted, or the API answered 429.
            RefusedError: 400, 401, 403 or 404.
            UnavailableError: 5xx or a network failure, after the retries.
            BrokenResponseError: a success whose body is not a JSON object.
        """
        for attempt in range(retries + 1):
            until = self._book.blocked_until(endpoint, utcnow())
            if until is not None:
                raise RateLimitedError(endpoint, until, now=utcnow())
            try:
                response = await _mapped(endpoint, request)
                return await _page(endpoint, response)
            except UnavailableError as exc:
                if attempt >= retries:
                    raise
                delay_s = self._settings.retry_base_s * 2**attempt
                logger.info("X API unavailable (%s); retrying in %.1f s", exc, delay_s)
                await asyncio.sleep(delay_s)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _reading(self) -> tuple[AsyncClient, bool]:
        if self._reader is None:
            raise RetryableError("the X source is not open")
        return self._reader, self._reader_oauth1

    def _user_client_open(self) -> AsyncClient:
        if self._user is None:
            if self._session is None:
                raise RetryableError("the X source is not open")
            raise PermanentError("this call needs user context: set user_auth")
        return self._user


def _tweet_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "tweet_fields": list(TWEET_FIELDS),
        "expansions": list(TWEET_EXPANSIONS),
        "user_fields": list(USER_FIELDS),
        "media_fields": list(MEDIA_FIELDS),
        **{name: value for name, value in params.items() if value is not None},
    }


async def _mapped(
    endpoint: str, request: Callable[[], Awaitable[aiohttp.ClientResponse]]
) -> aiohttp.ClientResponse:
    """Run ``request``, turning tweepy's and aiohttp's failures into this module's errors."""
    try:
        return await request()
    except tweepy.TooManyRequests as exc:
        reset = exc.reset_time
        until = datetime.fromtimestamp(reset, UTC) if reset else utcnow()
        raise RateLimitedError(endpoint, max(until, utcnow()), now=utcnow()) from exc
    except tweepy.TwitterServerError as exc:
        status = int(exc.response.status)
        # 503 is X's "over capacity": the request was not processed.
        raise UnavailableError(f"X answered {status} for {endpoint}", sent=status != 503) from exc
    except tweepy.HTTPException as exc:
        status = int(exc.response.status)
        raise RefusedError(endpoint, status, _detail(exc)) from exc
    except aiohttp.ContentTypeError as exc:  # an error status whose body is not JSON
        raise _status_error(endpoint, exc.status, exc.message) from exc
    except aiohttp.ClientConnectorError as exc:
        reason = f"cannot connect to the X API for {endpoint}: {exc}"
        raise UnavailableError(reason, sent=False) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise UnavailableError(f"X API call {endpoint} failed: {reason}", sent=True) from exc
    except (json.JSONDecodeError, AttributeError) as exc:
        # An error status whose body is broken, or empty (tweepy then fails with an
        # AttributeError building its exception); the middleware has recorded the
        # response's rate-limit headers all the same.
        reason = f"X answered {endpoint} with an unreadable error body"
        raise UnavailableError(reason, sent=True) from exc


def _status_error(endpoint: str, status: int, message: str) -> InboxError:
    if status == 429:
        return RateLimitedError(endpoint, utcnow(), now=utcnow())
    if status >= 500:
        return UnavailableError(f"X answered {status} for {endpoint}", sent=status != 503)
    if status in _REFUSALS:
        return RefusedError(endpoint, status, message)
    return BrokenResponseError(endpoint, f"status {status}: {message}", 0)


def _detail(exc: tweepy.HTTPException) -> str:
    parts = [str(m) for m in exc.api_messages] or [
        str(error.get("detail") or error.get("title"))
        for error in exc.api_errors
        if isinstance(error, Mapping)
    ]
    return "; ".join(part for part in parts if part)[:300]


async def _page(endpoint: str, response: aiohttp.ClientResponse) -> Page:
    # tweepy has read the body and released the response: text() decodes what it read.
    body = await response.text(errors="replace")
    try:
        document = json.loads(body)
    except json.JSONDecodeError as exc:
        raise BrokenResponseError(endpoint, f"not JSON ({exc})", len(body.encode())) from exc
    if not isinstance(document, dict):
        reason = f"a JSON {type(document).__name__}, not an object"
        raise BrokenResponseError(endpoint, reason, len(body.encode()))
    data = document.get("data", [])
    data = [data] if isinstance(data, dict) else data
    if not isinstance(data, list):
        reason = "'data' is neither a list nor an object"
        raise BrokenResponseError(endpoint, reason, len(body.encode()))
    includes, meta = document.get("includes", {}), document.get("meta", {})
    errors = document.get("errors", [])
    return Page(
        endpoint=endpoint,
        data=tuple(data),
        includes=includes if isinstance(includes, dict) else {},
        errors=tuple(e for e in errors if isinstance(e, dict)) if isinstance(errors, list) else (),
        meta=meta if isinstance(meta, dict) else {},
    )


def _created_id(page: Page, key: str) -> str:
    created = page.data[0] if page.data else None
    value = created.get(key) if isinstance(created, Mapping) else None
    if not isinstance(value, str) or not value:
        raise BrokenResponseError(page.endpoint, f"no {key!r} in the created object", 0)
    return value
