"""``inbox-daemon demo``: the daemon on this machine, end to end, with real servers.

It starts a real IMAP server (pymap) and a real SMTP server (aiosmtpd) on free loopback
ports and delivers the support mails of ``config/demo/`` to the folders ``mailbox.toml``
names; it starts the loopback X API (:mod:`inbox_daemon.loopback.x_api`, the tests' server)
with the mentions, DMs and brand-search post of ``config/demo/x.toml``. It runs the daemon
once over both sources against a fresh SQLite database, and prints the queue and every
acknowledgment decision, as the SMTP server and the X API received them. Nothing is left
running, unless ``--serve`` asks for the queue page: then the demo's database is served on
127.0.0.1 until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import tomllib
from collections.abc import Sequence
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from importlib.resources import files
from pathlib import Path
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from .agents import AgentConflictError, add_agent, issue_token
from .audit import cli_actor
from .cli import format_queue
from .config import load_settings
from .loopback.imap import LoopbackImapServer
from .loopback.smtp import LoopbackSmtpServer, ReceivedMail
from .loopback.x_api import LoopbackXApi, XUser
from .scheduler import Daemon, RunReport
from .storage.engine import create_engine, database_url
from .storage.migrate import upgrade
from .storage.repository import acknowledgment_decisions, queue_listing

#: The variable the demo's config names for the IMAP password (the name, not a secret).
PASSWORD_ENV: Final = "INBOX_DEMO_IMAP_PASSWORD"  # noqa: S105
#: The variables the demo's config names for the X API's credentials (the loopback server
#: takes any value).
X_TOKEN_ENVS: Final = {
    "bearer_token_env": "INBOX_DEMO_X_BEARER",
    "consumer_key_env": "INBOX_DEMO_X_CONSUMER_KEY",
    "consumer_secret_env": "INBOX_DEMO_X_CONSUMER_SECRET",
    "access_token_env": "INBOX_DEMO_X_ACCESS_TOKEN",
    "access_token_secret_env": "INBOX_DEMO_X_ACCESS_SECRET",
}
#: The agent ``demo --serve`` signs in as: a lead, who sees the items of every team.
DEMO_AGENT: Final = "demo-lead"

_X_ACCOUNT: Final = XUser("1000", "exchange_support", "Example Exchange Support")

_CONFIG: Final = """\
config_version = 1

[storage]
url = "sqlite:///./inbox.db"

[replies]
ticket_url = "https://support.example.com/new?ref={{reference}}"
# The demo mails are dated November 2026; a real first run acknowledges nothing older
# than two days (the default).
max_ack_age_s = 315360000

[service]
log_format = "text"
log_level = "WARNING"

[web]
host = "127.0.0.1"

[[sources]]
name = "support-mail"
kind = "imap"
host = "{imap_host}"
port = {imap_port}
security = "none"
username = "{username}"
password_env = "{password_env}"
folders = ["INBOX", "Escalations"]
backfill_days = 36500
timeout_s = 20

[sources.smtp]
host = "{smtp_host}"
port = {smtp_port}
security = "none"
from_address = "support@example.com"
from_name = "Example Exchange Support"

[[sources]]
name = "x-support"
kind = "twitter"
handle = "@exchange_support"
api_base_url = "{x_api_url}"
user_auth = "oauth1"
{x_credentials}
direct_messages = true
searches = [{{ name = "brand", query = "\\"Example Exchange\\" -is:retweet" }}]
timeout_s = 20
"""


@dataclass(frozen=True, slots=True)
class DemoRun:
    """What :func:`ingest_demo` did: the config it wrote and the daemon's one run."""

    config_path: Path
    delivered: int
    imap_address: str
    smtp_address: str
    report: RunReport
    received: tuple[ReceivedMail, ...]
    x_api_address: str = ""
    #: Found on X: mentions, DMs and search hits.
    x_found: int = 0
    #: What the daemon sent on X: ("reply" or "DM", to whom, the text).
    x_sent: tuple[tuple[str, str, str], ...] = ()


