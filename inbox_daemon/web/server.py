"""Serve the web application on a TCP port for as long as an exit stack is open."""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from ..config import Settings
from ..errors import ConfigError
from .app import make_app

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WebServer:
    """Where the application listens (``port`` is the real one when 0 was asked for)."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """The queue page's URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


async def start_web(
    stack: AsyncExitStack,
    engine: AsyncEngine,
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
) -> WebServer:
    """Serve the application over ``engine`` until ``stack`` closes.

    ``host`` and ``port`` override ``settings.web``; port 0 picks a free port. On close, open
    requests get the service's shutdown grace period to finish.

    Raises:
        ConfigError: the API token is missing (see :func:`~.app.bearer_token`), or the
            address cannot be listened on (taken, or not this machine's).
    """
    app = make_app(engine, settings)
    runner = web.AppRunner(
        app, shutdown_timeout=settings.service.shutdown_grace_s, handle_signals=False
    )
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(
        runner,
        settings.web.host if host is None else host,
        settings.web.port if port is None else port,
    )
    try:
        await site.start()
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {site.name}: {exc.strerror or exc}", key="web.port"
        ) from exc
    bound_host, bound_port = runner.addresses[0][:2]
    server = WebServer(str(bound_host), int(bound_port))
    logger.info("web server listening on %s", server.url, extra={"stage": "web"})
    return server


async def stop_signalled() -> None:
    """Return on the first SIGINT or SIGTERM (Ctrl-C, or a supervisor stopping the service)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
