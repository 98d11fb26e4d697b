"""``/metrics``: the Prometheus exposition of a :class:`~inbox_daemon.metrics.ServiceMetrics`.

It needs no token, like the probes: no figure carries customer text, a sender or a secret
(see :mod:`inbox_daemon.metrics`), and scrapers rarely carry one.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from ..metrics import ServiceMetrics
from . import health
from .context import ENGINE, engine_of

METRICS: Final = web.AppKey("metrics", ServiceMetrics)


def add_routes(app: web.Application, metrics: ServiceMetrics) -> None:
    """Serve ``metrics`` at ``/metrics`` on ``app``; a scrape reads the app's database."""
    app[METRICS] = metrics
    app.router.add_get("/metrics", metrics_endpoint)


def metrics_app(engine: AsyncEngine, metrics: ServiceMetrics) -> web.Application:
    """An application of ``/metrics``, ``/healthz`` and ``/readyz`` alone (no API, no page)."""
    app = web.Application()
    app[ENGINE] = engine
    health.add_routes(app)
    add_routes(app, metrics)
    return app


async def metrics_endpoint(request: web.Request) -> web.Response:
    """The exposition: Prometheus text, or OpenMetrics when the scraper asks for it."""
    accept = ",".join(request.headers.getall("Accept", []))
    body, content_type = await request.app[METRICS].exposition(engine_of(request), accept)
    return web.Response(body=body, headers={"Content-Type": content_type})
