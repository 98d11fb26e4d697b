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
from ..metrics import ServiceMetrics
from .app import make_app
from .context import SettingsSource
from .metrics import metrics_app

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
    metrics: ServiceMetrics | None = None,
    live: SettingsSource | None = None,
) -> WebServer:
    """Serve the application over ``engine`` until ``stack`` closes.

    ``host`` and ``port`` override ``settings.web``; port 0 picks a free port. ``metrics``
    are the daemon's, served at ``/metrics`` (a web server alone has its own), and ``live``
    the daemon, whose reloaded settings requests then read. On close, open requests get the
    service's shutdown grace period to finish.

    Raises:
        ConfigError: the address cannot be listened on (taken, or not this machine's).
    """
    app = make_app(engine, settings, metrics=metrics, live=live)
    server = await listen(
        stack,
        app,
        settings.web.host if host is None else host,
        settings.web.port if port is None else port,
        grace_s=settings.service.shutdown_grace_s,
        key="web.port",
    )
    logger.info("web server listening on %s", server.url, extra={"stage": "web"})
    return server


async def start_metrics_server(
    stack: AsyncExitStack, engine: AsyncEngine, settings: Settings, metrics: ServiceMetrics
) -> WebServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` alone on ``settings.metrics``.

    This is how ``inbox-daemon run`` without the web server is watched: no API and no page,
    so no token either.

    Raises:
        ConfigError: the address cannot be listened on.
    """
    where, grace_s = settings.metrics, settings.service.shutdown_grace_s
    app = metrics_app(engine, metrics)
    server = await listen(stack, app, where.host, where.port, grace_s=grace_s, key="metrics.port")
    url = f"{server.url}metrics"
    logger.info("metrics served on %s", url, extra={"stage": "metrics", "url": url})
    return server


async def listen(
    stack: AsyncExitStack,
    app: web.Application,
    host: str,
    port: int,
    *,
    grace_s: float,
    key: str,
) -> WebServer:
    """Serve ``app`` on ``host:port`` until ``stack`` closes; open requests get ``grace_s``.

    Raises:
        ConfigError: naming the setting ``key``, when the address cannot be listened on.
    """
    runner = web.AppRunner(app, shutdown_timeout=grace_s, handle_signals=False)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        raise ConfigError(f"cannot listen on {site.name}: {exc.strerror or exc}", key=key) from exc
    bound_host, bound_port = runner.addresses[0][:2]
    return WebServer(str(bound_host), int(bound_port))


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
