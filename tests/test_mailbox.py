"""fetch_folder: the cursor rules of one folder, against a real IMAP server (pymap)."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from inbox_daemon.loopback.imap import LoopbackImapServer
from inbox_email.imap import ImapSession
from inbox_email.mailbox import FolderBatch, FolderCursor, fetch_folder
from inbox_email.settings import ImapSourceSettings
from tests.conftest import CORPORA

PASSWORD_ENV = "INBOX_TEST_IMAP_PASSWORD"
NOW = datetime.now(UTC)
SINCE = (NOW - timedelta(days=7)).date()
BIG_MESSAGE = CORPORA / "email-imap_tools" / "raw" / "attachment_2_base64.eml"


def mail(number: int) -> bytes:
    return (
        f"From: user{number}@example.net\r\nTo: support@example.com\r\n"
        f"Subject: ticket {number}\r\nMessage-ID: <t{number}@example.net>\r\n\r\n"
        f"Where is my deposit? ({number})\r\n"
    ).encode()


@pytest.fixture
async def server() -> AsyncIterator[LoopbackImapServer]:
    async with LoopbackImapServer() as running:
        yield running


@pytest.fixture
async def session(
    server: LoopbackImapServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ImapSession]:
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    settings = ImapSourceSettings(
        name="support-mail",
        kind="imap",
        host=server.host,
        port=server.port,
        security="none",
        username=server.username,
        password_env=PASSWORD_ENV,
        timeout_s=10.0,
    )
    imap = ImapSession(settings)
    await imap.connect()
    yield imap
    await imap.logout()


async def fetch(
    session: ImapSession, cursor: FolderCursor | None, *, limit: int = 100, folder: str = "Support"
) -> FolderBatch:
    return await fetch_folder(
        session, folder, cursor, limit=limit, since=SINCE, max_message_bytes=1 << 20
    )


def numbers(batch: FolderBatch) -> list[int]:
    """The ticket numbers of the mails in ``batch``, in order."""
    return [int(re.findall(rb"ticket (\d+)", fetched.raw)[0]) for fetched in batch.mails]


async def test_first_run_reads_only_mail_since_the_backfill_day(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    await server.append("Support", mail(1), when=NOW - timedelta(days=30))
    await server.append("Support", mail(2), when=NOW - timedelta(days=2))
    await server.append("Support", mail(3), when=NOW)
    batch = await fetch(session, None)
    assert numbers(batch) == [2, 3]
    assert not batch.more
    assert batch.cursor.last_uid == batch.mails[-1].uid


async def test_first_run_past_only_old_mail_starts_after_it(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    await server.append("Support", mail(1), when=NOW - timedelta(days=30))
    first = await fetch(session, None)
    assert first.mails == ()
    await server.append("Support", mail(2))
    second = await fetch(session, first.cursor)
    # The old mail stays unread; the cursor starts below what arrives next.
    assert numbers(second) == [2]
    assert first.cursor.last_uid == second.mails[0].uid - 1


async def test_first_run_of_an_empty_folder_gives_a_cursor_at_uidnext(
    session: ImapSession,
) -> None:
    batch = await fetch(session, None, folder="INBOX")
    status = await session.select("INBOX")
    assert status.uidnext is not None
    assert batch == FolderBatch((), FolderCursor(status.uidvalidity, status.uidnext - 1), False)


async def test_next_run_reads_only_mail_after_the_cursor(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    await server.append_many("Support", [mail(1), mail(2)])
    first = await fetch(session, None)
    await server.append_many("Support", [mail(3), mail(4)])
    second = await fetch(session, first.cursor)
    third = await fetch(session, second.cursor)
    assert (numbers(first), numbers(second), numbers(third)) == ([1, 2], [3, 4], [])
    assert third.cursor == second.cursor


async def test_incremental_run_reads_old_internal_dates_too(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    # The backfill limit applies to the first run only: later, everything new is read, even
    # mail delivered with an old date (a migration, a delayed relay).
    await server.append("Support", mail(0))
    first = await fetch(session, None)
    await server.append("Support", mail(1), when=NOW - timedelta(days=90))
    assert numbers(await fetch(session, first.cursor)) == [1]


async def test_limit_pages_through_the_folder_without_gaps_or_repeats(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    await server.append_many("Support", [mail(n) for n in range(25)])
    cursor, seen, pages = None, [], []
    while True:
        batch = await fetch(session, cursor, limit=10)
        seen += numbers(batch)
        pages.append((len(batch.mails), batch.more))
        if batch.mails:
            assert batch.cursor.last_uid == batch.mails[-1].uid
        cursor = batch.cursor
        if not batch.more:
            break
    assert pages == [(10, True), (10, True), (5, False)]
    assert seen == list(range(25))


async def test_cursor_stops_at_the_last_mail_returned_while_more_remain(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    await server.append("Support", mail(0), when=NOW - timedelta(days=30))
    await server.append_many("Support", [mail(n) for n in range(1, 4)])
    batch = await fetch(session, None, limit=2)
    assert numbers(batch) == [1, 2]
    assert batch.more
    assert batch.cursor.last_uid == batch.mails[-1].uid  # not UIDNEXT - 1: mail 3 is unread
    assert numbers(await fetch(session, batch.cursor, limit=2)) == [3]


async def test_changed_uidvalidity_reads_the_folder_again(
    server: LoopbackImapServer, session: ImapSession, caplog: pytest.LogCaptureFixture
) -> None:
    await server.append_many("Support", [mail(1), mail(2)])
    first = await fetch(session, None)
    await server.delete_folder("Support")
    await server.append_many("Support", [mail(1), mail(2), mail(3)])
    with caplog.at_level(logging.WARNING, logger="inbox_email.mailbox"):
        again = await fetch(session, first.cursor)
    assert again.cursor.uidvalidity != first.cursor.uidvalidity
    assert numbers(again) == [1, 2, 3]
    assert "changed UIDVALIDITY" in caplog.text


async def test_changed_uidvalidity_keeps_the_backfill_limit(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    await server.append("Support", mail(1))
    first = await fetch(session, None)
    await server.delete_folder("Support")
    await server.append("Support", mail(1), when=NOW - timedelta(days=30))
    await server.append("Support", mail(2))
    assert numbers(await fetch(session, first.cursor)) == [2]


async def test_oversized_mail_is_returned_truncated_not_skipped(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    big = BIG_MESSAGE.read_bytes()
    await server.append_many("Support", [mail(1), big, mail(2)])
    batch = await fetch_folder(
        session, "Support", None, limit=10, since=SINCE, max_message_bytes=4096
    )
    assert [(m.truncated, m.size_bytes, len(m.raw)) for m in batch.mails] == [
        (False, len(mail(1)), len(mail(1))),
        (True, len(big), 4096),
        (False, len(mail(2)), len(mail(2))),
    ]
    assert batch.mails[1].raw == big[:4096]


async def test_fetched_mail_carries_folder_uid_and_uidvalidity(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    await server.append("Support", mail(1))
    batch = await fetch(session, None)
    status = await session.select("Support")
    (fetched,) = batch.mails
    assert (fetched.folder, fetched.uidvalidity, fetched.raw) == (
        "Support",
        status.uidvalidity,
        mail(1),
    )
    assert status.uidnext is not None
    assert fetched.uid == status.uidnext - 1


async def test_fetch_folder_changes_nothing_on_the_server(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    await server.append_many("Support", [mail(n) for n in range(3)])
    await fetch(session, None)
    async with server.client() as imap:
        await imap.select("Support")
        response = await imap.uid("FETCH", "1:*", "(FLAGS)")
    flags = re.findall(rb"FLAGS \(([^)]*)\)", b" ".join(response.lines[:-1]))
    assert len(flags) == 3
    assert all(b"\\Seen" not in value and b"\\Deleted" not in value for value in flags)


async def test_fetch_folder_rejects_a_limit_below_one(session: ImapSession) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await fetch(session, None, limit=0)


def test_cursor_round_trips_through_json() -> None:
    cursor = FolderCursor(uidvalidity=1712345678, last_uid=42)
    assert cursor.to_json() == {"uidvalidity": 1712345678, "last_uid": 42}
    assert FolderCursor.from_json(cursor.to_json()) == cursor


@pytest.mark.parametrize(
    "stored",
    [
        {},
        {"uidvalidity": 7},
        {"uidvalidity": "7", "last_uid": 1},
        {"uidvalidity": 7, "last_uid": -1},
    ],
)
def test_cursor_from_json_rejects_malformed_values(stored: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="not an IMAP folder cursor"):
        FolderCursor.from_json(stored)
