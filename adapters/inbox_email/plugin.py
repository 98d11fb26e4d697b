"""The entry point ``imap`` of group ``inbox_daemon.adapters``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from pydantic import BaseModel

from .settings import ImapSourceSettings

if TYPE_CHECKING:
    from .adapter import EmailAdapter


class EmailPlugin:
    """Builds :class:`EmailAdapter` sources from ``kind = "imap"`` settings."""

    kind: Final = "imap"
    channel: Final = "email"

    @property
    def settings_model(self) -> type[BaseModel]:
        """The settings of one IMAP source."""
        return ImapSourceSettings

    def create(self, settings: BaseModel) -> EmailAdapter:
        """An unopened adapter for ``settings``."""
        # Imported here so that validating a configuration loads no network code.
        from .adapter import EmailAdapter

        if not isinstance(settings, ImapSourceSettings):
            raise TypeError(f"expected ImapSourceSettings, got {type(settings).__name__}")
        return EmailAdapter(settings)


plugin: Final = EmailPlugin()
