"""Misbehaving network peers on loopback, for testing how clients fail.

- :class:`CuttingProxy`: a TCP proxy in front of a real server that drops (or stalls) the
  connection after a number of bytes or right after a marker in the server's answer; it can
  also terminate TLS, to put a TLS port in front of a plain-text server.
- :class:`SilentPeer`: accepts connections and never says a word.
- :class:`XOAuth2Peer`: speaks just enough IMAP to accept or refuse an XOAUTH2 token the way
  Gmail and Outlook do (pymap does not offer XOAUTH2).

Each is an async context manager that listens on ``127.0.0.1`` at a free ``port`` and closes
every connection it holds on exit.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from types import TracebackType
from typing import Self


class _LoopbackPeer:
    """A listener on 127.0.0.1 that runs :meth:`serve` for each connection."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.accepted = 0
        self._ssl_context = ssl_context
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Future[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, self.host, 0, ssl=self._ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        # Closing every stream ends each handler; cancelling them instead makes asyncio 3.11
        # log a CancelledError from its own done-callback.
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    def track(self, writer: asyncio.StreamWriter) -> None:
        """Close ``writer`` (a stream a handler opened) when the peer stops."""
        self._writers.add(writer)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self.track(writer)
        self.accepted += 1
        try:
            await self.serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client went away: that is what these peers are for
        finally:
            writer.close()
            self._writers.discard(writer)
            self._handlers.discard(handler)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class SilentPeer(_LoopbackPeer):
    """Accepts every connection, reads whatever comes and never answers."""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass


class CuttingProxy(_LoopbackPeer):
    """Forwards to ``upstream`` and drops the connection at a point of the server's answer.

    Args:
        upstream_host: the real server.
        upstream_port: its port.
        cut_after_bytes: close after forwarding this many bytes from the server.
        cut_after_marker: close right after forwarding the first occurrence of these bytes
            in the server's answer (the rest of that answer never arrives).
        stall: at that point, instead of closing, stop forwarding and keep the connection
            open: a server that stopped answering.
        ssl_context: a server-side TLS context: clients then speak TLS to the proxy.

    Attributes:
        cut: set once the proxy has cut (or stalled) a connection on purpose.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        cut_after_bytes: int | None = None,
        cut_after_marker: bytes | None = None,
        stall: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(ssl_context=ssl_context)
        self._stall = stall
        self._upstream = (upstream_host, upstream_port)
        self._cut_after_bytes = cut_after_bytes
        self._marker = cut_after_marker
        self.cut = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._upstream)
        self.track(upstream_writer)
        upload = asyncio.create_task(_pump(reader, upstream_writer))
        try:
            await self._download(upstream_reader, writer)
        finally:
            upload.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await upload
            upstream_writer.close()
            self._writers.discard(upstream_writer)

    async def _download(self, source: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        forwarded = 0
        tail = b""  # the end of what was forwarded, to find a marker split across reads
        tail_bytes = max(len(self._marker or b"") - 1, 0)
        while chunk := await source.read(65536):
            cut_at = self._cut_point(forwarded, tail, chunk)
            client.write(chunk if cut_at is None else chunk[:cut_at])
            await client.drain()
            if cut_at is not None:
                self.cut.set()
                while self._stall and await source.read(65536):
                    pass  # swallow the rest: the client waits for an answer that never comes
                return  # closing the client's connection is the cut
            forwarded += len(chunk)
            tail = (tail + chunk)[len(tail) + len(chunk) - tail_bytes :]

    def _cut_point(self, forwarded: int, tail: bytes, chunk: bytes) -> int | None:
        """How much of ``chunk`` goes through before the cut; ``None``: all of it, no cut."""
        points = []
        if self._cut_after_bytes is not None and forwarded + len(chunk) >= self._cut_after_bytes:
            points.append(self._cut_after_bytes - forwarded)
        found = (tail + chunk).find(self._marker) if self._marker else -1
        if found >= 0:
            points.append(found + len(self._marker or b"") - len(tail))
        return min(points) if points else None


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while chunk := await source.read(65536):
        sink.write(chunk)
        await sink.drain()


class XOAuth2Peer(_LoopbackPeer):
    """An IMAP greeting, CAPABILITY, AUTHENTICATE XOAUTH2 and LOGOUT, nothing more.

    A token equal to ``valid_token`` is accepted. Any other is refused like Gmail does: a
    ``+`` challenge carrying a JSON error report, which the client must answer with an
    empty line before the tagged ``NO`` comes.

    Attributes:
        initial_responses: the decoded SASL initial responses received.
        challenge_answers: what clients sent back to the error challenge.
    """

    CAPABILITY = b"IMAP4rev1 AUTH=XOAUTH2 SASL-IR"
    ERROR_REPORT = b'{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}'

    def __init__(self, *, valid_token: str) -> None:
        super().__init__()
        self._valid_token = valid_token
        self.initial_responses: list[bytes] = []
        self.challenge_answers: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY " + self.CAPABILITY + b"] scripted peer ready\r\n")
        while line := await reader.readline():
            tag, _, command = line.rstrip(b"\r\n").partition(b" ")
            verb = command.split(b" ", 1)[0].upper()
            if verb == b"CAPABILITY":
                writer.write(b"* CAPABILITY " + self.CAPABILITY + b"\r\n" + tag + b" OK done\r\n")
            elif verb == b"AUTHENTICATE":
                writer.write(tag + await self._authenticate(command, reader, writer) + b"\r\n")
            elif verb == b"LOGOUT":
                writer.write(b"* BYE logging out\r\n" + tag + b" OK done\r\n")
                await writer.drain()
                return
            else:
                writer.write(tag + b" BAD not scripted\r\n")
            await writer.drain()

    async def _authenticate(
        self, command: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes:
        initial = base64.b64decode(command.split()[-1])
        self.initial_responses.append(initial)
        if initial.endswith(b"auth=Bearer " + self._valid_token.encode() + b"\x01\x01"):
            return b" OK Success"
        writer.write(b"+ " + base64.b64encode(self.ERROR_REPORT) + b"\r\n")
        await writer.drain()
        self.challenge_answers.append(await reader.readline())
        return b" NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)"


class SlowProxy(_LoopbackPeer):
    """Forwards to ``upstream`` and holds each piece of the server's answer for ``delay_s``.

    A slow server (or a slow network) in front of a real one: what holds a lease or a claim
    while talking to it must renew it in time.
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, delay_s: float) -> None:
        super().__init__()
        self._upstream = (upstream_host, upstream_port)
        self._delay_s = delay_s

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._upstream)
        self.track(upstream_writer)
        upload = asyncio.create_task(_pump(reader, upstream_writer))
        try:
            while chunk := await upstream_reader.read(65536):
                await asyncio.sleep(self._delay_s)
                writer.write(chunk)
                await writer.drain()
        finally:
            upload.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await upload
            upstream_writer.close()
            self._writers.discard(upstream_writer)
