"""`inbox-daemon run` as a service: scheduled polls, replies, structured logs, clean SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from inbox_daemon.loopback.imap import LoopbackImapServer
from inbox_daemon.loopback.smtp import LoopbackSmtpServer
from inbox_daemon.storage.schema import cursors, feedback_records
from tests.daemon import migrated_engine
from tests.faults import free_port
from tests.peers import CuttingProxy, SlowProxy

pytestmark = pytest.mark.timeout(90)

MAIL = (
    b"Message-ID: <svc-1@example.net>\r\nDate: Mon, 23 Nov 2026 08:00:00 +0000\r\n"
    b"From: Carla Diaz <carla@example.net>\r\nTo: support@example.com\r\n"
    b"Subject: Deposit not credited\r\n\r\n"
    b"My USDT deposit is not credited yet, private words here.\r\n"
)


def config(tmp_path: Path, imap: LoopbackImapServer, smtp: LoopbackSmtpServer) -> Path:
    path = tmp_path / "inbox.toml"
    path.write_text(
        f"""
config_version = 1
[storage]
url = "sqlite:///./inbox.db"
[replies]
max_ack_age_s = 315360000
[outbox]
poll_interval_s = 0.2
[service]
shutdown_grace_s = 5
[[sources]]
name = "support-mail"
kind = "imap"
host = "{imap.host}"
port = {imap.port}
security = "none"
username = "{imap.username}"
password_env = "SERVICE_IMAP_PASSWORD"
poll_interval_s = 0.3
timeout_s = 5
[sources.smtp]
host = "{smtp.host}"
port = {smtp.port}
security = "none"
from_address = "support@example.com"
""",
        encoding="utf-8",
    )
    return path


async def inbox_daemon(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "inbox_daemon.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SERVICE_IMAP_PASSWORD": "demopass"},
    )


async def test_service_polls_replies_logs_json_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    async with LoopbackImapServer() as imap, LoopbackSmtpServer() as smtp:
        path = config(tmp_path, imap, smtp)
        migrate = await inbox_daemon("migrate", "--config", str(path))
        assert await migrate.wait() == 0
        service = await inbox_daemon("run", "--config", str(path))
        try:
            await imap.append("INBOX", MAIL)  # arrives while the service runs
            [ack] = await smtp.wait_for(1, timeout_s=30)
            assert ack.rcpt_tos == ("carla@example.net",)
        finally:
            service.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(service.communicate(), timeout=20)
        assert service.returncode == 0, stderr.decode()
    lines = [json.loads(line) for line in stderr.decode().splitlines() if line.strip()]
    stored = [line for line in lines if line["message"] == "batch stored" and line["stored"]]
    assert stored
    assert stored[0]["source"] == "support-mail"
    assert stored[0]["stage"] == "commit"
    assert "private words" not in stderr.decode()


async def test_run_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    async with LoopbackImapServer() as imap, LoopbackSmtpServer() as smtp:
        service = await inbox_daemon("run", "--once", "--config", str(config(tmp_path, imap, smtp)))
        _, stderr = await asyncio.wait_for(service.communicate(), timeout=30)
    assert service.returncode == 1
    assert b"inbox-daemon migrate" in stderr


def mail(number: int, sender: str, subject: str, text: str) -> bytes:
    return (
        f"Message-ID: <svc-{number}@example.net>\r\n"
        f"Date: Mon, 23 Nov 2026 08:0{number}:00 +0000\r\n"
        f"From: {sender}\r\nTo: support@example.com\r\nSubject: {subject}\r\n\r\n{text}\r\n"
    ).encode()


async def log_line(service: asyncio.subprocess.Process, message: str) -> dict:
    """The next JSON log line of ``service`` whose message is ``message``."""
    assert service.stderr is not None
    while True:
        raw = await asyncio.wait_for(service.stderr.readline(), timeout=30)
        assert raw, f"the service ended before logging {message!r}"
        line = json.loads(raw)
        if line["message"] == message:
            return line


async def test_sighup_applies_a_new_config_and_keeps_the_old_one_when_the_new_is_bad(
    tmp_path: Path,
) -> None:
    async with LoopbackImapServer() as imap, LoopbackSmtpServer() as smtp:
        path = config(tmp_path, imap, smtp)
        first = path.read_text(encoding="utf-8")
        migrate = await inbox_daemon("migrate", "--config", str(path))
        assert await migrate.wait() == 0
        service = await inbox_daemon("run", "--config", str(path))
        try:
            await imap.append("INBOX", mail(1, "ana@example.net", "Deposit", "USDT deposit late"))
            await smtp.wait_for(1, timeout_s=30)

            # A second source, the team's escalations folder, is added while running.
            second = first.replace('name = "support-mail"', 'name = "escalations"').replace(
                "timeout_s = 5", 'timeout_s = 5\nfolders = ["Escalations"]'
            )
            path.write_text(first + second[second.index("[[sources]]") :], encoding="utf-8")
            await imap.append("Escalations", mail(2, "bo@example.net", "Login", "Cannot log in"))
            service.send_signal(signal.SIGHUP)
            reloaded = await log_line(service, "configuration reloaded")
            assert (reloaded["started"], reloaded["stopped"]) == (["escalations"], [])
            received = await smtp.wait_for(2, timeout_s=30)
            assert received[1].rcpt_tos == ("bo@example.net",)

            # A typo is refused; the running configuration (both sources) goes on.
            path.write_text(first.replace("poll_interval_s = 0.3", "poll_intervall_s = 0.3"))
            service.send_signal(signal.SIGHUP)
            refused = await log_line(
                service, "configuration reload refused; the running configuration stays"
            )
            assert "poll_intervall_s" in refused["error"]
            await imap.append("Escalations", mail(3, "cy@example.net", "KYC", "KYC pending"))
            received = await smtp.wait_for(3, timeout_s=30)
            assert received[2].rcpt_tos == ("cy@example.net",)

            # Removing the source stops it: new mail there is left alone.
            path.write_text(first, encoding="utf-8")
            service.send_signal(signal.SIGHUP)
            reloaded = await log_line(service, "configuration reloaded")
            assert (reloaded["started"], reloaded["stopped"]) == ([], ["escalations"])
            await imap.append("Escalations", mail(4, "di@example.net", "API", "API 500 errors"))
            await imap.append("INBOX", mail(5, "ed@example.net", "Promo", "Bonus not credited"))
            received = await smtp.wait_for(4, timeout_s=30)
            await asyncio.sleep(1.5)  # several polls of the remaining source
            assert [m.rcpt_tos for m in smtp.received][3:] == [("ed@example.net",)]
        finally:
            service.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(service.communicate(), timeout=20)
        assert service.returncode == 0, stderr.decode()


async def stored_uids_and_cursor(path: Path) -> tuple[list[int], int]:
    """The INBOX UIDs of the stored records, and the last UID the cursor says was handled."""
    async with migrated_engine(path) as engine, engine.connect() as conn:
        refs = (await conn.execute(select(feedback_records.c.raw_ref))).scalars().all()
        cursor = await conn.scalar(
            select(cursors.c.value).where(cursors.c.source == "support-mail")
        )
    uids = sorted(int(ref.rpartition("uid=")[2]) for ref in refs)
    return uids, int(cursor["folders"]["INBOX"]["last_uid"])


async def test_sigint_lets_the_batch_in_hand_commit_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVICE_IMAP_PASSWORD", "demopass")
    async with LoopbackImapServer() as imap, LoopbackSmtpServer() as smtp:
        for number in (1, 2, 3):
            await imap.append("INBOX", mail(number, f"u{number}@example.net", "Deposit", "late"))
        # Every answer of the server is held a moment: the poll is in flight for a while.
        async with SlowProxy(imap.host, imap.port, delay_s=0.2) as slow:
            path = config(tmp_path, imap, smtp)
            text = path.read_text(encoding="utf-8").replace(
                f"port = {imap.port}", f"port = {slow.port}"
            )
            path.write_text(text.replace("shutdown_grace_s = 5", "shutdown_grace_s = 60"))
            migrate = await inbox_daemon("migrate", "--config", str(path))
            assert await migrate.wait() == 0
            service = await inbox_daemon("run", "--config", str(path))
            try:
                await log_line(service, "lease taken")  # the first poll has begun
            finally:
                service.send_signal(signal.SIGINT)
                _, stderr = await asyncio.wait_for(service.communicate(), timeout=60)
    assert service.returncode == 0, stderr.decode()
    messages = [json.loads(line)["message"] for line in stderr.decode().splitlines() if line]
    assert not [message for message in messages if message.startswith("abandoned")]
    uids, last_uid = await stored_uids_and_cursor(path)
    assert len(uids) == 3
    assert last_uid == uids[-1]


async def test_sigterm_abandons_a_stalled_batch_after_the_grace_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVICE_IMAP_PASSWORD", "demopass")
    async with LoopbackImapServer() as imap, LoopbackSmtpServer() as smtp:
        await imap.append("INBOX", mail(1, "ana@example.net", "Deposit", "USDT deposit late"))
        await imap.append("INBOX", mail(2, "bo@example.net", "Login", "STALL-MARKER no login"))
        await imap.append("INBOX", mail(3, "cy@example.net", "KYC", "KYC pending"))
        # The server stops answering in the middle of the second mail.
        stalled = CuttingProxy(imap.host, imap.port, cut_after_marker=b"STALL-MARKER", stall=True)
        async with stalled as proxy:
            path = config(tmp_path, imap, smtp)
            text = path.read_text(encoding="utf-8").replace(
                f"port = {imap.port}", f"port = {proxy.port}"
            )
            text = text.replace("shutdown_grace_s = 5", "shutdown_grace_s = 1")
            path.write_text(text.replace("timeout_s = 5", "timeout_s = 600\nbatch_size = 1"))
            migrate = await inbox_daemon("migrate", "--config", str(path))
            assert await migrate.wait() == 0
            service = await inbox_daemon("run", "--config", str(path))
            try:
                await asyncio.wait_for(proxy.cut.wait(), timeout=30)
            finally:
                service.send_signal(signal.SIGTERM)
                _, stderr = await asyncio.wait_for(service.communicate(), timeout=60)
    assert service.returncode == 0, stderr.decode()
    messages = [json.loads(line)["message"] for line in stderr.decode().splitlines() if line]
    assert "abandoned 1 in-flight jobs after 1 s" in messages
    uids, last_uid = await stored_uids_and_cursor(path)
    assert len(uids) == 1  # the first mail only: its batch committed before the stall
    assert last_uid == uids[0]


async def test_sighup_reaches_the_web_server_run_serves_and_cannot_move_it(tmp_path: Path) -> None:
    async with LoopbackImapServer() as imap, LoopbackSmtpServer() as smtp:
        path = config(tmp_path, imap, smtp)
        port = free_port()
        served = f"{path.read_text(encoding='utf-8')}\n[web]\nenabled = true\nport = {port}\n"
        path.write_text(served, encoding="utf-8")
        for command in (("migrate",), ("agents", "add", "ana", "--team", "finance")):
            assert await (await inbox_daemon(*command, "--config", str(path))).wait() == 0
        service = await inbox_daemon("run", "--config", str(path))
        me = f"http://127.0.0.1:{port}/api/v1/me"
        signed_in_by_proxy = {"X-Forwarded-User": "ana"}
        try:
            await log_line(service, f"web server listening on http://127.0.0.1:{port}/")
            async with aiohttp.ClientSession() as session:
                async with session.get(me, headers=signed_in_by_proxy) as response:
                    assert response.status == 401  # no SSO configured: the header is no one's

                # The operator puts the server behind their SSO proxy: no restart needed.
                path.write_text(f'{served}sso_header = "X-Forwarded-User"\n', encoding="utf-8")
                service.send_signal(signal.SIGHUP)
                await log_line(service, "configuration reloaded")
                async with session.get(me, headers=signed_in_by_proxy) as response:
                    assert response.status == 200
                    assert (await response.json())["name"] == "ana"

                # Moving the server is refused (it listens where it started), and said so.
                moved = served.replace(f"port = {port}", f"port = {free_port()}")
                path.write_text(f'{moved}sso_header = "X-Forwarded-User"\n', encoding="utf-8")
                service.send_signal(signal.SIGHUP)
                refused = await log_line(
                    service, "configuration reload refused; the running configuration stays"
                )
                assert "restart the daemon" in refused["error"] and "web" in refused["error"]
                async with session.get(me, headers=signed_in_by_proxy) as response:
                    assert response.status == 200
        finally:
            service.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(service.communicate(), timeout=20)
        assert service.returncode == 0, stderr.decode()
