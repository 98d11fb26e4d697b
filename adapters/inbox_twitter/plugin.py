"""The entry point ``twitter`` of group ``inbox_daemon.adapters``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from pydantic import BaseModel

from .settings import TwitterSourceSettings

if TYPE_CHECKING:
    from .adapter import TwitterAdapter


class TwitterPlugin:
    """Builds :class:`TwitterAdapter` sources from ``kind = "twitter"`` settings."""

    kind: Final = "twitter"
    channel: Final = "twitter"

    @property
    def settings_model(self) -> type[BaseModel]:
        """The settings of one X account."""
        return TwitterSourceSettings

    def create(self, settings: BaseModel) -> TwitterAdapter:
        """An unopened adapter for ``settings``."""
        # Imported here so that validating a configuration loads no network code.
        from .adapter import TwitterAdapter

        if not isinstance(settings, TwitterSourceSettings):
            raise TypeError(f"expected TwitterSourceSettings, got {type(settings).__name__}")
        return TwitterAdapter(settings)


plugin: Final = TwitterPlugin()
