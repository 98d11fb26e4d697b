"""What every handler reads from its application and request: engine, settings, the agent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from ..agents import Agent
from ..audit import Actor
from ..config import Settings
from ..visibility import Scope


class SettingsSource(Protocol):
    """Where the application reads its settings on each request: the daemon, whose reload
    (SIGHUP) replaces them, or :class:`FixedSettings`."""

    @property
    def settings(self) -> Settings:
        """The settings in force."""


@dataclass(frozen=True, slots=True)
class FixedSettings:
    """Settings that stay as they were loaded (a web server on its own)."""

    settings: Settings


ENGINE: Final = web.AppKey("engine", AsyncEngine)
SETTINGS: Final[web.AppKey[SettingsSource]] = web.AppKey("settings")
#: The agent a request is signed in as (set by the authentication middleware).
AGENT: Final = web.RequestKey("agent", Agent)


def engine_of(request: web.Request) -> AsyncEngine:
    """The database engine the application serves."""
    return request.app[ENGINE]


def settings_of(request: web.Request) -> Settings:
    """The settings in force (a reload of the daemon serving the application replaces them)."""
    return request.app[SETTINGS].settings


def agent_of(request: web.Request) -> Agent:
    """The agent the request is signed in as."""
    return request[AGENT]


def scope_of(request: web.Request) -> Scope:
    """What the signed-in agent may see."""
    return Scope.of(agent_of(request), settings_of(request).staff.visibility)


def actor_of(request: web.Request) -> Actor:
    """The signed-in agent, and the address the request came from, for the audit log."""
    return Actor(agent_of(request).name, f"http {request.remote or '-'}")
