"""The loopback SMTP server: a real aiosmtpd server on 127.0.0.1, driven by a real client."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import AsyncIterator
from email import message_from_bytes, policy

import aiosmtplib
import pytest
import trustme

from inbox_daemon.loopback.smtp import LoopbackSmtpServer, ReceivedMail

MESSAGE = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hello\r\n\r\nbody\r\n"


@pytest.fixture
async def server() -> AsyncIterator[LoopbackSmtpServer]:
    async with LoopbackSmtpServer() as running:
        yield running


def client(
    server: LoopbackSmtpServer, username: str | None = None, password: str | None = None
) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(
        hostname=server.host,
        port=server.port,
        timeout=5,
        start_tls=False,
        # A fixed EHLO name: the default looks up the FQDN in a worker thread.
        local_hostname="localhost",
        username=username,
        password=password,
    )


async def test_server_binds_loopback_on_a_free_port(server: LoopbackSmtpServer) -> None:
    assert server.host == "127.0.0.1"
    assert server.port > 0
    async with LoopbackSmtpServer() as other:
        assert other.port != server.port


async def test_server_records_envelope_and_message_bytes(server: LoopbackSmtpServer) -> None:
    async with client(server) as smtp:
        await smtp.sendmail("a@example.com", ["b@example.org", "c@example.net"], MESSAGE)

    [mail] = await server.wait_for(1, timeout_s=5)

    assert mail == ReceivedMail("a@example.com", ("b@example.org", "c@example.net"), MESSAGE)
    assert message_from_bytes(mail.data, policy=policy.default)["Subject"] == "hello"


async def test_server_keeps_leading_dots_unstuffed(server: LoopbackSmtpServer) -> None:
    dotted = b"Subject: dots\r\n\r\n.hidden line\r\n..two\r\n"
    async with client(server) as smtp:
        await smtp.sendmail("a@example.com", ["b@example.org"], dotted)

    [mail] = await server.wait_for(1, timeout_s=5)

    assert mail.data == dotted


async def test_wait_for_returns_every_mail_once_enough_arrived(
    server: LoopbackSmtpServer,
) -> None:
    async def send_three() -> None:
        async with client(server) as smtp:
            for index in range(3):
                await smtp.sendmail("a@example.com", [f"user{index}@example.org"], MESSAGE)

    sender = asyncio.create_task(send_three())
    mails = await server.wait_for(3, timeout_s=5)
    await sender

    assert [mail.rcpt_tos for mail in mails] == [
        ("user0@example.org",),
        ("user1@example.org",),
        ("user2@example.org",),
    ]


async def test_wait_for_raises_timeout_when_too_few_arrive(server: LoopbackSmtpServer) -> None:
    with pytest.raises(TimeoutError, match="0 of 1 mails"):
        await server.wait_for(1, timeout_s=0.2)


async def test_refuse_next_answers_rcpt_then_accepts_again(server: LoopbackSmtpServer) -> None:
    server.refuse_next(2, 451, "4.3.0 try later")
    async with client(server) as smtp:
        for _ in range(2):
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
                await smtp.sendmail("a@example.com", ["b@example.org"], MESSAGE)
            assert refused.value.recipients[0].code == 451
        await smtp.sendmail("a@example.com", ["b@example.org"], MESSAGE)

    assert len(await server.wait_for(1, timeout_s=5)) == 1


async def test_refuse_next_at_data_refuses_the_message(server: LoopbackSmtpServer) -> None:
    server.refuse_next(1, 554, "5.6.0 content rejected", at="DATA")
    async with client(server) as smtp:
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await smtp.sendmail("a@example.com", ["b@example.org"], MESSAGE)

    assert refused.value.code == 554
    assert "content rejected" in refused.value.message
    assert server.received == []


@pytest.mark.parametrize(("count", "code"), [(-1, 451), (1, 250), (1, 354), (1, 600)])
def test_refuse_next_rejects_what_is_not_a_refusal(count: int, code: int) -> None:
    with pytest.raises(ValueError, match=r"count|code"):
        LoopbackSmtpServer().refuse_next(count, code)


async def test_stop_closes_open_connections() -> None:
    server = LoopbackSmtpServer()
    await server.start()
    smtp = client(server)
    await smtp.connect()

    await server.stop()

    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await smtp.noop()
    smtp.close()


async def test_stop_then_connect_is_refused() -> None:
    async with LoopbackSmtpServer() as server:
        port = server.port
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=5).connect()


async def test_credentials_are_required_before_mail() -> None:
    async with LoopbackSmtpServer(credentials=("relay-user", "relay-pass")) as server:
        async with client(server) as smtp:
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
                await smtp.sendmail("a@example.com", ["b@example.org"], MESSAGE)
        assert refused.value.code == 530

        async with client(server, username="relay-user", password="relay-pass") as smtp:
            await smtp.sendmail("a@example.com", ["b@example.org"], MESSAGE)
        assert len(await server.wait_for(1, timeout_s=5)) == 1


async def test_wrong_password_is_refused() -> None:
    async with LoopbackSmtpServer(credentials=("relay-user", "relay-pass")) as server:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
            await client(server, username="relay-user", password="wrong").connect()
    assert refused.value.code == 535


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


def tls_contexts(ca: trustme.CA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client_context)
    return server_context, client_context


async def test_starttls_upgrades_the_connection(certificate_authority: trustme.CA) -> None:
    server_context, client_context = tls_contexts(certificate_authority)
    async with LoopbackSmtpServer(tls_context=server_context) as server:
        smtp = aiosmtplib.SMTP(
            hostname=server.host,
            port=server.port,
            timeout=5,
            start_tls=True,
            tls_context=client_context,
        )
        async with smtp:
            assert smtp.get_transport_info("sslcontext") is client_context
            await smtp.sendmail("a@example.com", ["b@example.org"], MESSAGE)
        assert len(await server.wait_for(1, timeout_s=5)) == 1


async def test_implicit_tls_speaks_tls_from_the_first_byte(
    certificate_authority: trustme.CA,
) -> None:
    server_context, client_context = tls_contexts(certificate_authority)
    async with LoopbackSmtpServer(tls_context=server_context, implicit_tls=True) as server:
        smtp = aiosmtplib.SMTP(
            hostname=server.host,
            port=server.port,
            timeout=5,
            use_tls=True,
            tls_context=client_context,
        )
        async with smtp:
            await smtp.sendmail("a@example.com", ["b@example.org"], MESSAGE)
        assert len(await server.wait_for(1, timeout_s=5)) == 1


def test_implicit_tls_without_a_context_is_an_error() -> None:
    with pytest.raises(ValueError, match="tls_context"):
        LoopbackSmtpServer(implicit_tls=True)


async def test_server_leaves_no_thread_behind() -> None:
    threads_before = threading.active_count()
    async with LoopbackSmtpServer() as server:
        async with client(server) as smtp:
            await smtp.sendmail("a@example.com", ["b@example.org"], MESSAGE)
        await server.wait_for(1, timeout_s=5)
    assert threading.active_count() <= threads_before
