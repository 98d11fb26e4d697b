"""The e-mail adapter over one poll: one search, read-ahead, and parsing in a worker process.

Against a real IMAP server (pymap): a poll searches each folder once and reads on from
what that search found, mail that arrives meanwhile waits for the next poll, a fetch from
any other cursor searches again, and large batches are parsed in a worker process with the
same result as parsing them in the daemon's.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from inbox_daemon.interfaces import Batch, Cursor, InboundMessage
from inbox_daemon.loopback.imap import LoopbackImapServer
from inbox_email.adapter import EmailAdapter, convert_mails
from inbox_email.imap import ImapSession
from inbox_email.mailbox import FetchedMail
from inbox_email.parse_pool import MIN_WORKER_MAILS
from inbox_email.settings import ImapSourceSettings

PASSWORD_ENV = "INBOX_TEST_POLL_PASSWORD"

pytestmark = pytest.mark.timeout(120)


def mail(number: int) -> bytes:
    return (
        f"From: Customer {number} <user{number}@example.net>\r\nTo: support@example.com\r\n"
        f"Subject: ticket {number}\r\nMessage-ID: <poll-{number}@example.net>\r\n"
        f"Date: Mon, 23 Nov 2026 08:{number % 60:02d}:00 +0000\r\n\r\n"
        f"Where is my deposit? ({number})\r\n"
    ).encode()


@pytest.fixture
async def server() -> AsyncIterator[LoopbackImapServer]:
    async with LoopbackImapServer() as running:
        yield running


@pytest.fixture
async def adapter(
    server: LoopbackImapServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[EmailAdapter]:
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    settings = ImapSourceSettings(
        name="support-mail",
        kind="imap",
        host=server.host,
        port=server.port,
        security="none",
        username=server.username,
        password_env=PASSWORD_ENV,
        folders=["INBOX"],
        backfill_days=36500,
        timeout_s=30.0,
    )
    email = EmailAdapter(settings)
    await email.open()
    yield email
    await email.close()


@pytest.fixture
def searches(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """The ``after_uid`` of every UID SEARCH the sessions send."""
    sent: list[int | None] = []
    search = ImapSession.search_uids

    async def counted(self: ImapSession, **criteria: Any) -> list[int]:
        sent.append(criteria["after_uid"])
        return await search(self, **criteria)

    monkeypatch.setattr(ImapSession, "search_uids", counted)
    return sent


async def poll(adapter: EmailAdapter, cursor: Cursor | None, limit: int) -> list[Batch]:
    """Fetch as the daemon does in one poll: while the batch before says there is more."""
    batches = [await adapter.fetch(cursor, limit)]
    while batches[-1].more:
        batches.append(await adapter.fetch(batches[-1].next_cursor, limit))
    return batches


def ids(batches: list[Batch]) -> list[str]:
    return [message.external_id for batch in batches for message in batch.messages]


async def test_poll_searches_the_folder_once_and_reads_every_mail_in_order(
    server: LoopbackImapServer, adapter: EmailAdapter, searches: list[int | None]
) -> None:
    await server.append_many("INBOX", [mail(number) for number in range(1, 12)])

    batches = await poll(adapter, None, limit=3)

    assert ids(batches) == [f"poll-{number}@example.net" for number in range(1, 12)]
    assert [len(batch.messages) for batch in batches] == [3, 3, 3, 2]
    assert searches == [None]


async def test_mail_arriving_during_a_poll_is_read_by_the_next_poll(
    server: LoopbackImapServer, adapter: EmailAdapter, searches: list[int | None]
) -> None:
    await server.append_many("INBOX", [mail(number) for number in range(1, 6)])
    first = await adapter.fetch(None, 2)
    await server.append("INBOX", mail(6))
    rest = [first]
    while rest[-1].more:
        rest.append(await adapter.fetch(rest[-1].next_cursor, 2))

    following = await poll(adapter, rest[-1].next_cursor, limit=2)

    assert ids(rest) == [f"poll-{number}@example.net" for number in range(1, 6)]
    assert ids(following) == ["poll-6@example.net"]
    assert len(searches) == 2


async def test_fetch_from_a_cursor_not_reached_searches_again(
    server: LoopbackImapServer, adapter: EmailAdapter, searches: list[int | None]
) -> None:
    await server.append_many("INBOX", [mail(number) for number in range(1, 6)])
    first = await adapter.fetch(None, 2)

    again = await adapter.fetch(None, 2)  # the first batch was not stored: read it again
    second = await adapter.fetch(again.next_cursor, 2)

    assert ids([again]) == ids([first]) == ["poll-1@example.net", "poll-2@example.net"]
    assert ids([second]) == ["poll-3@example.net", "poll-4@example.net"]
    assert len(searches) == 2


async def test_large_batches_are_parsed_in_a_worker_as_in_the_daemon(
    server: LoopbackImapServer, adapter: EmailAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    count = MIN_WORKER_MAILS * 2 + 5
    raws = [mail(number) for number in range(1, count + 1)]
    await server.append_many("INBOX", raws)
    caplog.set_level(logging.INFO, logger="inbox_email.parse_pool")

    batches = await poll(adapter, None, limit=MIN_WORKER_MAILS)

    inline = convert_mails(
        [FetchedMail("INBOX", uid, 0, raw, len(raw), False) for uid, raw in enumerate(raws, 1)]
    )
    fetched = [message for batch in batches for message in batch.messages]
    assert all(isinstance(message, InboundMessage) for message in inline)
    assert [(m.external_id, m.subject, m.text, m.sender) for m in fetched] == [
        (m.external_id, m.subject, m.text, m.sender)
        for m in inline
        if isinstance(m, InboundMessage)
    ]
    assert "started a worker process for parsing mail" in caplog.text
