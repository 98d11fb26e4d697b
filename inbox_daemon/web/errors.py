"""The one shape every error of the HTTP API takes, and the exception that carries it."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from ..errors import InboxError


class ApiError(InboxError):
    """A request was refused; nothing changed.

    Args:
        status: the HTTP status (4xx).
        code: the stable machine-readable code (``invalid_input``, ``unauthorized`` …).
        message: what is wrong, for a person.
        field: the input at fault (a query parameter, body field or header), when one is.
        headers: extra response headers (``WWW-Authenticate`` on 401).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})


def invalid(message: str, *, field: str) -> ApiError:
    """A 400 ``invalid_input`` error about ``field``."""
    return ApiError(400, "invalid_input", f"{field}: {message}", field=field)


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """``{"error": {"code", "message", "field"?}}`` with ``status``."""
    error: dict[str, str] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return web.json_response({"error": error}, status=status, headers=headers)
