"""One SMTP connection per delivery pass, against a real aiosmtpd relay on loopback.

A counting proxy in front of the relay tells how many connections were opened. Each reply
keeps its own outcome; a refused recipient does not cost the connection; a relay that
restarts midway, or closes the connection at MAIL (421), gets a new connection for the replies
that follow.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from inbox_daemon.interfaces import DeliveryPass, Identity, OutboundReply
from inbox_daemon.loopback.smtp import LoopbackSmtpServer
from inbox_email.adapter import EmailAdapter
from inbox_email.settings import ImapSourceSettings
from inbox_email.smtp import RelaySession
from tests.peers import SlowProxy

pytestmark = pytest.mark.timeout(60)

#: The mailbox's password: these tests never connect to the mailbox, only to the relay.
PASSWORD_ENV = "INBOX_TEST_RELAY_IMAP_PASSWORD"


@pytest.fixture(autouse=True)
def mailbox_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "not-used-here")


def reply(number: int, recipient: str = "") -> OutboundReply:
    address = recipient or f"customer{number}@example.org"
    return OutboundReply(
        idempotency_key=str(number),
        channel="email",
        recipient=Identity("email", address, address, f"Customer {number}"),
        subject=f"Re: ticket {number} [FB-0000-{number:04d}]",
        text=f"We received your message {number}.\n",
        language="en",
        thread_key=f"ticket-{number}@mail.example.org",
        in_reply_to=f"ticket-{number}@mail.example.org",
    )


def adapter_for(port: int, **smtp: Any) -> EmailAdapter:
    return EmailAdapter(
        ImapSourceSettings(
            name="support-mail",
            kind="imap",
            host="127.0.0.1",
            port=1,
            security="none",
            username="support@example.com",
            password_env=PASSWORD_ENV,
            smtp={
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
                "from_address": "support@example.com",
                "timeout_s": 5.0,
                **smtp,
            },
        )
    )


@pytest.fixture
async def relay() -> AsyncIterator[LoopbackSmtpServer]:
    async with LoopbackSmtpServer() as running:
        yield running


@pytest.fixture
async def proxy(relay: LoopbackSmtpServer) -> AsyncIterator[SlowProxy]:
    async with SlowProxy(relay.host, relay.port, delay_s=0) as counting:
        yield counting


async def test_delivery_pass_sends_every_reply_over_one_connection(
    relay: LoopbackSmtpServer, proxy: SlowProxy
) -> None:
    adapter = adapter_for(proxy.port)
    assert isinstance(adapter, DeliveryPass)

    async with adapter.delivery_pass():
        results = [await adapter.send(reply(number)) for number in range(1, 6)]

    assert [result.outcome for result in results] == ["sent"] * 5
    received = await relay.wait_for(5, timeout_s=5)
    assert [mail.rcpt_tos for mail in received] == [
        (f"customer{number}@example.org",) for number in range(1, 6)
    ]
    assert proxy.accepted == 1


async def test_without_a_delivery_pass_each_reply_has_its_own_connection(
    relay: LoopbackSmtpServer, proxy: SlowProxy
) -> None:
    adapter = adapter_for(proxy.port)

    results = [await adapter.send(reply(number)) for number in range(1, 4)]

    assert [result.outcome for result in results] == ["sent"] * 3
    assert proxy.accepted == 3


async def test_refused_recipient_fails_alone_and_keeps_the_connection(
    relay: LoopbackSmtpServer, proxy: SlowProxy
) -> None:
    adapter = adapter_for(proxy.port)
    relay.refuse_next(1, 550, "no such user")

    async with adapter.delivery_pass():
        refused = await adapter.send(reply(1))
        sent = await adapter.send(reply(2))

    assert refused.outcome == "failed" and "550 no such user" in refused.reason
    assert sent.outcome == "sent"
    assert [mail.rcpt_tos for mail in await relay.wait_for(1, timeout_s=5)] == [
        ("customer2@example.org",)
    ]
    assert proxy.accepted == 1


async def test_relay_restarted_during_a_pass_gets_a_new_connection() -> None:
    async with LoopbackSmtpServer() as first:
        adapter = adapter_for(first.port)
        async with adapter.delivery_pass():
            before = await adapter.send(reply(1))
            await first.stop()  # closes the connection the pass holds
            restarted = LoopbackSmtpServer(port=first.port)
            async with restarted:
                after = [await adapter.send(reply(number)) for number in (2, 3)]
                received = await restarted.wait_for(2, timeout_s=5)

    assert before.outcome == "sent"
    assert [result.outcome for result in after] == ["sent", "sent"]
    assert [mail.rcpt_tos for mail in received] == [
        ("customer2@example.org",),
        ("customer3@example.org",),
    ]


async def test_unreachable_relay_is_a_retry_and_the_next_reply_tries_again(
    relay: LoopbackSmtpServer,
) -> None:
    port = relay.port
    await relay.stop()
    settings = adapter_for(port).settings.smtp
    assert settings is not None
    session = RelaySession(settings)

    refused = await session.send(reply(1))
    await relay.start()
    sent = await session.send(reply(2))
    await session.close()

    assert refused.outcome == "retry" and "unreachable" in refused.reason
    assert sent.outcome == "sent"


class OneMailPerConnection:
    """aiosmtpd hooks of a relay that serves one mail a connection: a second MAIL on the
    same connection is answered 421 (RFC 5321 4.2.3: closing)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, ...]] = []
        self.sessions: dict[int, int] = {}

    async def handle_MAIL(  # noqa: N802 - aiosmtpd hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.sessions[id(session)] = self.sessions.get(id(session), 0) + 1
        if self.sessions[id(session)] > 1:
            return "421 4.3.2 one mail a connection, closing"
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        self.received.append(tuple(envelope.rcpt_tos))
        return "250 OK"


async def test_relay_closing_at_mail_gets_the_reply_on_a_new_connection() -> None:
    relay = OneMailPerConnection()
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: SMTP(relay), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        adapter = adapter_for(port)
        async with adapter.delivery_pass():
            results = [await adapter.send(reply(number)) for number in range(1, 4)]
    finally:
        listener.close()
        await listener.wait_closed()

    assert [result.outcome for result in results] == ["sent"] * 3
    assert relay.received == [(f"customer{number}@example.org",) for number in range(1, 4)]
    assert len(relay.sessions) == 3
