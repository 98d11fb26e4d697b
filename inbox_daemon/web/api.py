"""The JSON API under ``/api/v1``: list, show, claim, resolve; incidents; its OpenAPI document.

Every operation is one :mod:`inbox_daemon.queue` call; this module only turns HTTP into its
arguments and its results into JSON. Input is checked before anything is read or written:
an unknown query parameter or body field is an error, never silently ignored. The acting
agent is the one the request signed in as (see :mod:`.app`): every read and change is
narrowed to what they may see, and written to the audit log under their name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from datetime import datetime
from functools import cache
from importlib.resources import files
from typing import Any, Final

from aiohttp import web

from .. import queue
from ..agents import UnknownAgentError, find_agent
from ..queue import QueueFilter
from ..resolution import notice_templates, resolve_with_reply
from ..visibility import Scope
from .context import actor_of, agent_of, engine_of, scope_of, settings_of
from .errors import ApiError, invalid
from .incidents import incident_detail

PREFIX: Final = "/api/v1"
#: A reference in a path; ``claim-next`` is a route of its own, not a malformed reference.
_REFERENCE: Final = "{reference:(?!claim-next$)[^/]+}"
#: Items in a listing page when the request names no limit.
DEFAULT_LIMIT: Final = 50


def add_routes(app: web.Application) -> None:
    """Register the API's routes on ``app`` (no HEAD: a JSON API has no use for it)."""
    router = app.router
    router.add_get("/api/openapi.json", openapi_document, allow_head=False)
    router.add_get(f"{PREFIX}/me", me, allow_head=False)
    router.add_get(f"{PREFIX}/items", list_items, allow_head=False)
    router.add_get(f"{PREFIX}/export", export, allow_head=False)
    router.add_post(f"{PREFIX}/items/claim-next", claim_next)
    router.add_get(f"{PREFIX}/items/{_REFERENCE}", show_item, allow_head=False)
    router.add_post(f"{PREFIX}/items/{_REFERENCE}/claim", claim)
    router.add_post(f"{PREFIX}/items/{_REFERENCE}/resolve", resolve)
    router.add_post(f"{PREFIX}/items/{_REFERENCE}/reassign", reassign)
    router.add_get(f"{PREFIX}/incidents", list_incidents, allow_head=False)
    router.add_get(f"{PREFIX}/incidents/{{incident_id}}", show_incident, allow_head=False)


# --- handlers ----------------------------------------------------------------------------


