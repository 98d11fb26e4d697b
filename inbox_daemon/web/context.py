"""What every handler reads from its application: the engine and the settings."""

from __future__ import annotations

from typing import Final

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from ..config import Settings

ENGINE: Final = web.AppKey("engine", AsyncEngine)
SETTINGS: Final = web.AppKey("settings", Settings)
TOKEN: Final = web.AppKey("token", bytes)


def engine_of(request: web.Request) -> AsyncEngine:
    """The database engine the application serves."""
    return request.app[ENGINE]


def settings_of(request: web.Request) -> Settings:
    """The settings the application was made with."""
    return request.app[SETTINGS]
