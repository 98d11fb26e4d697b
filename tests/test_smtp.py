"""Acknowledgments over SMTP, delivered to a real aiosmtpd server on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import trustme

from inbox_daemon.interfaces import Identity, OutboundReply
from inbox_daemon.loopback.smtp import LoopbackSmtpServer, ReceivedMail
from inbox_email.settings import SmtpSettings
from inbox_email.smtp import build_reply, envelope_recipient, reply_message_id, send_reply

TRIAGE_DEV = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "triage-dev"
FROM_ADDRESS = "support@example.com"
RELAY_PASSWORD = "correct-horse-relay-7"


def make_reply(**changes: Any) -> OutboundReply:
    fields: dict[str, Any] = {
        "idempotency_key": "42",
        "channel": "email",
        "recipient": Identity("email", "alice@example.org", "alice@example.org", "Alice Doe"),
        "subject": "Re: Withdrawal stuck [FB-7K2Q-9MXA]",
        "text": "We received your message. Your reference is FB-7K2Q-9MXA.\n",
        "language": "en",
        "thread_key": "root-1@mail.example.org",
        "in_reply_to": "question-2@mail.example.org",
        "references": ("root-1@mail.example.org",),
        "headers": {"X-Loop": "inbox-daemon support@example.com"},
    }
    fields.update(changes)
    return OutboundReply(**fields)


def relay(port: int, **changes: Any) -> SmtpSettings:
    fields: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": FROM_ADDRESS,
        "from_name": "Example Exchange Support",
        "timeout_s": 2.0,
    }
    fields.update(changes)
    return SmtpSettings(**fields)


def parsed(mail: ReceivedMail) -> EmailMessage:
    # On the wire lines end in CRLF; the parser keeps them in 8-bit bodies, so undo that.
    message = message_from_bytes(mail.data.replace(b"\r\n", b"\n"), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def plain_body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage)
    content = part.get_content()
    assert isinstance(content, str)
    return content


@pytest.fixture
async def server() -> AsyncIterator[LoopbackSmtpServer]:
    async with LoopbackSmtpServer() as running:
        yield running


class SilentServer:
    """Accepts connections and never says a word: the relay that hangs."""

    def __init__(self) -> None:
        self.accepted = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> SilentServer:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        await reader.read()  # until the client gives up and closes
        writer.close()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound by no listener: connecting to it is refused."""
    with socket.socket() as reserved:
        # Bound but not listening: the port stays ours, and a connect gets RST (refused).
        reserved.bind(("127.0.0.1", 0))
        yield reserved.getsockname()[1]


async def test_reply_has_addressing_and_auto_reply_headers(server: LoopbackSmtpServer) -> None:
    result = await send_reply(make_reply(), relay(server.port))

    [mail] = await server.wait_for(1, timeout_s=5)
    message = parsed(mail)
    assert result.outcome == "sent"
    assert result.external_id == "ack-42@example.com"
    assert mail.mail_from == FROM_ADDRESS
    assert mail.rcpt_tos == ("alice@example.org",)
    assert message["From"] == "Example Exchange Support <support@example.com>"
    assert message["To"] == "Alice Doe <alice@example.org>"
    assert message["Subject"] == "Re: Withdrawal stuck [FB-7K2Q-9MXA]"
    assert message["Message-ID"] == "<ack-42@example.com>"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["X-Auto-Response-Suppress"] == "All"
    assert message["X-Loop"] == "inbox-daemon support@example.com"
    assert "Precedence" not in message
    assert parsedate_to_datetime(message["Date"]).tzinfo is not None
    assert plain_body(message) == make_reply().text


async def test_reply_threads_under_the_message_it_answers(server: LoopbackSmtpServer) -> None:
    reply = make_reply(
        in_reply_to="question-2@mail.example.org",
        references=("<root-1@mail.example.org>", "middle@mail.example.org"),
    )
    await send_reply(reply, relay(server.port))

    [mail] = await server.wait_for(1, timeout_s=5)
    message = parsed(mail)
    assert message["In-Reply-To"] == "<question-2@mail.example.org>"
    assert message["References"].split() == [
        "<root-1@mail.example.org>",
        "<middle@mail.example.org>",
        "<question-2@mail.example.org>",
    ]


