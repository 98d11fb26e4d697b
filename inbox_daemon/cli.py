"""The ``inbox-daemon`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncEngine

from . import staff_commands
from .agents import InvalidAgentInputError, UnknownAgentError
from .config import Settings, load_settings
from .errors import ConfigError, InboxError
from .logs import configure_logging
from .metrics import CursorState, cursor_states
from .pipeline.triage import load_triage
from .queue import (
    PRIORITIES,
    InvalidInputError,
    ItemDetail,
    QueueDepth,
    QueueFilter,
    QueueItem,
    claim,
    claim_next,
    escalate,
    list_incidents,
    list_items,
    queue_depth,
    show_item,
)
from .queue_text import format_change, format_detail, format_incidents
from .queue_text import format_queue as format_queue  # the demo prints the queue too
from .registry import adapter_plugin
from .resolution import notice_templates, resolve_with_reply
from .scheduler import Daemon, RunReport
from .staff_commands import acting
from .storage.engine import create_engine, database_url
from .storage.migrate import ensure_migrated, upgrade
from .storage.repository import SourceState, outbox_backlog, outbox_problems, source_states

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_CONFIG: Final = 2

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv``) and return the exit code."""
    return asyncio.run(run_cli(argv))


async def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` on the running event loop and return the exit code."""
    args = _parser().parse_args(argv)
    command: Command = args.command
    try:
        return await command(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (InvalidInputError, InvalidAgentInputError, UnknownAgentError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except InboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inbox-daemon", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    default_config = os.environ.get("INBOX_DAEMON_CONFIG", "inbox.toml")

    def command(name: str, handler: Command, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(command=handler)
        if name not in ("demo", "triage"):
            sub.add_argument(
                "--config",
                type=Path,
                default=Path(default_config),
                help="the TOML configuration file (default: $INBOX_DAEMON_CONFIG or inbox.toml)",
            )
        return sub

    run = command("run", _run, "run the daemon: poll sources, store, acknowledge")
    run.add_argument(
        "--once", action="store_true", help="poll every source once, deliver due replies, exit"
    )
    command("check-config", _check_config, "validate the configuration, rules and templates")
    command(
        "check-source", _check_source, "connect to a source, show what it would read, store nothing"
    ).add_argument("name", help="the source's name in the configuration")
    command("migrate", _migrate, "create or upgrade the database schema")
    command("status", _status, "show each source's state and the outbox backlog").add_argument(
        "--json", action="store_true"
    )
    _queue_parsers(commands, Path(default_config))
    staff_commands.add_commands(commands, Path(default_config))
    command("replay", _replay, "classify stored records again after a rules change").add_argument(
        "--since", default="7d", help="how far back: 7d, 48h, 30m (default 7d)"
    )
    report = command(
        "report", _report, "write the retrospective report: an HTML page and CSV files"
    )
    report.add_argument("--since", default="7d", help="how far back: 7d, 48h, 30m (default 7d)")
    report.add_argument("--out", type=Path, required=True, help="the folder to write into")
    triage = command("triage", _triage, "triage a JSONL file of messages (nothing is sent)")
    triage.add_argument("--input", type=Path, required=True, help="JSONL file, or - for stdin")
    triage.add_argument("--config", type=Path, help="folder with inbox.toml, rules and templates")
    demo = command("demo", _demo, "ingest demo mail from local IMAP/SMTP servers, end to end")
    demo.add_argument(
        "--keep", type=Path, help="keep the demo's database and config in this folder"
    )
    demo.add_argument(
        "--serve", action="store_true", help="then serve the queue page on 127.0.0.1 until Ctrl-C"
    )
    demo.add_argument("--port", type=int, default=0, help="the page's port (default: a free one)")
    web = command("web", _web, "serve the queue's HTTP API and web page (no polling)")
    web.add_argument("--host", help="listen on this address (default: web.host)")
    web.add_argument("--port", type=int, help="listen on this port (default: web.port)")
    return parser


async def _check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    load_triage(settings)
    for source in settings.sources:
        adapter_plugin(source.kind)
    print(f"{args.config}: ok ({len(settings.sources)} sources)")
    return EXIT_OK


async def _check_source(args: argparse.Namespace) -> int:
    from .source_check import check_source

    return await check_source(load_settings(args.config), args.name, sys.stdout)


async def _migrate(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    engine = create_engine(database_url(settings.storage.url, settings.config_dir))
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    print("database is up to date")
    return EXIT_OK


async def _run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    configure_logging(settings.service.log_level, settings.service.log_format)
    async with AsyncExitStack() as stack:
        daemon = await Daemon.open(settings, stack)
        if args.once:
            report = await daemon.run_once()
            _print_run(report)
            return EXIT_FAILURE if report.errors else EXIT_OK
        # The web stack loads only when it serves.
        if settings.web.enabled:
            from .web.server import start_web

            await start_web(stack, daemon.engine, settings, metrics=daemon.metrics, live=daemon)
        if settings.metrics.enabled:
            from .web.server import start_metrics_server

            await start_metrics_server(stack, daemon.engine, settings, daemon.metrics)
        await daemon.serve(_stop_on_signals())
    return EXIT_OK


async def _web(args: argparse.Namespace) -> int:
    from .web.server import start_web, stop_signalled

    settings = load_settings(args.config)
    configure_logging(settings.service.log_level, settings.service.log_format)
    async with AsyncExitStack() as stack:
        engine = await _open_engine(settings, stack)
        server = await start_web(stack, engine, settings, host=args.host, port=args.port)
        print(f"serving the queue page and API on {server.url}", flush=True)
        await stop_signalled()
    return EXIT_OK


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


def _print_run(report: RunReport) -> None:
    for name, poll in report.polls.items():
        if not poll.lease_held:
            print(f"{name}: skipped: another process holds its lease")
            continue
        print(
            f"{name}: fetched {poll.fetched}, stored {poll.stored}, "
            f"already stored {poll.absorbed}, "
            f"duplicates {poll.duplicates}, replies queued {poll.replies_queued}, "
            f"dead letters {poll.dead_letters}"
        )
    for name, error in report.errors.items():
        print(f"{name}: FAILED: {error}")
    delivery = report.delivery
    print(f"replies: sent {delivery.sent}, to retry {delivery.retry}, failed {delivery.failed}")
    alerts = report.alerts
    if alerts.queued or alerts.sent or alerts.retry or alerts.failed:
        print(
            f"alerts: new {alerts.queued}, sent {alerts.sent}, to retry {alerts.retry}, "
            f"failed {alerts.failed}"
        )


async def _open_engine(settings: Settings, stack: AsyncExitStack) -> AsyncEngine:
    engine = create_engine(database_url(settings.storage.url, settings.config_dir))
    stack.push_async_callback(engine.dispose)
    await ensure_migrated(engine)
    return engine


def _queue_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], default_config: Path
) -> None:
    """``queue list|show|claim|resolve|escalate`` and ``incidents list``."""

    def action(
        group: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: Command,
        help_text: str,
    ) -> argparse.ArgumentParser:
        sub = group.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(command=handler)
        sub.add_argument("--config", type=Path, default=default_config)
        sub.add_argument("--json", action="store_true", help="print JSON")
        return sub

    queue = commands.add_parser("queue", help="work with the shared queue").add_subparsers(
        required=True, metavar="ACTION"
    )
    listing = action(queue, "list", _queue_list, "list queue items, most urgent first")
    for name in ("team", "priority", "status", "channel", "language", "category"):
        listing.add_argument(f"--{name}", help=_FILTER_HELP.get(name))
    listing.add_argument("--incident", type=int, help="the items of this incident id")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (1-500)")
    listing.add_argument("--after", metavar="CURSOR", help="the page after this cursor")
    showing = action(queue, "show", _queue_show, "show one item in full (audit-logged)")
    showing.add_argument("reference")
    for sub in (listing, showing):
        sub.add_argument(
            "--as", dest="agent", metavar="NAME", help="as this agent sees it (default: all)"
        )
    claiming = action(queue, "claim", _queue_claim, "claim an item (claim again to renew)")
    which = claiming.add_mutually_exclusive_group(required=True)
    which.add_argument("reference", nargs="?")
    which.add_argument("--next", action="store_true", help="the most urgent item of --team")
    claiming.add_argument("--team")
    resolving = action(queue, "resolve", _queue_resolve, "resolve an item")
    resolving.add_argument("reference")
    resolving.add_argument("--note", help="what was done")
    resolving.add_argument(
        "--reply",
        metavar="TEXT",
        help="send TEXT to the customer on their channel and thread, in their language's "
        "template, asking if it is solved (without it the item is resolved silently)",
    )
    escalating = action(queue, "escalate", _queue_escalate, "raise an item's priority")
    escalating.add_argument("reference")
    escalating.add_argument("--priority", required=True, help="P1 (highest) to P4")
    for sub in (claiming, resolving, escalating):
        sub.add_argument("--as", dest="agent", required=True, metavar="NAME", help="who acts")
    staff_commands.add_queue_actions(queue, action)
    incidents = commands.add_parser("incidents", help="incidents: many reports of one problem")
    action(
        incidents.add_subparsers(required=True, metavar="ACTION"),
        "list",
        _incidents_list,
        "list incidents, most recently reported first",
    )


_FILTER_HELP: Final = {
    "priority": "P1 to P4",
    "status": "new, reopened, escalated, claimed, resolved, or open (all but resolved)",
}


async def _queue_list(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    filters = QueueFilter(
        team=args.team,
        priority=args.priority,
        status=args.status,
        channel=args.channel,
        language=args.language,
        category=args.category,
        incident_id=args.incident,
    )
    now = datetime.now(UTC)
    async with AsyncExitStack() as stack:
        engine = await _open_engine(settings, stack)
        _, scope = await acting(engine, settings, args.agent)
        page = await list_items(
            engine, filters, cursor=args.after, limit=args.limit, now=now, scope=scope
        )
    items = [asdict(item) for item in page.items]
    if args.json:
        print(json.dumps(items, default=_json_default, ensure_ascii=False, indent=2))
    else:
        print(format_queue(items, now=now))
    if page.next_cursor:
        print(f"more: --after {page.next_cursor}", file=sys.stderr if args.json else sys.stdout)
    return EXIT_OK


async def _queue_show(args: argparse.Namespace) -> int:
    settings, now = load_settings(args.config), datetime.now(UTC)
    async with AsyncExitStack() as stack:
        engine = await _open_engine(settings, stack)
        actor, scope = await acting(engine, settings, args.agent)
        detail = await show_item(engine, args.reference, now=now, scope=scope, viewer=actor)
    _emit(args, detail, format_detail(detail, now=now))
    return EXIT_OK


async def _queue_claim(args: argparse.Namespace) -> int:
    if args.next != bool(args.team):
        raise InvalidInputError("give --next and --team together, or a reference", field="team")
    settings, now = load_settings(args.config), datetime.now(UTC)
    timeout_s = settings.queue.claim_timeout_s
    async with AsyncExitStack() as stack:
        engine = await _open_engine(settings, stack)
        actor, scope = await acting(engine, settings, args.agent)
        if args.next:
            item = await claim_next(
                engine,
                args.team,
                actor.name,
                claim_timeout_s=timeout_s,
                scope=scope,
                origin=actor.origin,
            )
        else:
            item = await claim(
                engine,
                args.reference,
                actor.name,
                claim_timeout_s=timeout_s,
                scope=scope,
                origin=actor.origin,
            )
    _emit(args, item, format_change(item, now=now))
    return EXIT_OK


async def _queue_resolve(args: argparse.Namespace) -> int:
    settings, now = load_settings(args.config), datetime.now(UTC)
    async with AsyncExitStack() as stack:
        engine = await _open_engine(settings, stack)
        actor, scope = await acting(engine, settings, args.agent)
        item = await resolve_with_reply(
            engine,
            args.reference,
            actor.name,
            reply=args.reply,
            templates=await notice_templates(settings),
            loop_marker=settings.replies.loop_marker,
            note=args.note,
            now=now,
            scope=scope,
            origin=actor.origin,
        )
    _emit(args, item, format_change(item, now=now))
    return EXIT_OK


async def _queue_escalate(args: argparse.Namespace) -> int:
    settings, now = load_settings(args.config), datetime.now(UTC)
    async with AsyncExitStack() as stack:
        engine = await _open_engine(settings, stack)
        actor, scope = await acting(engine, settings, args.agent)
        item = await escalate(
            engine,
            args.reference,
            args.priority,
            actor.name,
            sla_s=settings.queue.sla_s,
            now=now,
            scope=scope,
            origin=actor.origin,
        )
    _emit(args, item, format_change(item, now=now))
    return EXIT_OK


async def _incidents_list(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    async with AsyncExitStack() as stack:
        found = await list_incidents(await _open_engine(settings, stack))
    if args.json:
        print(json.dumps([asdict(i) for i in found], default=_json_default, indent=2))
    else:
        print(format_incidents(found))
    return EXIT_OK


def _emit(args: argparse.Namespace, result: QueueItem | ItemDetail, text: str) -> None:
    """Print ``result`` (a dataclass) as JSON when ``--json`` was given, else ``text``."""
    if args.json:
        print(json.dumps(asdict(result), default=_json_default, ensure_ascii=False, indent=2))
    else:
        print(text)


async def _status(args: argparse.Namespace) -> int:
    settings, now = load_settings(args.config), datetime.now(UTC)
    async with AsyncExitStack() as stack:
        engine = await _open_engine(settings, stack)
        positions = await cursor_states(engine)
        document = {
            "sources": [
                _source_status(state, positions.get(state.name), now)
                for state in await source_states(engine)
            ],
            "outbox": await outbox_backlog(engine),
            "outbox_errors": await outbox_problems(engine),
            "queue_open": _open_items(await queue_depth(engine)),
        }
    if args.json:
        print(json.dumps(document, default=_json_default, indent=2))
    else:
        print(format_status(document))
    return EXIT_OK


def _source_status(state: SourceState, cursor: CursorState | None, now: datetime) -> dict[str, Any]:
    """A source's state row, whether it rests now, and its cursor's short form."""
    resting = state.backoff_until is not None and state.backoff_until > now
    position = None
    if cursor is not None:
        position = {
            "summary": cursor.summary,
            "version": cursor.version,
            "updated_at": cursor.updated_at,
        }
    return {**vars_of(state), "in_backoff": resting, "cursor": position}


def _open_items(depths: Sequence[QueueDepth]) -> list[dict[str, Any]]:
    """Open queue items by team and priority (every waiting or claimed state together)."""
    totals: dict[tuple[str, str], int] = {}
    for depth in depths:
        key = (depth.team, depth.priority)
        totals[key] = totals.get(key, 0) + depth.items
    return [
        {"team": team, "priority": priority, "items": items}
        for (team, priority), items in sorted(totals.items())
    ]


def format_status(document: dict[str, Any]) -> str:
    """The status report as text: sources, outbox backlog, replies in trouble, open items."""
    lines = [line for source in document["sources"] for line in _source_lines(source)]
    backlog = document["outbox"]
    lines.append(
        "outbox: " + (", ".join(f"{k} {v}" for k, v in sorted(backlog.items())) or "empty")
    )
    for row in document["outbox_errors"]:
        lines.append(
            f"  reply {row['id']} ({row['source']}): {row['state']} after {row['attempts']} "
            f"attempts, next attempt {row['next_attempt_at']}: {row['last_error']}"
        )
    lines.extend(_queue_lines(document["queue_open"]))
    return "\n".join(lines)


def _source_lines(source: dict[str, Any]) -> list[str]:
    line = (
        f"{source['name']} ({source['kind']}): {source['state']}; "
        f"last poll {source['last_poll_at'] or 'never'}; "
        f"last success {source['last_success_at'] or 'never'}; "
        f"fetched {source['fetched_total']}"
    )
    if source["last_error"]:
        line += (
            f"; failing x{source['consecutive_failures']}: {source['last_error']}; "
            f"next try after {source['backoff_until']}"
        )
    cursor = source["cursor"]
    position = (
        f"{cursor['summary']} (version {cursor['version']}, moved {cursor['updated_at']})"
        if cursor
        else "none yet (nothing committed)"
    )
    resting = f"until {source['backoff_until']}" if source["in_backoff"] else "no"
    return [line, f"  cursor: {position}", f"  backoff: {resting}"]


def _queue_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Open items as a table: a row per team, a column per priority."""
    if not rows:
        return ["open queue items: none"]
    counts = {(row["team"], row["priority"]): row["items"] for row in rows}
    teams = sorted({row["team"] for row in rows})
    width = max(len("team"), *(len(team) for team in teams))
    lines = [
        "open queue items:",
        "  " + "team".ljust(width) + "".join(f"{p:>6}" for p in PRIORITIES),
    ]
    for team in teams:
        cells = "".join(f"{counts.get((team, p), 0):>6}" for p in PRIORITIES)
        lines.append(f"  {team.ljust(width)}{cells}")
    return lines


def vars_of(state: object) -> dict[str, Any]:
    """A slotted dataclass as a dict."""
    return {name: getattr(state, name) for name in state.__slots__}  # type: ignore[attr-defined]


def _json_default(value: object) -> str:
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


async def _replay(args: argparse.Namespace) -> int:
    from .ingest import utcnow
    from .replay import replay

    settings = load_settings(args.config)
    since = utcnow() - _duration(args.since)
    async with AsyncExitStack() as stack:
        engine = await _open_engine(settings, stack)
        report = await replay(
            engine, load_triage(settings), since=since, sla_s=settings.queue.sla_s
        )
    print(
        f"replayed {report.records} records since {since:%Y-%m-%d %H:%M} UTC: "
        f"{report.relabelled} relabelled, {report.incidents} incidents; no reply was sent"
    )
    return EXIT_OK


async def _report(args: argparse.Namespace) -> int:
    from .report import build_report
    from .web.report_page import write_report  # matplotlib loads only when asked for

    settings = load_settings(args.config)
    until = datetime.now(UTC)
    since = until - _duration(args.since)
    async with AsyncExitStack() as stack:
        engine = await _open_engine(settings, stack)
        report = await build_report(engine, since=since, until=until)
    written = await asyncio.to_thread(write_report, report, args.out)
    print(f"report of {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC:")
    for path in written:
        print(f"  {path}")
    return EXIT_OK


def _duration(text: str) -> timedelta:
    units = {"d": "days", "h": "hours", "m": "minutes"}
    try:
        return timedelta(**{units[text[-1]]: float(text[:-1])})
    except (KeyError, ValueError):
        raise ConfigError(f"--since {text!r}: expected a number and d, h or m, e.g. 7d") from None


async def _triage(args: argparse.Namespace) -> int:
    from .evaluation import settings_for, triage_file

    settings = settings_for(args.config)
    if str(args.input) == "-":
        await triage_file(sys.stdin, sys.stdout, settings=settings)
        return EXIT_OK
    try:
        with args.input.open(encoding="utf-8") as source:
            await triage_file(source, sys.stdout, settings=settings)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(args.input)) from exc
    return EXIT_OK


async def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo  # the demo's servers load only when asked for

    return await run_demo(keep=args.keep, serve=args.serve, port=args.port)


if __name__ == "__main__":
    raise SystemExit(main())
