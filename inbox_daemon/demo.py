"""``inbox-daemon demo``: the whole e-mail path on this machine, with real servers.

It starts a real IMAP server (pymap) and a real SMTP server (aiosmtpd) on free loopback
ports, delivers the support mails of ``config/demo/`` to the folders ``mailbox.toml`` names,
runs the daemon once over them against a fresh SQLite database, and prints the queue and
every acknowledgment decision. Nothing is left running, unless ``--serve`` asks for the
queue page: then the demo's database is served on 127.0.0.1 until Ctrl-C.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import tomllib
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from email import message_from_bytes, policy
from importlib.resources import files
from pathlib import Path
from typing import Final

from .cli import format_queue
from .config import load_settings
from .loopback.imap import LoopbackImapServer
from .loopback.smtp import LoopbackSmtpServer, ReceivedMail
from .scheduler import Daemon, RunReport
from .storage.engine import create_engine, database_url
from .storage.migrate import upgrade
from .storage.repository import acknowledgment_decisions, queue_listing

#: The variable the demo's config names for the IMAP password (the name, not a secret).
PASSWORD_ENV: Final = "INBOX_DEMO_IMAP_PASSWORD"  # noqa: S105
#: The variable the demo's config names for the web API's bearer token.
WEB_TOKEN_ENV: Final = "INBOX_DEMO_WEB_TOKEN"  # noqa: S105

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
token_env = "{web_token_env}"

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


async def run_demo(*, keep: Path | None = None, serve: bool = False, port: int = 0) -> int:
    """Run the demo end to end; with ``serve``, then serve the queue page until a signal.

    ``port`` 0 serves on a free port. Returns the exit code.
    """
    with tempfile.TemporaryDirectory(prefix="inbox-demo-") as scratch:
        folder = keep or Path(scratch)
        run = await ingest_demo(folder)
        print(f"IMAP server (pymap) on {run.imap_address}: delivered {run.delivered} mails")
        print(f"SMTP server (aiosmtpd) on {run.smtp_address}\n")
        _print_run(run.report)
        await _report(run.config_path, list(run.received))
        if serve:
            await _serve(run.config_path, port)
    return 0


async def ingest_demo(folder: Path, *, extra_mail: Sequence[bytes] = ()) -> DemoRun:
    """Ingest the demo mail into a fresh SQLite database in ``folder``, through real servers.

    The demo mail (and ``extra_mail``, raw messages delivered to INBOX after it) goes to a
    loopback IMAP server; the daemon runs once over it, acknowledging through a loopback
    SMTP server. Both servers are stopped on return; ``folder`` keeps the config and database.
    """
    folder.mkdir(parents=True, exist_ok=True)
    async with AsyncExitStack() as stack:
        imap = await stack.enter_async_context(LoopbackImapServer())
        smtp = await stack.enter_async_context(LoopbackSmtpServer())
        delivered = await _deliver_demo_mail(imap)
        for raw in extra_mail:
            await imap.append("INBOX", raw)
        config_path = _write_config(folder, imap, smtp)
        report = await _ingest(config_path)
        return DemoRun(
            config_path,
            delivered + len(extra_mail),
            f"{imap.host}:{imap.port}",
            f"{smtp.host}:{smtp.port}",
            report,
            tuple(smtp.received),
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


def _write_config(folder: Path, imap: LoopbackImapServer, smtp: LoopbackSmtpServer) -> Path:
    os.environ[PASSWORD_ENV] = imap.password
    path = folder / "inbox.toml"
    path.write_text(
        _CONFIG.format(
            imap_host=imap.host,
            imap_port=imap.port,
            username=imap.username,
            password_env=PASSWORD_ENV,
            web_token_env=WEB_TOKEN_ENV,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
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
    print(f"\nACKNOWLEDGMENTS SENT ({len(received)}), as the SMTP server received them")
    for mail in received:
        parsed = message_from_bytes(mail.data, policy=policy.default)
        print(f"  to {', '.join(mail.rcpt_tos):<32} {parsed['Subject']}")
    print("\nACKNOWLEDGMENTS WITHHELD")
    for row in decisions:
        if row["ack_decision"] != "send":
            print(f"  {row['reference']}  {row['sender'][:32]:<32} {row['ack_reason']}")


async def _serve(config_path: Path, port: int) -> None:
    """Serve the demo's database on 127.0.0.1 until SIGINT or SIGTERM."""
    from .web.server import start_web, stop_signalled  # the web stack loads only when asked for

    token = os.environ[WEB_TOKEN_ENV] = secrets.token_urlsafe(18)
    settings = load_settings(config_path)
    async with AsyncExitStack() as stack:
        engine = create_engine(database_url(settings.storage.url, settings.config_dir))
        stack.push_async_callback(engine.dispose)
        server = await start_web(stack, engine, settings, port=port)
        print(f"\nTHE QUEUE PAGE: {server.url}")
        print(f"  sign in with any name and the token {token}")
        print("  Ctrl-C stops it.", flush=True)
        await stop_signalled()
