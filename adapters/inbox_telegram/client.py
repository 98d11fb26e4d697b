"""Building the telethon client, logging it in, and turning Telegram's errors into ours.

The client never sleeps on a flood wait (``flood_sleep_threshold=0``): the wait becomes a
:class:`~inbox_daemon.errors.RetryableError` whose ``defer_s`` is the number of seconds Telegram
stated, so the scheduler rests this source only. It receives no pushed updates
(``receive_updates=False``): the bot's updates are read with ``updates.getDifference`` from the
state kept in the cursor.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from telethon import TelegramClient, errors
from telethon.sessions import SQLiteSession, StringSession

from inbox_daemon.errors import PermanentError, RetryableError

from .normalise import TLObject
from .settings import TelegramSourceSettings

logger = logging.getLogger(__name__)


async def load_session(settings: TelegramSourceSettings) -> TLObject:
    """The session to connect with: the configured StringSession or ``.session`` file, or a
    fresh in-memory one (a bot then logs in with its token on every start)."""
    text = settings.session_text()
    if text is not None:
        try:
            return StringSession(text)
        except ValueError as exc:  # telethon's message for a string it cannot read
            raise PermanentError(
                f"the session string is not a telethon StringSession: {exc}"
            ) from exc
    path = settings.session_path
    if path is not None:
        # Read once, then kept in memory: the operator's file is never written.
        return StringSession(await asyncio.to_thread(_session_string_of, path))
    return StringSession()


def _session_string_of(path: Path) -> str:
    session = SQLiteSession(str(path))
    try:
        return str(StringSession.save(session))
    finally:
        session.close()


def build_client(settings: TelegramSourceSettings, session: TLObject) -> TLObject:
    """An unconnected ``TelegramClient`` for ``settings``."""
    return TelegramClient(
        session,
        settings.api_id,
        settings.api_hash(),
        receive_updates=False,
        flood_sleep_threshold=0,
        timeout=max(1, int(settings.timeout_s)),
        request_retries=0,  # one attempt: the daemon retries, with its own backoff
        connection_retries=0,
        retry_delay=0,
        auto_reconnect=False,
        raise_last_call_error=True,
        base_logger="inbox_telegram.telethon",
    )


async def connect(client: TLObject, settings: TelegramSourceSettings) -> TLObject:
    """Connect and make sure the client is logged in; returns our own ``User``.

    Raises:
        RetryableError: Telegram could not be reached, or asked to wait.
        PermanentError: the credentials or the session were refused.
    """
    async with telegram_errors("connecting to Telegram"):
        await client.connect()
        if not await client.is_user_authorized():
            if settings.mode == "user":
                raise PermanentError(
                    "the user session is not logged in: make a StringSession with telethon "
                    "(log in once interactively) and name it in session_env or session_file"
                )
            await client.sign_in(bot_token=settings.bot_token())
        me = await client.get_me()
    if me is None:
        raise PermanentError("Telegram did not say who this session belongs to")
    if settings.mode == "bot" and not me.bot:
        raise PermanentError("mode = 'bot' but the session belongs to a user account")
    if settings.mode == "user" and me.bot:
        raise PermanentError("mode = 'user' but the session belongs to a bot")
    return me


@asynccontextmanager
async def telegram_errors(action: str) -> AsyncIterator[None]:
    """Translate what telethon raises while doing ``action`` into the daemon's errors."""
    try:
        yield
    except errors.FloodError as exc:
        seconds = float(getattr(exc, "seconds", 0) or 0)
        raise RetryableError(
            f"{action}: Telegram asks to wait {seconds:.0f} s ({type(exc).__name__})",
            defer_s=seconds or None,
        ) from exc
    except (errors.UnauthorizedError, errors.AuthKeyError) as exc:
        raise PermanentError(f"{action}: Telegram refused the session: {exc.message}") from exc
    except errors.AccessTokenInvalidError as exc:
        raise PermanentError(f"{action}: Telegram refused the bot token") from exc
    except (errors.ServerError, errors.TimedOutError) as exc:
        raise RetryableError(f"{action}: Telegram failed for now: {exc.message}") from exc
    except (ConnectionError, OSError, TimeoutError, errors.InvalidBufferError) as exc:
        raise RetryableError(f"{action}: {type(exc).__name__}: {exc}") from exc
    except errors.SecurityError as exc:
        raise RetryableError(f"{action}: the connection was not trustworthy: {exc}") from exc
    except (errors.BadRequestError, errors.ForbiddenError) as exc:
        raise PermanentError(f"{action}: Telegram refused the request: {exc.message}") from exc
    except errors.RPCError as exc:
        raise RetryableError(f"{action}: Telegram answered {exc.code} {exc.message}") from exc
