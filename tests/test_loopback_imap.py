"""The loopback IMAP server: pymap in a child process, filled with real APPEND commands."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from inbox_daemon.loopback.imap import LoopbackImapServer, LoopbackServerError

MAIL = b"From: alice@example.net\r\nSubject: hello\r\nMessage-ID: <a1@example.net>\r\n\r\nHi\r\n"


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_server_accepts_login_when_started() -> None:
    async with LoopbackImapServer() as server:
        assert server.running
        async with server.client() as imap:
            response = await imap.select("INBOX")
        assert response.result == "OK"


async def test_server_accepts_the_configured_account() -> None:
    server = LoopbackImapServer(username="support", password="s3cret pass")
    async with server, server.client() as imap:
        assert imap.get_state() == "AUTH"


async def test_stop_leaves_no_process_behind() -> None:
    async with LoopbackImapServer() as server:
        pid = server.pid
        assert pid is not None and process_exists(pid)
    assert not server.running
    assert not process_exists(pid)


async def test_append_delivers_message_with_flags_and_internal_date() -> None:
    when = datetime(2024, 3, 5, 14, 30, tzinfo=UTC)
    async with LoopbackImapServer() as server:
        await server.append("Support", MAIL, flags="\\Seen", when=when)
        async with server.client() as imap:
            await imap.select("Support")
            response = await imap.uid("FETCH", "1:*", "(FLAGS INTERNALDATE BODY.PEEK[])")
    text = b" ".join(bytes(line) for line in response.lines)
    assert b"\\Seen" in text
    assert b'"05-Mar-2024 14:30:00 +0000"' in text
    assert bytes(response.lines[1]) == MAIL


async def test_append_many_delivers_in_order_into_a_new_folder() -> None:
    raws = [MAIL.replace(b"hello", f"hello {n}".encode()) for n in range(5)]
    async with LoopbackImapServer() as server:
        await server.append_many("Archive/2024", raws)
        async with server.client() as imap:
            await imap.select('"Archive/2024"')
            response = await imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = re.findall(rb"hello \d", b"".join(bytes(line) for line in response.lines))
    assert subjects == [f"hello {n}".encode() for n in range(5)]


async def test_delete_folder_removes_it_and_its_mail() -> None:
    async with LoopbackImapServer() as server:
        await server.append("Old", MAIL)
        await server.delete_folder("Old")
        async with server.client() as imap:
            response = await imap.select("Old")
    assert response.result == "NO"


async def test_start_failure_reports_pymaps_stderr(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    server = LoopbackImapServer(cert_file=missing, key_file=missing)
    with pytest.raises(LoopbackServerError, match=r"(?s)pymap exited.*FileNotFoundError"):
        async with server:
            pass
    assert not server.running