async def run_demo(*, keep: Path | None = None, serve: bool = False, port: int = 0) -> int:
    """Run the demo end to end; with ``serve``, then serve the queue page until a signal.

    ``port`` 0 serves on a free port. Returns the exit code.
    """
    with tempfile.TemporaryDirectory(prefix="inbox-demo-") as scratch:
        folder = keep or Path(scratch)
        run = await ingest_demo(folder, resolve_some=True)
        print(f"IMAP server (pymap) on {run.imap_address}: delivered {run.delivered} mails")
        print(f"SMTP server (aiosmtpd) on {run.smtp_address}")
        print(f"X API (loopback) on {run.x_api_address}: {run.x_found} posts and DMs\n")
        _print_run(run.report)
        await _report(run.config_path, list(run.received))
        _report_x(run)
        if keep is not None:
            await _write_demo_report(run.config_path, keep / "report")
        if serve:
            await _serve(run.config_path, port)
    return 0


async def ingest_demo(
    folder: Path, *, extra_mail: Sequence[bytes] = (), resolve_some: bool = False
) -> DemoRun:
    """Ingest the demo mail into a fresh SQLite database in ``folder``, through real servers.

    The demo mail (and ``extra_mail``, raw messages delivered to INBOX after it) goes to a
    loopback IMAP server; the daemon runs once over it, acknowledging through a loopback
    SMTP server. With ``resolve_some``, an agent then resolves a few items with a reply
    (:data:`DEMO_RESOLUTIONS`) and customers answer the survey, so the retrospective report
    has something to show. Both servers are stopped on return; ``folder`` keeps the config
    and database.
    """
    folder.mkdir(parents=True, exist_ok=True)
    async with AsyncExitStack() as stack:
        imap = await stack.enter_async_context(LoopbackImapServer())
        smtp = await stack.enter_async_context(LoopbackSmtpServer())
        x_api = await stack.enter_async_context(LoopbackXApi(_X_ACCOUNT))
        delivered = await _deliver_demo_mail(imap)
        for raw in extra_mail:
            await imap.append("INBOX", raw)
        x_found = _post_demo_x(x_api, datetime.now(UTC))
        config_path = _write_config(folder, imap, smtp, x_api)
        report = await _ingest(config_path)
        if resolve_some:
            await resolve_demo_items(config_path, imap, smtp)
        return DemoRun(
            config_path,
            delivered + len(extra_mail),
            f"{imap.host}:{imap.port}",
            f"{smtp.host}:{smtp.port}",
            report,
            tuple(smtp.received),
            x_api.base_url.removeprefix("http://"),
            x_found,
            _sent_on_x(x_api),
        )


async def _deliver_demo_mail(imap: LoopbackImapServer) -> int:
    demo = files("inbox_daemon.bundled_config") / "demo"
    manifest = tomllib.loads((demo / "mailbox.toml").read_text(encoding="utf-8"))
    count = 0
    for entry in manifest["mail"]:
        # IMAP literals end lines with CRLF (RFC 3501); the files are stored with LF.
        raw = (demo / entry["file"]).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        for folder in entry["folders"]:
            await imap.append(folder, raw)
            count += 1
    return count


def _post_demo_x(x_api: LoopbackXApi, now: datetime) -> int:
    """Publish ``config/demo/x.toml`` on the loopback X API; how many posts and DMs."""
    scenario = tomllib.loads(
        (files("inbox_daemon.bundled_config") / "demo" / "x.toml").read_text(encoding="utf-8")
    )
    users = {u["username"]: x_api.add_user(u["username"], u["name"]) for u in scenario["users"]}
    posted: list[str] = []
    for post in scenario["posts"]:
        reply_to = posted[post["reply_to"]] if "reply_to" in post else None
        at = now - timedelta(minutes=post["minutes_ago"])
        posted.append(
            x_api.post(
                users[post["author"]],
                post["text"],
                at=at,
                reply_to=reply_to,
                media=post.get("media", ()),
            )
        )
    for dm in scenario["dms"]:
        at = now - timedelta(minutes=dm["minutes_ago"])
        x_api.add_dm(users[dm["author"]], dm["text"], at=at)
    return len(posted) + len(scenario["dms"])


