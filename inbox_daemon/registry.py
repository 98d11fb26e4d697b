"""Find adapter plugins by entry point (group ``inbox_daemon.adapters``), never by import path."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Final

from .errors import ConfigError
from .interfaces import AdapterPlugin

#: The entry-point group adapter packages register their plugin under.
ENTRY_POINT_GROUP: Final = "inbox_daemon.adapters"


@cache
def adapter_plugins() -> dict[str, AdapterPlugin]:
    """Every installed adapter plugin by its ``kind``."""
    plugins: dict[str, AdapterPlugin] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        plugin = entry_point.load()
        plugins[plugin.kind] = plugin
    return plugins


def adapter_plugin(kind: str, *, path: str | None = None, key: str | None = None) -> AdapterPlugin:
    """The plugin that handles sources of ``kind``.

    Raises:
        ConfigError: no installed plugin handles ``kind``.
    """
    plugins = adapter_plugins()
    try:
        return plugins[kind]
    except KeyError:
        known = ", ".join(sorted(plugins)) or "none installed"
        raise ConfigError(
            f"unknown source kind {kind!r}; installed kinds: {known}", path=path, key=key
        ) from None
