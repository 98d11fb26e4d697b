"""Support staff: agents, their teams and roles, and their API tokens.

An agent is a named person in one team with a role: ``agent`` sees the items its team may
see (see :mod:`.visibility`), ``lead`` and ``admin`` see every item and may reassign. An
agent is disabled, never deleted, so the audit log keeps naming a real person.

A token reads ``ibx_<id>_<secret>``: the id finds its row, the secret is 32 random bytes
(256 bits). The row keeps the SHA-256 of the secret, never the secret, which is shown once
when issued. A plain hash suffices, where a password would need a slow one (scrypt):
guessing 256 random bits is hopeless however fast each guess, and a slow hash would cost
every API request tens of milliseconds for nothing. The stored and given hashes are
compared in constant time. A token works until it expires or is revoked, and never for a
disabled agent.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final

from sqlalchemy import Row, Select, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from . import audit
from .audit import Actor
from .errors import InboxError
from .storage.engine import reading
from .storage.schema import agent_tokens, agents

ROLES: Final = ("agent", "lead", "admin")
#: Roles that see every item, whatever its team, and may reassign items.
SUPERVISORS: Final = ("lead", "admin")
TOKEN_PREFIX: Final = "ibx"  # noqa: S105 - the tokens' visible prefix, not a secret
MAX_TTL_DAYS: Final = 3650

_NAME = re.compile(r"[^\s\x00-\x1f\x7f]([^\x00-\x1f\x7f]{0,126}[^\s\x00-\x1f\x7f])?")
_TEAM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_TOKEN = re.compile(rf"{TOKEN_PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{43}})")


class AgentError(InboxError):
    """An agent operation was refused; nothing changed. ``kind`` is stable for callers."""

    kind: ClassVar[str] = "agent"


class UnknownAgentError(AgentError):
    """No enabled agent has that name."""

    kind = "unknown_agent"


class AgentConflictError(AgentError):
    """The agent exists already, is disabled already, or holds no such token."""

    kind = "conflict"


class InvalidAgentInputError(AgentError):
    """A name, team, role or lifetime is malformed; ``field`` names it."""

    kind = "invalid_input"

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class AuthenticationError(AgentError):
    """A token (or a signed-in name) does not identify an enabled agent; says why."""

    kind = "unauthorized"


@dataclass(frozen=True, slots=True)
class Agent:
    """One member of the support staff."""

    name: str
    team: str
    role: str
    created_at: datetime
    disabled_at: datetime | None

    @property
    def sees_every_item(self) -> bool:
        """Leads and admins see every item, whatever team it is routed to."""
        return self.role in SUPERVISORS


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as listed: never its secret."""

    token_id: str
    agent: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    def active(self, now: datetime) -> bool:
        """Neither revoked nor expired at ``now``."""
        return self.revoked_at is None and self.expires_at > now


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just issued: ``token`` is the secret, shown this once and stored nowhere."""

    token: str
    info: TokenInfo


@dataclass(frozen=True, slots=True)
class AgentListing:
    """An agent with their tokens."""

    agent: Agent
    tokens: tuple[TokenInfo, ...]


# --- agents --------------------------------------------------------------------------------


async def add_agent(
    engine: AsyncEngine,
    name: str,
    team: str,
    *,
    role: str = "agent",
    actor: Actor,
    now: datetime | None = None,
) -> Agent:
    """Add an agent.

    Raises:
        InvalidAgentInputError: a malformed name or team, or an unknown role.
        AgentConflictError: an agent (enabled or not) already has that name.
    """
    agent = Agent(_name(name), _team(team), _role(role), _now(now), None)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(agents).values(
                    name=agent.name, team=agent.team, role=agent.role, created_at=agent.created_at
                )
            )
            detail = {"agent": agent.name, "team": agent.team, "role": agent.role}
            await audit.append(conn, actor, audit.AGENT_ADD, at=agent.created_at, detail=detail)
    except IntegrityError as exc:
        raise AgentConflictError(f"an agent named {agent.name!r} exists already") from exc
    return agent


async def disable_agent(
    engine: AsyncEngine, name: str, *, actor: Actor, now: datetime | None = None
) -> Agent:
    """Disable an agent and revoke their tokens; they can no longer sign in or act.

    Raises:
        UnknownAgentError: no agent has that name.
        AgentConflictError: the agent is disabled already.
    """
    at = _now(now)
    async with engine.begin() as conn:
        row = await _agent_row(conn, _name(name))
        if row.disabled_at is not None:
            raise AgentConflictError(f"{row.name} is disabled already")
        await conn.execute(update(agents).where(agents.c.id == row.id).values(disabled_at=at))
        revoked = await _revoke(conn, row.id, None, at)
        detail = {"agent": row.name, "tokens_revoked": revoked}
        await audit.append(conn, actor, audit.AGENT_DISABLE, at=at, detail=detail)
        return Agent(row.name, row.team, row.role, row.created_at, at)


async def list_agents(engine: AsyncEngine) -> tuple[AgentListing, ...]:
    """Every agent, by name, with their tokens (newest first)."""
    async with engine.connect() as conn:
        people = (await conn.execute(_agent_query().order_by(agents.c.name))).all()
        tokens = (
            await conn.execute(
                _token_query().order_by(agent_tokens.c.created_at.desc(), agent_tokens.c.id.desc())
            )
        ).all()
    by_agent: dict[str, list[TokenInfo]] = {}
    for token in tokens:
        by_agent.setdefault(token.name, []).append(_token_info(token))
    return tuple(AgentListing(_agent(row), tuple(by_agent.get(row.name, ()))) for row in people)


async def find_agent(engine: AsyncEngine, name: str) -> Agent:
    """The enabled agent called ``name``: the check behind ``--as`` and the SSO header.

    Raises:
        UnknownAgentError: no agent has that name, or they are disabled.
    """
    async with engine.connect() as conn:
        return await enabled_agent(conn, name)


async def enabled_agent(conn: AsyncConnection, name: str) -> Agent:
    """:func:`find_agent` on an open connection."""
    wanted = name.strip()
    # A name no agent can have (control characters, NUL) is not looked up: not an agent.
    valid = _NAME.fullmatch(wanted) is not None
    query = _agent_query().where(agents.c.name == wanted)
    row = (await conn.execute(query)).first() if valid else None
    if row is None:
        raise UnknownAgentError(
            f"{wanted!r} is not an agent; `inbox-daemon agents list` shows who is"
        )
    if row.disabled_at is not None:
        raise UnknownAgentError(f"{row.name} is disabled")
    return _agent(row)


# --- tokens --------------------------------------------------------------------------------


async def issue_token(
    engine: AsyncEngine,
    name: str,
    *,
    ttl_days: float,
    actor: Actor,
    now: datetime | None = None,
) -> IssuedToken:
    """Issue a new token for the enabled agent ``name``, valid for ``ttl_days``.

    Raises:
        UnknownAgentError: no enabled agent has that name.
        InvalidAgentInputError: ``ttl_days`` is not over 0 and at most 3650.
    """
    if not 0 < ttl_days <= MAX_TTL_DAYS:
        raise InvalidAgentInputError(
            f"expected more than 0 and at most {MAX_TTL_DAYS} days, got {ttl_days}",
            field="expires_days",
        )
    at = _now(now)
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    expires_at = at + timedelta(days=ttl_days)
    async with engine.begin() as conn:
        row = await _agent_row(conn, _name(name), enabled=True)
        await conn.execute(
            insert(agent_tokens).values(
                agent_id=row.id,
                token_id=token_id,
                secret_sha256=_digest(secret),
                created_at=at,
                expires_at=expires_at,
            )
        )
        detail = {"agent": row.name, "token_id": token_id, "expires_at": expires_at.isoformat()}
        await audit.append(conn, actor, audit.TOKEN_ISSUE, at=at, detail=detail)
    info = TokenInfo(token_id, row.name, at, expires_at, None)
    return IssuedToken(f"{TOKEN_PREFIX}_{token_id}_{secret}", info)


async def revoke_tokens(
    engine: AsyncEngine,
    name: str,
    token_id: str | None = None,
    *,
    actor: Actor,
    now: datetime | None = None,
) -> int:
    """Revoke the agent's token ``token_id``, or every active one with ``None``; how many.

    Raises:
        UnknownAgentError: no agent has that name.
        AgentConflictError: the agent holds no active token of that id.
    """
    at = _now(now)
    async with engine.begin() as conn:
        row = await _agent_row(conn, _name(name))
        revoked = await _revoke(conn, row.id, token_id, at)
        if token_id is not None and not revoked:
            raise AgentConflictError(f"{row.name} holds no active token {token_id!r}")
        detail = {"agent": row.name, "token_id": token_id or "all", "revoked": revoked}
        await audit.append(conn, actor, audit.TOKEN_REVOKE, at=at, detail=detail)
    return revoked


async def authenticate(engine: AsyncEngine, token: str, *, now: datetime | None = None) -> Agent:
    """The agent ``token`` belongs to.

    Raises:
        AuthenticationError: the token is malformed, unknown, wrong, expired or revoked, or
            its agent is disabled; the message says which (never the secret).
    """
    match = _TOKEN.fullmatch(token.strip())
    if match is None:
        raise AuthenticationError("the bearer token is not valid")
    token_id, secret = match.groups()
    async with reading(engine) as conn:
        row = (
            await conn.execute(
                _token_query(agents.c.team, agents.c.role, agents.c.disabled_at)
                .add_columns(agent_tokens.c.secret_sha256, agents.c.created_at.label("since"))
                .where(agent_tokens.c.token_id == token_id)
            )
        ).first()
    # The digest is compared even for an unknown id, so both fail in the same time.
    stored = row.secret_sha256 if row is not None else "0" * 64
    matches = hmac.compare_digest(stored, _digest(secret))
    if row is None or not matches:
        raise AuthenticationError("the bearer token is not valid")
    return _authenticated(row, _now(now))


def _authenticated(row: Row[Any], now: datetime) -> Agent:
    if row.revoked_at is not None:
        raise AuthenticationError(f"the bearer token {row.token_id} was revoked")
    if row.expires_at <= now:
        raise AuthenticationError(f"the bearer token {row.token_id} expired")
    if row.disabled_at is not None:
        raise AuthenticationError(f"{row.name} is disabled")
    return Agent(row.name, row.team, row.role, row.since, None)


# --- queries and checks --------------------------------------------------------------------


def _agent_query() -> Select[Any]:
    c = agents.c
    return select(c.id, c.name, c.team, c.role, c.created_at, c.disabled_at)


def _token_query(*extra: ColumnElement[Any]) -> Select[Any]:
    t = agent_tokens.c
    return select(t.token_id, agents.c.name, t.created_at, t.expires_at, t.revoked_at, *extra).join(
        agents, agents.c.id == t.agent_id
    )


async def _agent_row(conn: AsyncConnection, name: str, *, enabled: bool = False) -> Row[Any]:
    row: Row[Any] | None = (await conn.execute(_agent_query().where(agents.c.name == name))).first()
    if row is None:
        raise UnknownAgentError(
            f"{name!r} is not an agent; `inbox-daemon agents list` shows who is"
        )
    if enabled and row.disabled_at is not None:
        raise UnknownAgentError(f"{row.name} is disabled")
    return row


async def _revoke(conn: AsyncConnection, agent_id: int, token_id: str | None, at: datetime) -> int:
    t = agent_tokens.c
    query = update(agent_tokens).where(t.agent_id == agent_id, t.revoked_at.is_(None))
    if token_id is not None:
        query = query.where(t.token_id == token_id)
    result = await conn.execute(query.values(revoked_at=at))
    return int(result.rowcount)


def _agent(row: Row[Any]) -> Agent:
    return Agent(row.name, row.team, row.role, row.created_at, row.disabled_at)


def _token_info(row: Row[Any]) -> TokenInfo:
    return TokenInfo(row.token_id, row.name, row.created_at, row.expires_at, row.revoked_at)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _name(name: str) -> str:
    text = name.strip()
    if not _NAME.fullmatch(text):
        raise InvalidAgentInputError(
            f"{name!r}: expected 1 to 128 printable characters", field="name"
        )
    return text


def _team(team: str) -> str:
    if not _TEAM.fullmatch(team):
        raise InvalidAgentInputError(
            f"{team!r}: expected letters, digits, '_', '.' or '-' (at most 32)", field="team"
        )
    return team


def _role(role: str) -> str:
    if role not in ROLES:
        raise InvalidAgentInputError(
            f"unknown role {role!r}; expected one of {', '.join(ROLES)}", field="role"
        )
    return role


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)
