"""Logs are JSON lines on the stderr of the moment, with source and stage, never a body."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from inbox_daemon.logs import configure_logging
from inbox_daemon.loopback.imap import LoopbackImapServer
from inbox_daemon.loopback.smtp import LoopbackSmtpServer
from inbox_daemon.storage.schema import feedback_records
from tests.daemon import migrated_engine


def test_logs_follow_stderr_when_it_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    first = io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    configure_logging("INFO", "json")
    first.close()  # a test runner closes the stream it captured with
    later = io.StringIO()
    monkeypatch.setattr("sys.stderr", later)
    try:
        logging.getLogger("inbox_daemon.test").warning("stored %d records", 3)
    finally:
        logging.getLogger().handlers.clear()
    line = json.loads(later.getvalue())
    assert line["message"] == "stored 3 records"
    assert line["level"] == "WARNING"


PASSWORD = "Tr0ub4dor&3xyz"
SEED_PHRASE = "abandon ability able about above absent absorb abstract absurd abuse access accident"
SUBJECT = "Locked out after the lavender kestrel update"
BODY = (
    "Hello, I cannot log in since this morning and my withdrawal is stuck.\r\n"
    f"My password is {PASSWORD} and my recovery words are: {SEED_PHRASE}.\r\n"
    "Please call me back before the heron parade.\r\n"
)
#: What the sender wrote, in pieces: none may reach a log line.
CUSTOMER_TEXT = (
    "cannot log in since this morning",
    "heron parade",
    "lavender kestrel",
    "carla.ruiz",
    PASSWORD,
    *(" ".join(SEED_PHRASE.split()[n : n + 2]) for n in range(0, 12, 2)),
)


async def test_a_real_ingest_logs_json_lines_with_references_never_a_body_or_secret(
    tmp_path: Path, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with LoopbackImapServer() as imap, LoopbackSmtpServer() as smtp:
        await imap.append(
            "INBOX",
            (
                "Message-ID: <locked-1@example.net>\r\nDate: Mon, 23 Nov 2026 08:00:00 +0000\r\n"
                f"From: Carla Ruiz <carla.ruiz@example.net>\r\nTo: support@example.com\r\n"
                f"Subject: {SUBJECT}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{BODY}"
            ).encode(),
        )
        monkeypatch.setenv("LOGS_IMAP_PASSWORD", imap.password)
        path = service_config(tmp_path, database, imap, smtp)
        assert (await inbox_daemon("migrate", "--config", str(path))).returncode == 0
        run = await inbox_daemon("run", "--once", "--config", str(path))
        assert run.returncode == 0, run.stderr
        await smtp.wait_for(1, timeout_s=30)
        async with migrated_engine(path) as engine, engine.connect() as conn:
            stored = (
                await conn.execute(select(feedback_records.c.reference, feedback_records.c.text))
            ).all()

    [(reference, text)] = stored
    assert "[REDACTED:password]" in text  # the mail held what the logs are searched for
    assert "[REDACTED:seed_phrase]" in text
    lines = [json.loads(line) for line in run.stderr.splitlines() if line.strip()]
    assert lines and all(isinstance(line, dict) for line in lines)
    for line in lines:
        flat = json.dumps(line, ensure_ascii=False).lower()
        leaked = [piece for piece in CUSTOMER_TEXT if piece.lower() in flat]
        assert not leaked, f"{leaked} logged in {line}"
    [record] = [line for line in lines if line["message"] == "record stored"]
    assert (record["source"], record["stage"], record["reference"]) == (
        "support-mail",
        "commit",
        reference,
    )
    assert record["redactions"] == {"password": 1, "seed_phrase": 1}
    [batch] = [line for line in lines if line["message"] == "batch stored" and line["stored"]]
    assert (batch["source"], batch["stage"]) == ("support-mail", "commit")
    # The adapter's lines name the source too, though it never passes it (its sent reply).
    [sent] = [line for line in lines if line["logger"] == "inbox_email.smtp"]
    assert sent["message"].startswith("acknowledgment") and sent["source"] == "support-mail"


@dataclass(frozen=True)
class Finished:
    returncode: int
    stderr: str


async def inbox_daemon(*args: str) -> Finished:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "inbox_daemon.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Finished(process.returncode, stderr.decode())


def service_config(
    tmp_path: Path, database: str, imap: LoopbackImapServer, smtp: LoopbackSmtpServer
) -> Path:
    path = tmp_path / "inbox.toml"
    path.write_text(
        f"""
config_version = 1
[storage]
url = "{database}"
[replies]
max_ack_age_s = 315360000
[service]
log_format = "json"
log_level = "INFO"
[[sources]]
name = "support-mail"
kind = "imap"
host = "{imap.host}"
port = {imap.port}
security = "none"
username = "{imap.username}"
password_env = "LOGS_IMAP_PASSWORD"
backfill_days = 36500
timeout_s = 10
[sources.smtp]
host = "{smtp.host}"
port = {smtp.port}
security = "none"
from_address = "support@example.com"
""",
        encoding="utf-8",
    )
    return path
