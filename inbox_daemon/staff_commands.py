"""The commands for staff and compliance: ``agents``, ``audit``, ``queue reassign|export``,
``erase`` and ``retention run``.

Whoever runs a command can read the configuration and the database, so the command line is
trusted as an operator: it adds agents and issues tokens, and its acts are logged under the
operating-system user (``cli:ana``) and host. A queue command run ``--as`` an agent is
checked against the agent list (an unknown or disabled name is refused) and sees what that
agent may see.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO, TypeAlias

from sqlalchemy.ext.asyncio import AsyncEngine

from . import agents, audit
from .agents import AgentError, AgentListing
from .audit import Actor, AuditEntry, cli_actor, cli_origin
from .config import Settings, load_settings
from .queue import QueueFilter, QueueItem, export_items, reassign
from .queue_text import format_change
from .retention import Removal, apply_retention, erase_sender
from .storage.engine import create_engine, database_url
from .storage.migrate import ensure_migrated
from .visibility import Scope

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
ActionMaker: TypeAlias = Callable[[Subparsers, str, Command, str], argparse.ArgumentParser]

EXIT_OK: Final = 0
MAX_BATCH: Final = 10_000


class PermissionDeniedError(AgentError):
    """The acting agent's role does not allow the act."""

    kind = "forbidden"


