"""The aiohttp application and the middlewares every request passes through.

Requests pass, outermost first: security headers, JSON errors, sign-in (an agent's bearer
token, or the SSO header of a trusted reverse proxy), the body limit, then the handler.
Errors of every kind leave as one JSON shape, ``{"error": {"code": ..., "message": ...,
"field"?: ...}}``, whose ``code`` is stable (clients branch on it) and whose ``message``
names the problem for a person.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from ..agents import Agent, AuthenticationError, UnknownAgentError, authenticate, find_agent
from ..config import Settings
from ..metrics import ServiceMetrics
from ..queue import QueueError
from . import api, health, pages, report_page
from . import metrics as exposition
from .context import AGENT, ENGINE, SETTINGS, FixedSettings, SettingsSource, settings_of
from .errors import ApiError, error_response

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Requests under these paths carry data and need a signed-in agent.
PROTECTED_PREFIXES: Final = ("/api/v1/", "/fragments/", "/report")

_STATUS_CODES: Final = {
    400: "invalid_input",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
_QUEUE_STATUS: Final = {"not_found": 404, "conflict": 409, "invalid_input": 400}
#: The page loads its script and styles from this server only; nothing inline ever runs.
_CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def make_app(
    engine: AsyncEngine,
    settings: Settings,
    *,
    metrics: ServiceMetrics | None = None,
    live: SettingsSource | None = None,
) -> web.Application:
    """The web application over ``engine``: JSON API, queue page, probes and ``/metrics``.

    ``metrics`` and ``live`` are the daemon's when it serves the application: requests then
    read the settings a reload gives the daemon. A web server alone makes its own metrics
    (the database's figures, and its process's) and keeps ``settings``.
    """
    app = web.Application(
        middlewares=[_security_headers, _json_errors, _sign_in, _limit_body],
        client_max_size=settings.web.max_body_bytes,
    )
    app[ENGINE] = engine
    app[SETTINGS] = live or FixedSettings(settings)
    health.add_routes(app)
    api.add_routes(app)
    pages.add_routes(app)
    report_page.add_routes(app)
    timeout_s = settings.metrics.database_timeout_s
    exposition.add_routes(app, metrics or ServiceMetrics(database_timeout_s=timeout_s))
    return app


@web.middleware
async def _security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Content-Security-Policy", _CONTENT_SECURITY_POLICY)
    if request.path.startswith(PROTECTED_PREFIXES):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.field, headers=exc.headers)
    except QueueError as exc:
        status = _QUEUE_STATUS.get(exc.kind, 400)
        return error_response(status, exc.kind, str(exc), getattr(exc, "field", None))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(request, exc)
    except Exception:
        logger.exception("request failed", extra={"stage": "web", "path": request.path})
        return error_response(500, "internal", "internal error; the server log has the details")


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    code = _STATUS_CODES.get(exc.status, "http_error")
    if exc.status == 404:
        message = f"no such path: {request.path}"
    elif exc.status == 405:
        message = f"{request.method} is not allowed on {request.path}"
    elif exc.status == 413:
        limit = settings_of(request).web.max_body_bytes
        return error_response(413, code, f"the body is over {limit} bytes", "body")
    else:
        message = exc.reason
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return error_response(exc.status, code, message, headers=headers)


@web.middleware
async def _sign_in(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(PROTECTED_PREFIXES):
        request[AGENT] = await signed_in_agent(request)
    return await handler(request)


async def signed_in_agent(request: web.Request) -> Agent:
    """The agent a request comes from: named by a trusted proxy's SSO header, or by a token.

    The SSO header counts only from a peer in ``web.trusted_proxies`` (the proxy must drop
    the header its clients send); without it the request needs the agent's bearer token.

    Raises:
        ApiError: 401, saying whether the token is missing, wrong, expired or revoked, or
            the agent unknown or disabled.
    """
    web_settings, engine = settings_of(request).web, request.app[ENGINE]
    header = web_settings.sso_header
    if header and request.remote in web_settings.trusted_proxies and request.headers.get(header):
        try:
            return await find_agent(engine, request.headers[header])
        except UnknownAgentError as exc:
            raise _unauthorized(f"signed in by the proxy, but {exc}") from exc
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise _unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    try:
        return await authenticate(engine, given)
    except AuthenticationError as exc:
        raise _unauthorized(str(exc)) from exc


def _unauthorized(message: str) -> ApiError:
    challenge = {"WWW-Authenticate": 'Bearer realm="inbox-daemon"'}
    return ApiError(401, "unauthorized", message, field="Authorization", headers=challenge)


@web.middleware
async def _limit_body(request: web.Request, handler: Handler) -> web.StreamResponse:
    # A declared length is refused before a byte is read; a chunked body is cut off by the
    # application's client_max_size, which raises the same 413 while it is read.
    limit = settings_of(request).web.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large", f"the body is over {limit} bytes", field="body")
    return await handler(request)