def _sent_on_x(x_api: LoopbackXApi) -> tuple[tuple[str, str, str], ...]:
    def handle(user_id: str) -> str:
        user = x_api.users.get(user_id)
        return f"@{user.username}" if user else user_id

    replies = [
        ("reply", handle(x_api.tweets[r["in_reply_to_tweet_id"]]["author_id"]), r["text"])
        for r in x_api.replies
        if r.get("in_reply_to_tweet_id") in x_api.tweets
    ]
    dms = [("DM", handle(dm["recipient_id"]), dm["text"]) for dm in x_api.sent_dms]
    return tuple(replies + dms)


def _write_config(
    folder: Path, imap: LoopbackImapServer, smtp: LoopbackSmtpServer, x_api: LoopbackXApi
) -> Path:
    os.environ[PASSWORD_ENV] = imap.password
    for variable in X_TOKEN_ENVS.values():
        os.environ[variable] = "demo"  # the loopback X API accepts any credentials
    path = folder / "inbox.toml"
    path.write_text(
        _CONFIG.format(
            imap_host=imap.host,
            imap_port=imap.port,
            username=imap.username,
            password_env=PASSWORD_ENV,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            x_api_url=x_api.base_url,
            x_credentials="\n".join(f'{key} = "{env}"' for key, env in X_TOKEN_ENVS.items()),
        ),
        encoding="utf-8",
    )
    return path


async def _ingest(config_path: Path) -> RunReport:
    settings = load_settings(config_path)
    engine = create_engine(database_url(settings.storage.url, settings.config_dir))
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    async with AsyncExitStack() as stack:
        daemon = await Daemon.open(settings, stack)
        return await daemon.run_once()


#: What the demo's agent answers, and what the customers answer back (``None``: no answer).
#: The last is resolved silently: nothing is sent.
DEMO_RESOLUTIONS: Final = (
    ("Your withdrawal was sent; it is confirmed on the network now.", "Solved, thank you! 5"),
    ("We credited your deposit after checking the transaction.", "Still not solved. 2"),
    ("We have unlocked your account; please change your password.", None),
    (None, None),
)


async def resolve_demo_items(
    config_path: Path, imap: LoopbackImapServer, smtp: LoopbackSmtpServer
) -> None:
    """Resolve the first acknowledged e-mail items (:data:`DEMO_RESOLUTIONS`), deliver the
    notices, and let customers answer some of them on the notice's thread."""
    from .resolution import notice_templates, resolve_with_reply

    settings = load_settings(config_path)
    engine = create_engine(database_url(settings.storage.url, settings.config_dir))
    try:
        items = [
            row
            for row in await queue_listing(engine)
            if row["channel"] == "email" and row["ack_decision"] == "send"
        ]
        templates = await notice_templates(settings)
        for row, (reply, _) in zip(items, DEMO_RESOLUTIONS, strict=False):
            await resolve_with_reply(
                engine,
                row["reference"],
                DEMO_AGENT,
                reply=reply,
                templates=templates,
                loop_marker=settings.replies.loop_marker,
                origin="demo",
            )
    finally:
        await engine.dispose()
    sent_before = len(smtp.received)
    await _run_once(config_path)
    answers = [answer for reply, answer in DEMO_RESOLUTIONS if reply is not None]
    for mail, answer in zip(smtp.received[sent_before:], answers, strict=False):
        if answer is not None:
            await imap.append("INBOX", _survey_answer(mail, answer))
    await _run_once(config_path)


def _survey_answer(notice: ReceivedMail, text: str) -> bytes:
    """The customer's reply to ``notice``, threaded to it, saying ``text``."""
    sent = message_from_bytes(notice.data, policy=policy.default)
    answer = EmailMessage()
    answer["Message-ID"] = make_msgid(domain="example.net")
    answer["Date"] = formatdate(usegmt=True)
    answer["From"] = notice.rcpt_tos[0]
    answer["To"] = str(sent["From"])
    answer["Subject"] = f"Re: {sent['Subject']}"
    answer["In-Reply-To"] = str(sent["Message-ID"])
    answer["References"] = f"{sent['References'] or ''} {sent['Message-ID']}".strip()
    answer.set_content(text)
    return bytes(answer).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


