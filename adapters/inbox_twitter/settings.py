"""The settings of one ``kind = "twitter"`` source: one X account, its streams and credentials.

Secrets are named, never written: every credential is read through ``<name>_env`` (an
environment variable) or ``<name>_file`` (a file), when the source opens, so a token an outside
refresher rewrites is picked up at the next connection.

Two kinds of credentials exist on X:

- the app's OAuth 2.0 **bearer token** (app-only): reads mentions and searches, with the app's
  own rate-limit windows;
- **user context**, needed to read direct messages, post replies and send DMs: OAuth 1.0a
  (consumer key and secret, access token and secret) or an OAuth 2.0 user access token
  (scopes ``tweet.read tweet.write users.read dm.read dm.write``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Final, Literal, Self

from pydantic import Field, field_validator, model_validator

from inbox_daemon.config import FrozenModel, SourceSettings, read_secret

#: What tweepy calls the API's host; ``api_base_url`` may send its requests elsewhere.
DEFAULT_API_BASE_URL: Final = "https://api.twitter.com"

_HANDLE: Final = re.compile(r"^@?[A-Za-z0-9_]{1,50}$")
_BASE_URL: Final = re.compile(r"^https?://[^/?#\s]+$")


class SearchSettings(FrozenModel):
    """One saved search: keywords, cashtags or the brand name, in X's query language.

    ``query`` is sent as written (``"Example Exchange" OR $EXC -is:retweet lang:en``); its
    length limit depends on the access tier (512 characters on Basic, 4,096 on Pro).
    """

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
    query: Annotated[str, Field(min_length=1, max_length=4096)]


class OAuth1Credentials(FrozenModel):
    """OAuth 1.0a user context, read now from their variables or files."""

    consumer_key: str
    consumer_secret: str
    access_token: str
    access_token_secret: str


class TwitterSourceSettings(SourceSettings):
    """One X account read through the X API v2.

    Streams: ``mentions`` (``GET /2/users/:id/mentions``), ``direct_messages``
    (``GET /2/dm_events``, user context only) and each of ``searches``
    (``GET /2/tweets/search/recent``, or ``/all`` with ``search_endpoint = "all"``).
    """

    kind: Literal["twitter"]
    #: The account's @handle: mentions of it are what the reply policy answers.
    handle: str
    #: The account's numeric user id; looked up by handle when the source opens if absent.
    user_id: Annotated[str, Field(pattern=r"^[0-9]{1,20}$")] | None = None
    #: Where tweepy's requests to api.twitter.com go (a loopback server in tests and the demo).
    api_base_url: str = DEFAULT_API_BASE_URL
    bearer_token_env: str | None = None
    bearer_token_file: Path | None = None
    user_auth: Literal["none", "oauth1", "oauth2"] = "none"
    consumer_key_env: str | None = None
    consumer_key_file: Path | None = None
    consumer_secret_env: str | None = None
    consumer_secret_file: Path | None = None
    access_token_env: str | None = None
    access_token_file: Path | None = None
    access_token_secret_env: str | None = None
    access_token_secret_file: Path | None = None
    user_token_env: str | None = None
    user_token_file: Path | None = None
    mentions: bool = True
    direct_messages: bool = False
    searches: tuple[SearchSettings, ...] = ()
    search_endpoint: Literal["recent", "all"] = "recent"
    #: Pages (of up to 100 posts) one stream may read in one fetch.
    max_pages_per_fetch: Annotated[int, Field(ge=1, le=100)] = 5
    #: Post public replies to mentions and DMs to direct messages.
    send_replies: bool = True
    #: Attempts to read a page the API keeps answering with a broken body before it is
    #: dead-lettered and the stream moves past it.
    max_attempts: Annotated[int, Field(ge=1)] = 3
    #: A read that fails for now (5xx, timeout) is repeated twice, after this and twice this.
    retry_base_s: Annotated[float, Field(gt=0)] = 1.0

    @field_validator("handle")
    @classmethod
    def _handle(cls, handle: str) -> str:
        if not _HANDLE.match(handle):
            raise ValueError("expected an X @handle: letters, digits and underscores")
        return "@" + handle.removeprefix("@")

    @field_validator("api_base_url")
    @classmethod
    def _base_url(cls, url: str) -> str:
        if not _BASE_URL.match(url.rstrip("/")):
            raise ValueError("expected scheme://host[:port], e.g. https://api.twitter.com")
        return url.rstrip("/")

    @field_validator("searches")
    @classmethod
    def _unique_searches(cls, searches: tuple[SearchSettings, ...]) -> tuple[SearchSettings, ...]:
        names = [search.name for search in searches]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"search names must be unique; repeated: {', '.join(repeated)}")
        return searches

    @model_validator(mode="after")
    def _credentials_cover_the_streams(self) -> Self:
        has_bearer = self.bearer_token_env is not None or self.bearer_token_file is not None
        if has_bearer:
            self.bearer_token()
        if self.user_auth == "oauth1":
            self.oauth1()
        elif self.user_auth == "oauth2":
            self.user_token()
        elif not has_bearer:
            raise ValueError("give bearer_token_env / _file, or user_auth = 'oauth1' or 'oauth2'")
        if self.user_auth == "none" and self.direct_messages:
            raise ValueError("direct_messages needs user context: user_auth = 'oauth1' or 'oauth2'")
        if self.user_auth == "none" and self.send_replies:
            raise ValueError(
                "send_replies needs user context (user_auth = 'oauth1' or 'oauth2'); "
                "or set send_replies = false"
            )
        if self.search_endpoint == "all" and self.searches and not has_bearer:
            raise ValueError("full-archive search takes the app's bearer token: bearer_token_env")
        if not (self.mentions or self.direct_messages or self.searches):
            raise ValueError("nothing to read: enable mentions, direct_messages or searches")
        return self

    def bearer_token(self) -> str | None:
        """The app-only OAuth 2.0 bearer token, read now; ``None`` when none is configured."""
        if self.bearer_token_env is None and self.bearer_token_file is None:
            return None
        return read_secret(self.bearer_token_env, self.bearer_token_file, key="bearer_token")

    def oauth1(self) -> OAuth1Credentials:
        """The four OAuth 1.0a user-context secrets, read now."""
        return OAuth1Credentials(
            consumer_key=read_secret(
                self.consumer_key_env, self.consumer_key_file, key="consumer_key"
            ),
            consumer_secret=read_secret(
                self.consumer_secret_env, self.consumer_secret_file, key="consumer_secret"
            ),
            access_token=read_secret(
                self.access_token_env, self.access_token_file, key="access_token"
            ),
            access_token_secret=read_secret(
                self.access_token_secret_env,
                self.access_token_secret_file,
                key="access_token_secret",
            ),
        )

    def user_token(self) -> str:
        """The OAuth 2.0 user access token, read now."""
        return read_secret(self.user_token_env, self.user_token_file, key="user_token")