async def openapi_document(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of this API (public: it holds no data)."""
    return web.Response(body=_openapi_bytes(), content_type="application/json")


async def me(request: web.Request) -> web.Response:
    """``GET /me``: who the request is signed in as: name, team and role."""
    _no_query(request)
    agent = agent_of(request)
    return _json({"name": agent.name, "team": agent.team, "role": agent.role})


async def list_items(request: web.Request) -> web.Response:
    """``GET /items``: one page of items, most urgent first, with the next page's cursor."""
    filters, cursor, limit = listing_query(request, default_limit=DEFAULT_LIMIT)
    page = await queue.list_items(
        engine_of(request), filters, cursor=cursor, limit=limit, scope=scope_of(request)
    )
    return _json({"items": page.items, "next_cursor": page.next_cursor})


async def export(request: web.Request) -> web.Response:
    """``GET /export``: every item matching the filters, at most 10,000; audit-logged."""
    filters = listing_query(request, default_limit=DEFAULT_LIMIT, paged=False)[0]
    done = await queue.export_items(
        engine_of(request), filters, actor=actor_of(request), scope=scope_of(request)
    )
    return _json({"items": done.items, "complete": done.complete})


async def show_item(request: web.Request) -> web.Response:
    """``GET /items/{reference}``: the item with its record, thread, history and audit rows."""
    _no_query(request)
    detail = await queue.show_item(
        engine_of(request),
        request.match_info["reference"],
        scope=scope_of(request),
        viewer=actor_of(request),
        view_log_interval_s=settings_of(request).staff.view_log_interval_s,
    )
    return _json(detail)


async def claim(request: web.Request) -> web.Response:
    """``POST /items/{reference}/claim``: claim the item (or renew one's own claim)."""
    _no_query(request)
    await read_body(request, allowed=())
    actor = actor_of(request)
    item = await queue.claim(
        engine_of(request),
        request.match_info["reference"],
        actor.name,
        claim_timeout_s=settings_of(request).queue.claim_timeout_s,
        scope=scope_of(request),
        origin=actor.origin,
    )
    return _json(item)


async def claim_next(request: web.Request) -> web.Response:
    """``POST /items/claim-next``: claim the most urgent waiting item of a team."""
    _no_query(request)
    body = await read_body(request, allowed=("team",))
    if "team" not in body:
        raise invalid("required: the team whose next item to claim", field="team")
    actor = actor_of(request)
    item = await queue.claim_next(
        engine_of(request),
        body["team"],
        actor.name,
        claim_timeout_s=settings_of(request).queue.claim_timeout_s,
        scope=scope_of(request),
        origin=actor.origin,
    )
    return _json(item)


async def resolve(request: web.Request) -> web.Response:
    """``POST /items/{reference}/resolve``: resolve the item, with an optional note; with a
    ``reply``, the customer is sent it (see :mod:`inbox_daemon.resolution`)."""
    _no_query(request)
    body = await read_body(request, allowed=("note", "reply"))
    actor = actor_of(request)
    settings = settings_of(request)
    item = await resolve_with_reply(
        engine_of(request),
        request.match_info["reference"],
        actor.name,
        reply=body.get("reply"),
        templates=await notice_templates(settings),
        loop_marker=settings.replies.loop_marker,
        note=body.get("note"),
        scope=scope_of(request),
        origin=actor.origin,
    )
    return _json(item)


async def reassign(request: web.Request) -> web.Response:
    """``POST /items/{reference}/reassign``: move the item to a team and/or an agent.

    Leads and admins only (403 for others); the new assignee must be an enabled agent
    who may see the item.
    """
    _no_query(request)
    body = await read_body(request, allowed=("team", "assignee"))
    if not agent_of(request).sees_every_item:
        raise ApiError(403, "forbidden", "only leads and admins reassign items")
    assignee_scope = await _assignee_scope(request, body.get("assignee"))
    actor = actor_of(request)
    item = await queue.reassign(
        engine_of(request),
        request.match_info["reference"],
        actor.name,
        team=body.get("team"),
        assignee=body.get("assignee"),
        assignee_scope=assignee_scope,
        claim_timeout_s=settings_of(request).queue.claim_timeout_s,
        scope=scope_of(request),
        origin=actor.origin,
    )
    return _json(item)


async def _assignee_scope(request: web.Request, name: str | None) -> Scope | None:
    if name is None:
        return None
    try:
        agent = await find_agent(engine_of(request), name)
    except UnknownAgentError as exc:
        raise invalid(str(exc), field="assignee") from exc
    return Scope.of(agent, settings_of(request).staff.visibility)


async def list_incidents(request: web.Request) -> web.Response:
    """``GET /incidents``: incidents, most recently reported first."""
    limit = _limit(_single_values(request, allowed=("limit",)).get("limit"), default=100)
    found = await queue.list_incidents(engine_of(request), limit=limit, scope=scope_of(request))
    return _json({"incidents": found})


async def show_incident(request: web.Request) -> web.Response:
    """``GET /incidents/{id}``: the incident with every report it groups."""
    _no_query(request)
    incident_id = positive_id(request.match_info["incident_id"], field="incident_id")
    return _json(await incident_detail(engine_of(request), incident_id, scope_of(request)))


# --- input -------------------------------------------------------------------------------


def listing_query(
    request: web.Request, *, default_limit: int, paged: bool = True
) -> tuple[QueueFilter, str | None, int]:
    """The filters, cursor and limit of a listing's query string (filters alone if not
    ``paged``).

    A parameter is given with a value or left out: an empty value, or one padded with
    spaces, is an error rather than a filter quietly dropped or changed.

    Raises:
        ApiError, queue.InvalidInputError: a parameter is unknown, repeated or malformed.
    """
    params = _single_values(request, allowed=None)
    for name, value in params.items():
        if not value or value != value.strip():
            raise invalid(
                "expected a value without surrounding spaces; or leave it out", field=name
            )
    if "incident" in params:
        positive_id(params["incident"], field="incident")
    if not paged:
        return QueueFilter.parse(params), None, default_limit
    cursor = params.pop("cursor", None)
    limit = _limit(params.pop("limit", None), default=default_limit)
    return QueueFilter.parse(params), cursor, limit


async def read_body(request: web.Request, *, allowed: tuple[str, ...]) -> dict[str, str]:
    """The request's JSON object body (empty when there is none), its values strings.

    Raises:
        ApiError: not JSON (415 without the JSON content type), not an object, an unknown
            field, or a value that is not a string; 413 past the size limit.
    """
    if not request.body_exists:
        return {}
    if request.content_type != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"body: expected application/json, got {request.content_type}",
            field="body",
        )
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid(f"not valid JSON ({exc})", field="body") from exc
    if not isinstance(document, dict):
        raise invalid("expected a JSON object", field="body")
    return _body_fields(document, allowed)


def _body_fields(document: Mapping[str, Any], allowed: tuple[str, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in document.items():
        if name not in allowed:
            expected = ", ".join(allowed) if allowed else "no fields"
            raise invalid(f"unknown field; expected {expected}", field=name)
        if not isinstance(value, str):
            raise invalid(f"expected a string, got {type(value).__name__}", field=name)
        values[name] = value
    return values


def positive_id(text: str, *, field: str) -> int:
    """``text`` as an id (a positive integer)."""
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise invalid(f"expected a positive integer id, got {text!r}", field=field)
    return int(text)


def _limit(text: str | None, *, default: int) -> int:
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= queue.MAX_PAGE:
        raise invalid(
            f"expected an integer from 1 to {queue.MAX_PAGE}, got {text!r}", field="limit"
        )
    return int(text)


def _single_values(request: web.Request, *, allowed: tuple[str, ...] | None) -> dict[str, str]:
    """The query parameters as a dict; a repeated one (or one not in ``allowed``) is an error."""
    values: dict[str, str] = {}
    for name, value in request.query.items():
        if allowed is not None and name not in allowed:
            expected = ", ".join(allowed) if allowed else "no parameters"
            raise invalid(f"unknown parameter; expected {expected}", field=name)
        if name in values:
            raise invalid("given more than once", field=name)
        values[name] = value
    return values


def _no_query(request: web.Request) -> None:
    _single_values(request, allowed=())


# --- output ------------------------------------------------------------------------------


def _json(value: object) -> web.Response:
    return web.json_response(value, dumps=_dumps)


def _dumps(document: object) -> str:
    # The C encoder walks the dicts, lists and tuples; only what it cannot write reaches
    # ``_plain`` (a page of items is thousands of values: walked in Python, most of a request).
    return json.dumps(document, ensure_ascii=False, default=_plain)


def _plain(value: object) -> object:
    """``value`` (a queue dataclass, a datetime, another mapping) as data JSON can write."""
    if isinstance(value, datetime):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(key): item for key, item in value.items()}
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@cache
def _openapi_bytes() -> bytes:
    return (files("inbox_daemon.web") / "openapi.json").read_bytes()
