"""The settings of one ``kind = "telegram"`` source: a bot (updates) or a user account (history)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from inbox_daemon.config import SourceSettings, read_secret

#: A chat as operators name it: a marked numeric id (``-1001234567890`` for a supergroup,
#: ``-123456`` for a basic group, a positive user id) or a public ``@username``.
ChatRef = int | str


class TelegramSourceSettings(SourceSettings):
    """One Telegram bot or user account.

    ``mode = "bot"`` reads the bot's updates (private messages, group messages that mention the
    bot or answer it, and every message of ``support_chats``) from the update state kept in the
    cursor. ``mode = "user"`` reads the history of ``chats`` with a ``min_id`` per chat, for
    groups where no bot is present. Secrets are named, never written: ``api_hash_env`` /
    ``api_hash_file``, ``bot_token_env`` / ``bot_token_file``, ``session_env`` /
    ``session_file`` (a telethon StringSession, or a telethon ``.session`` file).
    """

    kind: Literal["telegram"]
    mode: Literal["bot", "user"]
    api_id: Annotated[int, Field(gt=0)]
    api_hash_env: str | None = None
    api_hash_file: Path | None = None
    bot_token_env: str | None = None
    bot_token_file: Path | None = None
    session_env: str | None = None
    session_file: Path | None = None
    support_chats: tuple[ChatRef, ...] = ()
    chats: tuple[ChatRef, ...] = ()
    #: Updates fetched from Telegram but not yet returned to the daemon, at most.
    max_buffered_updates: Annotated[int, Field(ge=1, le=100_000)] = 1000
    #: Send acknowledgments (group: the short public form as a reply; private: the full one).
    send_replies: bool = True
    #: Attempts to read one unparseable update before it is dead-lettered and skipped.
    max_attempts: Annotated[int, Field(ge=1)] = 3

    @field_validator("support_chats", "chats")
    @classmethod
    def _chat_refs(cls, refs: tuple[ChatRef, ...]) -> tuple[ChatRef, ...]:
        for ref in refs:
            if isinstance(ref, str) and not _is_username(ref):
                raise ValueError(
                    f"{ref!r}: expected a numeric chat id (-100… for a supergroup) or @username"
                )
        return refs

    @model_validator(mode="after")
    def _mode_has_what_it_needs(self) -> Self:
        self.api_hash()
        if self.mode == "bot":
            self.bot_token()
            if self.chats:
                raise ValueError(
                    "chats is for mode = 'user'; a bot reads its updates (use support_chats)"
                )
        else:
            if self.session_env is None and self.session_file is None:
                raise ValueError("mode = 'user' needs session_env or session_file")
            if not self.chats:
                raise ValueError("mode = 'user' needs chats = [...] (ids or @usernames)")
            if self.support_chats:
                raise ValueError("support_chats is for mode = 'bot'; a user account reads chats")
        if self.session_env is not None or self.session_file is not None:
            self.session_text()
        return self

    def api_hash(self) -> str:
        """The application's api_hash (my.telegram.org), read now."""
        return read_secret(self.api_hash_env, self.api_hash_file, key="api_hash")

    def bot_token(self) -> str:
        """The bot token from @BotFather, read now."""
        return read_secret(self.bot_token_env, self.bot_token_file, key="bot_token")

    def session_text(self) -> str | None:
        """The StringSession text from ``session_env`` or ``session_file``, if one is named.

        A ``session_file`` that is a telethon SQLite ``.session`` file is not text: ``None``
        is returned for it and :attr:`session_path` names it.
        """
        if self.session_env is None and self.session_file is None:
            return None
        if self.session_path is not None:
            return None
        return read_secret(self.session_env, self.session_file, key="session")

    @property
    def session_path(self) -> Path | None:
        """The ``session_file`` when it is a telethon SQLite session file."""
        path = self.session_file
        if path is None or not path.is_file():
            return None
        with path.open("rb") as handle:
            return path if handle.read(16) == b"SQLite format 3\x00" else None


def _is_username(ref: str) -> bool:
    name = ref.removeprefix("@")
    return ref.startswith("@") and 4 <= len(name) <= 32 and name.replace("_", "").isalnum()