def test_references_name_each_message_once() -> None:
    reply = make_reply(
        references=("a@x.example", "b@x.example", "a@x.example"), in_reply_to="b@x.example"
    )

    message = build_reply(reply, relay(25), message_id="<ack-1@example.com>")

    assert message["References"] == "<a@x.example> <b@x.example>"


def test_threading_headers_skip_ids_that_are_not_message_ids() -> None:
    # An e-mail without a Message-ID is known by the sha256 of its bytes.
    reply = make_reply(in_reply_to="9f2c" * 16, references=())

    message = build_reply(reply, relay(25), message_id="<ack-1@example.com>")

    assert "In-Reply-To" not in message
    assert "References" not in message


async def test_resend_carries_the_same_message_id(server: LoopbackSmtpServer) -> None:
    settings = relay(server.port)
    first = await send_reply(make_reply(), settings)
    second = await send_reply(make_reply(), settings)

    mails = await server.wait_for(2, timeout_s=5)
    assert first.external_id == second.external_id
    assert parsed(mails[0])["Message-ID"] == parsed(mails[1])["Message-ID"]


def test_message_id_from_an_unusual_key_is_still_a_valid_id() -> None:
    reply = make_reply(idempotency_key="outbox row/7 <x>")

    message_id = reply_message_id(reply, relay(25))

    assert message_id == reply_message_id(reply, relay(25))
    assert message_id.startswith("<ack-")
    assert message_id.endswith("@example.com>")
    assert " " not in message_id
    assert message_id.count("<") == 1


@pytest.mark.parametrize(
    ("from_address", "domain"),
    [("Support@Example.COM", "example.com"), ("hilfe@bücher.example", "xn--bcher-kva.example")],
)
def test_message_id_domain_is_lower_case_ascii(from_address: str, domain: str) -> None:
    settings = relay(25, from_address=from_address)

    assert reply_message_id(make_reply(), settings) == f"<ack-42@{domain}>"


@pytest.mark.parametrize(
    ("subject", "text"),
    [
        ("回复：提现没有到账 [FB-7K2Q-9MXA]", "您好，我们已收到您的消息。\n"),
        ("Re: Вывод средств завис [FB-7K2Q-9MXA]", "Здравствуйте! Мы получили ваше сообщение.\n"),
        ("Re: 出金が反映されません", "お問い合わせありがとうございます。\n"),
    ],
    ids=["chinese", "russian", "japanese"],
)
async def test_utf8_subject_and_body_round_trip(
    server: LoopbackSmtpServer, subject: str, text: str
) -> None:
    await send_reply(make_reply(subject=subject, text=text), relay(server.port))

    [mail] = await server.wait_for(1, timeout_s=5)
    header_block = mail.data.split(b"\r\n\r\n", 1)[0]
    assert header_block.isascii()  # RFC 2047 encoded words, not raw UTF-8 headers
    message = parsed(mail)
    assert message["Subject"] == subject
    assert plain_body(message) == text


def corpus_texts() -> list[tuple[str, str, str]]:
    with (TRIAGE_DEV / "messages.jsonl").open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    return [
        (row["id"], row["subject"] or row["id"], row["text"])
        for row in rows
        if row["label"]["language"] != "en"
    ]


async def test_corpus_texts_in_every_language_round_trip(server: LoopbackSmtpServer) -> None:
    texts = corpus_texts()
    settings = relay(server.port)
    for key, subject, text in texts:
        reply = make_reply(idempotency_key=key, subject=subject, text=text)
        assert (await send_reply(reply, settings)).outcome == "sent"

    mails = await server.wait_for(len(texts), timeout_s=30)
    for (_, subject, text), mail in zip(texts, mails, strict=True):
        message = parsed(mail)
        assert message["Subject"] == " ".join(subject.split())
        # A text body is a sequence of lines: every kind of line break becomes a newline.
        assert plain_body(message).rstrip("\n") == "\n".join(text.splitlines()).rstrip("\n")