async def _run_once(config_path: Path) -> RunReport:
    async with AsyncExitStack() as stack:
        daemon = await Daemon.open(load_settings(config_path), stack)
        return await daemon.run_once()


def _print_run(report: RunReport) -> None:
    for name, poll in report.polls.items():
        print(
            f"source {name}: fetched {poll.fetched}, stored {poll.stored}, "
            f"already stored {poll.absorbed}, duplicates {poll.duplicates}, "
            f"dead letters {poll.dead_letters}"
        )
    for name, error in report.errors.items():
        print(f"source {name}: FAILED: {error}")
    print(
        f"acknowledgments: sent {report.delivery.sent}, to retry {report.delivery.retry}, "
        f"failed {report.delivery.failed}\n"
    )


async def _report(config_path: Path, received: list[ReceivedMail]) -> None:
    settings = load_settings(config_path)
    engine = create_engine(database_url(settings.storage.url, settings.config_dir))
    try:
        items, decisions = await queue_listing(engine), await acknowledgment_decisions(engine)
    finally:
        await engine.dispose()
    print("THE QUEUE")
    print(format_queue(items))
    print(
        f"\nMAIL SENT ({len(received)}): acknowledgments, then resolution notices, "
        "as the SMTP server received them"
    )
    for mail in received:
        parsed = message_from_bytes(mail.data, policy=policy.default)
        print(f"  to {', '.join(mail.rcpt_tos):<32} {parsed['Subject']}")
    print("\nACKNOWLEDGMENTS WITHHELD")
    for row in decisions:
        if row["ack_decision"] != "send":
            print(f"  {row['reference']}  {row['sender'][:32]:<32} {row['ack_reason']}")


async def _write_demo_report(config_path: Path, folder: Path) -> None:
    """The retrospective report of everything the demo stored, written into ``folder``."""
    from .report import build_report, earliest_record
    from .web.report_page import write_report  # matplotlib loads only when asked for

    settings = load_settings(config_path)
    engine = create_engine(database_url(settings.storage.url, settings.config_dir))
    try:
        until = datetime.now(UTC) + timedelta(seconds=1)
        since = await earliest_record(engine) or until
        report = await build_report(engine, since=since, until=until)
    finally:
        await engine.dispose()
    written = await asyncio.to_thread(write_report, report, folder)
    print(f"\nTHE RETROSPECTIVE REPORT: {written[0]} (and {len(written) - 1} CSV files)")


def _report_x(run: DemoRun) -> None:
    print(f"\nACKNOWLEDGMENTS SENT ON X ({len(run.x_sent)}), as the X API received them")
    for how, to, text in run.x_sent:
        print(f"  {how:<5} to {to:<26} {_first_line(text)}")


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 90 else line[:89] + "…"


async def _serve(config_path: Path, port: int) -> None:
    """Serve the demo's database on 127.0.0.1 until SIGINT or SIGTERM."""
    from .web.server import start_web, stop_signalled  # the web stack loads only when asked for

    settings = load_settings(config_path)
    async with AsyncExitStack() as stack:
        engine = create_engine(database_url(settings.storage.url, settings.config_dir))
        stack.push_async_callback(engine.dispose)
        token = await demo_token(engine)
        server = await start_web(stack, engine, settings, port=port)
        print(f"\nTHE QUEUE PAGE: {server.url}")
        print(f"  sign in as {DEMO_AGENT} (a lead: every team's items) with the token {token}")
        print("  Ctrl-C stops it.", flush=True)
        await stop_signalled()


async def demo_token(engine: AsyncEngine) -> str:
    """A fresh day-long token for the demo's lead, added to the agents if need be."""
    actor = cli_actor()
    with suppress(AgentConflictError):  # a kept demo folder was served before
        await add_agent(engine, DEMO_AGENT, "customer_service", role="lead", actor=actor)
    issued = await issue_token(engine, DEMO_AGENT, ttl_days=1, actor=actor)
    return issued.token
