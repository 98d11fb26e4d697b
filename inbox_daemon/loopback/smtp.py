"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives, for the demo and tests.

It runs aiosmtpd's protocol on the caller's event loop (``loop.create_server``) rather than in
aiosmtpd's threaded ``Controller``, so nothing outlives the ``async with`` block: no thread, no
socket, no task. Tests can make it refuse the next commands with a temporary (4xx) or permanent
(5xx) reply, and can require AUTH and offer STARTTLS or implicit TLS.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Literal, Self

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

logger = logging.getLogger(__name__)

#: The commands a refusal can be attached to.
RefusalStage = Literal["RCPT", "DATA"]

_LOOPBACK_HOST: Final = "127.0.0.1"
_STOP_GRACE_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One accepted mail transaction.

    Attributes:
        mail_from: the envelope sender (``MAIL FROM``), empty for a null sender.
        rcpt_tos: the envelope recipients (``RCPT TO``), in order.
        data: the message exactly as received after ``DATA`` (CRLF line ends, dots unstuffed).
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class _Refusal:
    stage: RefusalStage
    code: int
    text: str

    @property
    def reply(self) -> str:
        return f"{self.code} {self.text}"


class _Handler:
    """aiosmtpd hooks: refusals, optional AUTH enforcement, and recording accepted mail."""

    def __init__(self, server: LoopbackSmtpServer) -> None:
        self._server = server

    async def handle_MAIL(  # noqa: N802 - aiosmtpd hook name
        self,
        smtp: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        # aiosmtpd cannot require AUTH without TLS except with a warning, so the loopback
        # server enforces it here, where a test without certificates can still exercise it.
        if self._server.credentials is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook name
        self,
        smtp: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = self._server._take_refusal("RCPT")
        if refusal is not None:
            return refusal.reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd hook name
        self, smtp: SMTP, session: Session, envelope: Envelope
    ) -> str:
        refusal = self._server._take_refusal("DATA")
        if refusal is not None:
            return refusal.reply
        content = envelope.original_content or b""
        mail = ReceivedMail(envelope.mail_from or "", tuple(envelope.rcpt_tos), bytes(content))
        await self._server._record(mail)
        return "250 2.0.0 OK: queued"