async def test_html_is_an_alternative_to_the_plain_text(server: LoopbackSmtpServer) -> None:
    reply = make_reply(html="<p>We received your message: <b>FB-7K2Q-9MXA</b></p>")
    await send_reply(reply, relay(server.port))

    [mail] = await server.wait_for(1, timeout_s=5)
    message = parsed(mail)
    assert message.get_content_type() == "multipart/alternative"
    kinds = [part.get_content_type() for part in message.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    html = message.get_body(preferencelist=("html",))
    assert isinstance(html, EmailMessage)
    assert "<b>FB-7K2Q-9MXA</b>" in html.get_content()
    assert mail.data.count(b"MIME-Version") == 1


def test_line_breaks_in_subject_and_name_cannot_inject_headers() -> None:
    reply = make_reply(
        subject="Re: help\r\nBcc: everyone@example.net",
        recipient=Identity("email", "a@example.org", "a@example.org", "Eve\nBcc: x@example.net"),
    )

    message = build_reply(reply, relay(25), message_id="<ack-1@example.com>")

    assert "Bcc" not in message
    assert message["Subject"] == "Re: help Bcc: everyone@example.net"


@pytest.mark.parametrize("header", ["Message-ID", "from", "To", "Content-Type"])
async def test_reserved_header_in_reply_fails(header: str) -> None:
    result = await send_reply(make_reply(headers={header: "x"}), relay(25))

    assert result.outcome == "failed"
    assert header in result.reason


@pytest.mark.parametrize("name", ["X Loop", "X-Loop:", "", "X-Lööp"])
async def test_malformed_header_name_in_reply_fails(name: str) -> None:
    result = await send_reply(make_reply(headers={name: "x"}), relay(25))

    assert result.outcome == "failed"
    assert "header name" in result.reason


async def test_extra_header_replaces_a_default(server: LoopbackSmtpServer) -> None:
    await send_reply(make_reply(headers={"Auto-Submitted": "auto-generated"}), relay(server.port))

    [mail] = await server.wait_for(1, timeout_s=5)
    assert parsed(mail).get_all("Auto-Submitted") == ["auto-generated"]


async def test_temporary_recipient_refusal_is_retry(server: LoopbackSmtpServer) -> None:
    server.refuse_next(1, 451, "4.3.0 mailbox busy")

    result = await send_reply(make_reply(), relay(server.port))

    assert result.outcome == "retry"
    assert "451" in result.reason
    assert "mailbox busy" in result.reason


async def test_temporary_data_refusal_is_retry(server: LoopbackSmtpServer) -> None:
    server.refuse_next(1, 452, "4.3.1 insufficient storage", at="DATA")

    result = await send_reply(make_reply(), relay(server.port))

    assert result.outcome == "retry"
    assert "452" in result.reason


async def test_permanent_recipient_refusal_is_failed(server: LoopbackSmtpServer) -> None:
    server.refuse_next(1, 550, "5.1.1 no such user")

    result = await send_reply(make_reply(), relay(server.port))

    assert result.outcome == "failed"
    assert "550" in result.reason
    assert "no such user" in result.reason
    assert server.received == []


async def test_permanent_data_refusal_is_failed(server: LoopbackSmtpServer) -> None:
    server.refuse_next(1, 554, "5.7.1 message rejected", at="DATA")

    result = await send_reply(make_reply(), relay(server.port))

    assert result.outcome == "failed"
    assert "554" in result.reason


async def test_retry_after_temporary_refusal_is_delivered(server: LoopbackSmtpServer) -> None:
    server.refuse_next(1, 421, "4.7.0 too many connections")
    settings = relay(server.port)

    first = await send_reply(make_reply(), settings)
    second = await send_reply(make_reply(), settings)

    assert (first.outcome, second.outcome) == ("retry", "sent")
    assert len(await server.wait_for(1, timeout_s=5)) == 1


async def test_silent_relay_is_retry_after_the_timeout() -> None:
    async with SilentServer() as silent:
        result = await send_reply(make_reply(), relay(silent.port, timeout_s=1.0))

    assert result.outcome == "retry"
    assert "timed out" in result.reason
    assert silent.accepted == 1


async def test_refused_connection_is_retry(closed_port: int) -> None:
    result = await send_reply(make_reply(), relay(closed_port))

    assert result.outcome == "retry"
    assert f"127.0.0.1:{closed_port}" in result.reason


@pytest.mark.parametrize("handle", ["", "<>", "  ", "not-an-address", "@example.org", "a b@x.org"])
async def test_unusable_recipient_fails_without_connecting(handle: str) -> None:
    recipient = Identity("email", handle, handle)
    async with SilentServer() as silent:
        result = await send_reply(make_reply(recipient=recipient), relay(silent.port))

    assert result.outcome == "failed"
    assert "recipient" in result.reason
    assert silent.accepted == 0


@pytest.mark.parametrize(
    "handle", ["", "<>", "user@", "Joe <joe@example.org>", "a@b@example.org", "x\r\n@example.org"]
)
def test_envelope_recipient_refuses_what_is_not_an_address(handle: str) -> None:
    with pytest.raises(ValueError, match="recipient"):
        envelope_recipient(handle)


def test_envelope_recipient_accepts_an_address_with_spaces_around() -> None:
    assert envelope_recipient("  alice@example.org ") == "alice@example.org"


async def test_reply_on_another_channel_fails() -> None:
    result = await send_reply(make_reply(channel="telegram"), relay(25))

    assert result.outcome == "failed"


async def test_login_uses_the_relay_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_RELAY_PASSWORD", RELAY_PASSWORD)
    async with LoopbackSmtpServer(credentials=("relay-user", RELAY_PASSWORD)) as server:
        settings = relay(server.port, username="relay-user", password_env="TEST_RELAY_PASSWORD")
        result = await send_reply(make_reply(), settings)
        assert len(await server.wait_for(1, timeout_s=5)) == 1
    assert result.outcome == "sent"


async def test_refused_login_is_failed_and_hides_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_RELAY_PASSWORD", RELAY_PASSWORD)
    async with LoopbackSmtpServer(credentials=("relay-user", "another-password")) as server:
        settings = relay(server.port, username="relay-user", password_env="TEST_RELAY_PASSWORD")
        result = await send_reply(make_reply(), settings)

    assert result.outcome == "failed"
    assert "535" in result.reason
    assert RELAY_PASSWORD not in result.reason


async def test_vanished_password_is_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_RELAY_PASSWORD", RELAY_PASSWORD)
    settings = relay(25, username="relay-user", password_env="TEST_RELAY_PASSWORD")
    monkeypatch.delenv("TEST_RELAY_PASSWORD")

    result = await send_reply(make_reply(), settings)

    assert result.outcome == "retry"
    assert "TEST_RELAY_PASSWORD" in result.reason


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(certificate_authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def ca_file(certificate_authority: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "relay-ca.pem"
    certificate_authority.cert_pem.write_to_path(str(path))
    return path


async def test_starttls_relay_with_trusted_ca(server_tls: ssl.SSLContext, ca_file: Path) -> None:
    async with LoopbackSmtpServer(tls_context=server_tls) as server:
        settings = relay(server.port, security="starttls", ca_file=ca_file)
        result = await send_reply(make_reply(), settings)
        assert len(await server.wait_for(1, timeout_s=5)) == 1
    assert result.outcome == "sent"


async def test_tls_relay_with_trusted_ca(server_tls: ssl.SSLContext, ca_file: Path) -> None:
    async with LoopbackSmtpServer(tls_context=server_tls, implicit_tls=True) as server:
        settings = relay(server.port, security="tls", ca_file=ca_file)
        result = await send_reply(make_reply(), settings)
        assert len(await server.wait_for(1, timeout_s=5)) == 1
    assert result.outcome == "sent"


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_untrusted_certificate_is_failed(server_tls: ssl.SSLContext, security: str) -> None:
    async with LoopbackSmtpServer(tls_context=server_tls, implicit_tls=security == "tls") as server:
        result = await send_reply(make_reply(), relay(server.port, security=security))
        assert server.received == []
    assert result.outcome == "failed"
    assert "certificate" in result.reason


async def test_unvalidated_certificate_is_accepted_when_configured(
    server_tls: ssl.SSLContext,
) -> None:
    async with LoopbackSmtpServer(tls_context=server_tls) as server:
        settings = relay(server.port, security="starttls", validate_certs=False)
        result = await send_reply(make_reply(), settings)
    assert result.outcome == "sent"


async def test_starttls_required_but_not_offered_is_failed(server: LoopbackSmtpServer) -> None:
    result = await send_reply(make_reply(), relay(server.port, security="starttls"))

    assert result.outcome == "failed"
    assert "STARTTLS" in result.reason
    assert server.received == []
