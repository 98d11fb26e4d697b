"""The aiohttp application and the middlewares every request passes through.

Requests pass, outermost first: security headers, JSON errors, the bearer token, the body
limit, then the handler. Errors of every kind leave as one JSON shape,
``{"error": {"code": ..., "message": ..., "field"?: ...}}``, whose ``code`` is stable (clients
branch on it) and whose ``message`` names the problem for a person.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from ..config import Settings, WebSettings
from ..errors import ConfigError
from ..queue import QueueError
from . import api, health, pages
from .context import ENGINE, SETTINGS, TOKEN
from .errors import ApiError, error_response

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: A shorter shared token is refused: it would be guessable.
TOKEN_MIN_CHARS: Final = 16
#: Requests under these paths carry data and need the bearer token.
PROTECTED_PREFIXES: Final = ("/api/v1/", "/fragments/")

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


def make_app(engine: AsyncEngine, settings: Settings) -> web.Application:
    """The web application over ``engine``: JSON API, queue page and health probes.

    Raises:
        ConfigError: the variable named by ``web.token_env`` is unset, empty or too short.
    """
    app = web.Application(
        middlewares=[_security_headers, _json_errors, _require_token, _limit_body],
        client_max_size=settings.web.max_body_bytes,
    )
    app[ENGINE] = engine
    app[SETTINGS] = settings
    app[TOKEN] = bearer_token(settings.web).encode()
    health.add_routes(app)
    api.add_routes(app)
    pages.add_routes(app)
    # Prometheus' /metrics joins here as one more add_routes(app).
    return app


def bearer_token(settings: WebSettings) -> str:
    """The shared API token from the environment variable ``settings.token_env``.

    Raises:
        ConfigError: the variable is unset, empty or shorter than :data:`TOKEN_MIN_CHARS`.
    """
    token = os.environ.get(settings.token_env, "").strip()
    if len(token) < TOKEN_MIN_CHARS:
        state = "is not set or empty" if not token else f"holds {len(token)} characters"
        raise ConfigError(
            f"environment variable {settings.token_env!r} {state}: the API needs a bearer "
            f"token of at least {TOKEN_MIN_CHARS} characters "
            "(python3 -c 'import secrets; print(secrets.token_urlsafe(24))' makes one)",
            key="web.token_env",
        )
    return token


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
        limit = request.app[SETTINGS].web.max_body_bytes
        return error_response(413, code, f"the body is over {limit} bytes", "body")
    else:
        message = exc.reason
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return error_response(exc.status, code, message, headers=headers)


@web.middleware
async def _require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(PROTECTED_PREFIXES):
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise _unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
        if not hmac.compare_digest(given.strip().encode(), request.app[TOKEN]):
            raise _unauthorized("the bearer token is not valid")
    return await handler(request)


def _unauthorized(message: str) -> ApiError:
    challenge = {"WWW-Authenticate": 'Bearer realm="inbox-daemon"'}
    return ApiError(401, "unauthorized", message, field="Authorization", headers=challenge)


@web.middleware
async def _limit_body(request: web.Request, handler: Handler) -> web.StreamResponse:
    # A declared length is refused before a byte is read; a chunked body is cut off by the
    # application's client_max_size, which raises the same 413 while it is read.
    limit = request.app[SETTINGS].web.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large", f"the body is over {limit} bytes", field="body")
    return await handler(request)