class _TrackedSMTP(SMTP):
    """aiosmtpd's protocol, telling its server when a connection opens and closes."""

    def __init__(
        self,
        server: LoopbackSmtpServer,
        loop: asyncio.AbstractEventLoop,
        starttls_context: ssl.SSLContext | None,
    ) -> None:
        super().__init__(
            _Handler(server),
            hostname=server.hostname,
            enable_SMTPUTF8=True,
            tls_context=starttls_context,
            authenticator=server._authenticate if server.credentials is not None else None,
            # aiosmtpd offers AUTH only after its own STARTTLS when this is true; over plain
            # text (loopback) and implicit TLS (which it does not see as TLS) it must be false.
            auth_require_tls=starttls_context is not None,
            loop=loop,
        )
        self._owner = server
        self.starttls_begun = False

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:  # noqa: N802 - aiosmtpd command name
        """Note that the connection is switching to TLS, then switch."""
        self.starttls_begun = True
        await super().smtp_STARTTLS(arg)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._owner._track(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._owner._untrack(self)
        super().connection_lost(error)


class LoopbackSmtpServer:
    """An SMTP server on ``127.0.0.1`` that records every mail it accepts.

    Use it as an async context manager; ``port`` is free and chosen by the system unless given.

    Args:
        port: the port to bind, 0 for a free one.
        hostname: the name the server greets with.
        credentials: a ``(username, password)`` pair to accept; when given, ``MAIL`` is refused
            until the client has authenticated (PLAIN or LOGIN).
        tls_context: a server-side context; offers STARTTLS, or wraps the whole connection
            when ``implicit_tls`` is true.
        implicit_tls: speak TLS from the first byte (port 465 style) instead of STARTTLS.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        hostname: str = "localhost",
        credentials: tuple[str, str] | None = None,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
    ) -> None:
        if implicit_tls and tls_context is None:
            raise ValueError("implicit_tls needs a tls_context")
        self.host: str = _LOOPBACK_HOST
        self.port: int = port
        self.hostname = hostname
        self.credentials = credentials
        self.received: list[ReceivedMail] = []
        self._tls_context = tls_context
        self._implicit_tls = implicit_tls
        self._refusals: deque[_Refusal] = deque()
        self._arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._connections: set[_TrackedSMTP] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind and start accepting connections on the running event loop."""
        if self._server is not None:
            raise RuntimeError("the loopback SMTP server is already running")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: self._protocol(loop),
            host=self.host,
            port=self.port,
            ssl=self._tls_context if self._implicit_tls else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("loopback SMTP server listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening, close open connections and wait until they are gone."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        in_handshake = [c for c in self._connections if self._in_starttls_handshake(c)]
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.close()
        for connection in in_handshake:
            # Python 3.11's SSL layer never tells the protocol that a connection closed in
            # the middle of a STARTTLS handshake, so aiosmtpd would wait on it forever.
            connection.connection_lost(None)
        await server.wait_closed()
        # connection_lost runs on a later loop iteration than transport.close(); wait for it
        # so no aiosmtpd transport outlives the server (it would warn when collected).
        try:
            async with asyncio.timeout(_STOP_GRACE_S):
                await self._idle.wait()
        except TimeoutError:
            logger.warning(
                "%d SMTP connections did not close; dropping them", len(self._connections)
            )
            for connection in list(self._connections):
                connection.connection_lost(None)
        logger.info("loopback SMTP server on %s:%d stopped", self.host, self.port)

    def refuse_next(
        self, count: int, code: int = 451, text: str = "try later", *, at: RefusalStage = "RCPT"
    ) -> None:
        """Answer the next ``count`` ``at`` commands (``RCPT`` or ``DATA``) with ``code text``.

        A 4xx code is a temporary refusal, a 5xx code a permanent one. Refusals queue up in
        call order; each is used by the next command of its stage once the earlier ones are.

        Raises:
            ValueError: ``count`` is negative or ``code`` is not a 4xx or 5xx reply code.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if not 400 <= code <= 599:
            raise ValueError(f"expected a 4xx or 5xx reply code, got {code}")
        self._refusals.extend(_Refusal(at, code, text) for _ in range(count))

    async def wait_for(self, count: int, timeout_s: float) -> list[ReceivedMail]:
        """Wait until at least ``count`` mails have been accepted; return all received so far.

        Raises:
            TimeoutError: fewer than ``count`` arrived within ``timeout_s`` seconds.
        """
        try:
            async with asyncio.timeout(timeout_s), self._arrived:
                await self._arrived.wait_for(lambda: len(self.received) >= count)
        except TimeoutError:
            raise TimeoutError(
                f"{len(self.received)} of {count} mails arrived within {timeout_s} s"
            ) from None
        return list(self.received)

    def _take_refusal(self, stage: RefusalStage) -> _Refusal | None:
        if self._refusals and self._refusals[0].stage == stage:
            return self._refusals.popleft()
        return None

    async def _record(self, mail: ReceivedMail) -> None:
        async with self._arrived:
            self.received.append(mail)
            self._arrived.notify_all()

    @staticmethod
    def _in_starttls_handshake(connection: _TrackedSMTP) -> bool:
        # The session learns of TLS only once the STARTTLS handshake has completed.
        return connection.starttls_begun and (
            connection.session is None or connection.session.ssl is None
        )

    def _track(self, connection: _TrackedSMTP) -> None:
        self._connections.add(connection)
        self._idle.clear()

    def _untrack(self, connection: _TrackedSMTP) -> None:
        self._connections.discard(connection)
        if not self._connections:
            self._idle.set()

    def _protocol(self, loop: asyncio.AbstractEventLoop) -> SMTP:
        # STARTTLS is offered only when the connection does not start in TLS.
        starttls_context = None if self._implicit_tls else self._tls_context
        return _TrackedSMTP(self, loop, starttls_context)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
    ) -> AuthResult:
        if self.credentials is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        username, password = self.credentials
        login: bytes = auth_data.login
        secret: bytes = auth_data.password
        accepted = hmac.compare_digest(login, username.encode()) and hmac.compare_digest(
            secret, password.encode()
        )
        return AuthResult(success=accepted, handled=False)