def add_commands(commands: Subparsers, default_config: Path) -> None:
    """Register ``agents …``, ``audit list``, ``erase`` and ``retention run``."""

    def action(
        group: Subparsers, name: str, handler: Command, text: str
    ) -> argparse.ArgumentParser:
        sub = group.add_parser(name, help=text, description=text)
        sub.set_defaults(command=handler)
        sub.add_argument("--config", type=Path, default=default_config)
        return sub

    staff = commands.add_parser("agents", help="support staff and their API tokens")
    group = staff.add_subparsers(required=True, metavar="ACTION")
    adding = action(group, "add", _agents_add, "add an agent")
    adding.add_argument("name")
    adding.add_argument("--team", required=True, help="the team the agent works in")
    adding.add_argument("--role", default="agent", choices=agents.ROLES, help="default: agent")
    action(group, "list", _agents_list, "list agents and their tokens").add_argument(
        "--json", action="store_true", help="print JSON"
    )
    action(group, "disable", _agents_disable, "disable an agent, revoking their tokens")
    group.choices["disable"].add_argument("name")
    token = action(group, "token", _agents_token, "issue a token (shown once), or revoke one")
    token.add_argument("name")
    token.add_argument("--expires-days", type=float, help="lifetime (default: token_ttl_days)")
    token.add_argument("--revoke", metavar="TOKEN_ID", help="revoke this token, or 'all'")
    log = commands.add_parser("audit", help="the audit log").add_subparsers(
        required=True, metavar="ACTION"
    )
    listing = action(log, "list", _audit_list, "who did what, when and from where")
    listing.add_argument("--item", metavar="REF", help="rows about this item")
    listing.add_argument("--agent", metavar="NAME", help="rows of this actor")
    listing.add_argument("--limit", type=int, default=100, help="the newest N rows (1-1000)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    erasing = action(commands, "erase", _erase, "remove everything stored of one person")
    erasing.add_argument("--sender", required=True, metavar="ADDRESS|HANDLE")
    erasing.add_argument("--batch-size", type=int, default=500, help="records per transaction")
    keeping = commands.add_parser("retention", help="records past their retention")
    action(
        keeping.add_subparsers(required=True, metavar="ACTION"),
        "run",
        _retention_run,
        "anonymise or delete what [retention] says is past its time, now",
    )


def add_queue_actions(queue: Subparsers, action: ActionMaker) -> None:
    """Register ``queue reassign`` and ``queue export`` (``action`` adds --config, --json)."""
    moving = action(queue, "reassign", _queue_reassign, "move an item to a team or an agent")
    moving.add_argument("reference")
    moving.add_argument("--team", help="the team to move it to")
    moving.add_argument("--to", dest="assignee", metavar="NAME", help="the agent to hand it to")
    moving.add_argument("--as", dest="agent", required=True, metavar="NAME", help="a lead/admin")
    exporting = action(queue, "export", _queue_export, "write matching items as JSON lines")
    for name in ("team", "priority", "status", "channel", "language", "category"):
        exporting.add_argument(f"--{name}")
    exporting.add_argument("--output", type=Path, help="the file to write (default: stdout)")
    exporting.add_argument("--as", dest="agent", metavar="NAME", help="as this agent sees it")


async def acting(
    engine: AsyncEngine, settings: Settings, name: str | None
) -> tuple[Actor, Scope | None]:
    """Who a command acts as, and what they see: the enabled agent ``name``, or the operator.

    Raises:
        UnknownAgentError: ``name`` is not an enabled agent.
    """
    if name is None:
        return cli_actor(), None
    agent = await agents.find_agent(engine, name)
    return Actor(agent.name, cli_origin()), Scope.of(agent, settings.staff.visibility)


# --- agents ----------------------------------------------------------------------------------


async def _agents_add(args: argparse.Namespace) -> int:
    async with _engine(args) as (engine, _settings):
        agent = await agents.add_agent(
            engine, args.name, args.team, role=args.role, actor=cli_actor()
        )
    print(f"added {agent.name} (team {agent.team}, role {agent.role})")
    print(f"issue a token: inbox-daemon agents token {_quoted(agent.name)}")
    return EXIT_OK


async def _agents_list(args: argparse.Namespace) -> int:
    async with _engine(args) as (engine, _settings):
        listing = await agents.list_agents(engine)
    now = datetime.now(UTC)
    if args.json:
        print(json.dumps([asdict(entry) for entry in listing], default=_iso, indent=2))
    else:
        print(format_agents(listing, now))
    return EXIT_OK


async def _agents_disable(args: argparse.Namespace) -> int:
    async with _engine(args) as (engine, _settings):
        agent = await agents.disable_agent(engine, args.name, actor=cli_actor())
    print(f"disabled {agent.name}; their tokens are revoked")
    return EXIT_OK


async def _agents_token(args: argparse.Namespace) -> int:
    async with _engine(args) as (engine, settings):
        if args.revoke is not None:
            token_id = None if args.revoke == "all" else args.revoke
            count = await agents.revoke_tokens(engine, args.name, token_id, actor=cli_actor())
            print(f"revoked {count} token{'s' if count != 1 else ''} of {args.name}")
            return EXIT_OK
        days = args.expires_days or settings.staff.token_ttl_days
        issued = await agents.issue_token(engine, args.name, ttl_days=days, actor=cli_actor())
    print(issued.token)
    print(
        f"token {issued.info.token_id} for {issued.info.agent}, valid until "
        f"{issued.info.expires_at:%Y-%m-%d %H:%M} UTC; it is shown this once",
        file=sys.stderr,
    )
    return EXIT_OK


def format_agents(listing: Sequence[AgentListing], now: datetime) -> str:
    """Agents as a table: name, team, role, state, and their active tokens."""
    lines = [f"{'NAME':<24} {'TEAM':<18} {'ROLE':<6} {'STATE':<9} TOKENS (id, expires)"]
    for entry in listing:
        agent = entry.agent
        state = "disabled" if agent.disabled_at else "active"
        active = [t for t in entry.tokens if t.active(now)]
        tokens = ", ".join(f"{t.token_id} {t.expires_at:%Y-%m-%d}" for t in active) or "-"
        lines.append(f"{agent.name:<24} {agent.team:<18} {agent.role:<6} {state:<9} {tokens}")
    return "\n".join(lines)


# --- audit log -------------------------------------------------------------------------------


async def _audit_list(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= audit.MAX_LIST:
        raise agents.InvalidAgentInputError(
            f"expected 1 to {audit.MAX_LIST}, got {args.limit}", field="limit"
        )
    item = args.item.strip().upper() if args.item else None
    async with _engine(args) as (engine, _settings):
        rows = await audit.list_entries(engine, item_ref=item, actor=args.agent, limit=args.limit)
    if args.json:
        print(json.dumps([asdict(row) for row in rows], default=_iso, ensure_ascii=False, indent=2))
    else:
        print(format_audit(rows))
    return EXIT_OK


def format_audit(rows: Sequence[AuditEntry]) -> str:
    """Audit rows, oldest first, one a line: when, who, what, which item, from where, detail."""
    lines = [f"{'AT (UTC)':<19}  {'ACTOR':<20} {'ACTION':<14} {'ITEM':<12}  FROM / DETAIL"]
    for row in rows:
        detail = json.dumps(row.detail, ensure_ascii=False, sort_keys=True) if row.detail else ""
        lines.append(
            f"{row.at:%Y-%m-%d %H:%M:%S}  {row.actor[:20]:<20} {row.action:<14} "
            f"{row.item_ref or '-':<12}  {row.origin}  {detail}".rstrip()
        )
    return "\n".join(lines)


# --- queue -----------------------------------------------------------------------------------


async def _queue_reassign(args: argparse.Namespace) -> int:
    async with _engine(args) as (engine, settings):
        actor, scope = await acting(engine, settings, args.agent)
        lead = await agents.find_agent(engine, actor.name)
        if not lead.sees_every_item:
            raise PermissionDeniedError(f"{lead.name} is a {lead.role}; leads and admins reassign")
        assignee_scope = None
        if args.assignee is not None:
            target = await agents.find_agent(engine, args.assignee)
            assignee_scope = Scope.of(target, settings.staff.visibility)
        item = await reassign(
            engine,
            args.reference,
            actor.name,
            team=args.team,
            assignee=args.assignee,
            assignee_scope=assignee_scope,
            claim_timeout_s=settings.queue.claim_timeout_s,
            scope=scope,
            origin=actor.origin,
        )
    if args.json:
        print(json.dumps(asdict(item), default=_iso, ensure_ascii=False, indent=2))
    else:
        print(format_change(item, now=datetime.now(UTC)))
    return EXIT_OK


async def _queue_export(args: argparse.Namespace) -> int:
    filters = QueueFilter(
        team=args.team,
        priority=args.priority,
        status=args.status,
        channel=args.channel,
        language=args.language,
        category=args.category,
    )
    async with _engine(args) as (engine, settings):
        actor, scope = await acting(engine, settings, args.agent)
        done = await export_items(engine, filters, actor=actor, scope=scope)
    if args.output is None:
        _write_lines(sys.stdout, done.items)
    else:
        with args.output.open("w", encoding="utf-8") as out:
            _write_lines(out, done.items)
    cut = "" if done.complete else f" (the first {len(done.items)}: narrow the filters)"
    print(f"exported {len(done.items)} items{cut}", file=sys.stderr)
    return EXIT_OK


def _write_lines(out: TextIO, items: Sequence[QueueItem]) -> None:
    for item in items:
        out.write(json.dumps(asdict(item), default=_iso, ensure_ascii=False) + "\n")


# --- retention and erasure ------------------------------------------------------------------


async def _erase(args: argparse.Namespace) -> int:
    if not 1 <= args.batch_size <= MAX_BATCH:
        raise agents.InvalidAgentInputError(
            f"expected 1 to {MAX_BATCH}, got {args.batch_size}", field="batch_size"
        )
    try:
        async with _engine(args) as (engine, _settings):
            removal = await erase_sender(
                engine,
                args.sender,
                actor=cli_actor(),
                batch_size=args.batch_size,
                progress=_progress("erased"),
            )
    except ValueError as exc:
        raise agents.InvalidAgentInputError(str(exc), field="sender") from exc
    print(f"erased {removal.records} records of {args.sender}: {_counts(removal)}")
    return EXIT_OK


async def _retention_run(args: argparse.Namespace) -> int:
    async with _engine(args) as (engine, settings):
        if not settings.retention.retention_days:
            print("[retention] names no retention_days: everything is kept")
            return EXIT_OK
        removal = await apply_retention(
            engine, settings.retention, actor=cli_actor(), progress=_progress("done")
        )
    done = "deleted" if settings.retention.action == "delete" else "anonymised"
    print(f"{removal.records} records {done}: {_counts(removal)}")
    return EXIT_OK


def _progress(verb: str) -> Callable[[int, int], None]:
    def show(done: int, found: int) -> None:
        print(f"{verb} {done}/{found} records", file=sys.stderr, flush=True)

    return show


def _counts(removal: Removal) -> str:
    rows = {table: count for table, count in sorted(removal.counts.items()) if count}
    return ", ".join(f"{table} {count}" for table, count in rows.items()) or "nothing"


# --- small helpers ---------------------------------------------------------------------------


@asynccontextmanager
async def _engine(args: argparse.Namespace) -> AsyncIterator[tuple[AsyncEngine, Settings]]:
    """The migrated database of ``args.config``, and the settings, for one command."""
    settings = load_settings(args.config)
    engine = create_engine(database_url(settings.storage.url, settings.config_dir))
    try:
        await ensure_migrated(engine)
        yield engine, settings
    finally:
        await engine.dispose()


def _quoted(name: str) -> str:
    return name if name.isidentifier() else json.dumps(name, ensure_ascii=False)


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
