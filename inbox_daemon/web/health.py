"""Probes for supervisors and load balancers: ``/healthz`` (alive) and ``/readyz`` (can serve).

Neither needs the token and neither says more than whether, and why not: a probe is public.
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from ..storage.migrate import NotMigratedError, ensure_migrated
from .context import engine_of
from .errors import error_response

#: A database that does not answer within this is not ready.
READY_TIMEOUT_S: Final = 5.0


def add_routes(app: web.Application) -> None:
    """Register the probes on ``app``."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


async def healthz(request: web.Request) -> web.Response:
    """200 while the process serves requests at all."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 when the database answers and its schema is the one this version needs; else 503."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await ensure_migrated(engine_of(request))
    except NotMigratedError as exc:
        return error_response(503, "not_migrated", str(exc))
    except TimeoutError:
        return error_response(
            503, "database_unavailable", f"no answer within {READY_TIMEOUT_S:.0f} s"
        )
    except (OSError, SQLAlchemyError) as exc:
        return error_response(503, "database_unavailable", type(exc).__name__)
    return web.json_response({"status": "ready"})
