"""The entry point ``telegram`` of group ``inbox_daemon.adapters``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from pydantic import BaseModel

from .settings import TelegramSourceSettings

if TYPE_CHECKING:
    from .adapter import TelegramAdapter


class TelegramPlugin:
    """Builds :class:`TelegramAdapter` sources from ``kind = "telegram"`` settings."""

    kind: Final = "telegram"
    channel: Final = "telegram"

    @property
    def settings_model(self) -> type[BaseModel]:
        """The settings of one Telegram bot or user account."""
        return TelegramSourceSettings

    def create(self, settings: BaseModel) -> TelegramAdapter:
        """An unopened adapter for ``settings``."""
        # Imported here so that validating a configuration loads no telethon code.
        from .adapter import TelegramAdapter

        if not isinstance(settings, TelegramSourceSettings):
            raise TypeError(f"expected TelegramSourceSettings, got {type(settings).__name__}")
        return TelegramAdapter(settings)


plugin: Final = TelegramPlugin()
