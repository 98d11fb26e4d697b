"""A real IMAP server on loopback: pymap's in-memory backend, run as a child process.

The demo and the tests point the e-mail adapter at it, so they exercise a real IMAP
conversation (greeting, LOGIN, SELECT, UID SEARCH/FETCH …) without any account anywhere.
Mail is put in with real ``APPEND`` commands, the way a delivery agent would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections import deque
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import aioimaplib

logger = logging.getLogger(__name__)

_HOST: Final = "127.0.0.1"
#: pymap has no ``__main__`` module, so its console entry point is called through ``-c``;
#: this runs it under the very interpreter (and packages) we run under.
_PYMAP_MAIN: Final = "import sys; from pymap.main import main; sys.exit(main())"
_START_DEADLINE_S: Final = 30.0
_STOP_GRACE_S: Final = 5.0
_POLL_INTERVAL_S: Final = 0.05
_PORT_ATTEMPTS: Final = 3
_STDERR_LINES_KEPT: Final = 40
_CLIENT_TIMEOUT_S: Final = 30.0


class LoopbackServerError(RuntimeError):
    """The loopback server could not be started or refused a command."""


class LoopbackImapServer:
    """pymap serving one user from memory on ``127.0.0.1`` (an async context manager).

    Args:
        username: the one account pymap accepts.
        password: its password.
        cert_file: a PEM certificate; with ``key_file`` pymap offers STARTTLS and refuses
            LOGIN before it. Without them the server speaks plain text only.
        key_file: the certificate's private key (PEM).

    Attributes:
        host: always ``127.0.0.1``.
        port: the port pymap listens on (chosen free at start).
    """

    def __init__(
        self,
        *,
        username: str = "demouser",
        password: str = "demopass",  # noqa: S107 - pymap's documented demo password
        cert_file: Path | None = None,
        key_file: Path | None = None,
    ) -> None:
        self.host: str = _HOST
        self.port: int = 0
        self.username = username
        self.password = password
        self._tls_files = (cert_file, key_file) if cert_file and key_file else None
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_tail: deque[str] = deque(maxlen=_STDERR_LINES_KEPT)
        self._stderr_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        """Start pymap on a free port and return once it accepts connections.

        Raises:
            LoopbackServerError: pymap exited or did not accept within the deadline; the
                message carries the end of its standard error.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._start(_free_port())
            except LoopbackServerError:
                await self._stop()
                # Another process may take the free port between our probe and pymap's bind.
                if attempt >= _PORT_ATTEMPTS or not self._port_was_taken():
                    raise
                logger.info("port %d was taken (attempt %d), trying another", self.port, attempt)
            except BaseException:
                await self._stop()  # cancelled while starting: leave no process behind
                raise
            else:
                return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop pymap (terminate, then kill after a grace period) and reap it."""
        await self._stop()

    @property
    def running(self) -> bool:
        """Whether the pymap process is alive."""
        return self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        """The pymap process id while it runs (tests check that nothing is left behind)."""
        return self._process.pid if self._process else None

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[aioimaplib.IMAP4]:
        """An aioimaplib client logged in as the server's user, logged out on exit."""
        imap = aioimaplib.IMAP4(self.host, self.port, timeout=_CLIENT_TIMEOUT_S)
        try:
            await imap.wait_hello_from_server()
            login = imap.login(aioimaplib.quoted(self.username), self.password)
            _expect_ok(await login, "LOGIN")
            yield imap
        finally:
            await _close(imap)

    async def append(
        self, folder: str, raw: bytes, *, flags: str = "", when: datetime | None = None
    ) -> None:
        """Deliver one message into ``folder`` (created when missing) with IMAP APPEND.

        Args:
            folder: the mailbox name (ASCII).
            raw: the RFC 5322 message.
            flags: IMAP flags to set, e.g. ``\\Seen \\Flagged``.
            when: the internal date (timezone-aware); ``None`` means now.
        """
        async with self.client() as imap:
            await _ensure_folder(imap, folder)
            await _append(imap, folder, raw, flags=flags, when=when)

    async def append_many(self, folder: str, raws: Iterable[bytes]) -> None:
        """Deliver several messages into ``folder`` over one connection, in order."""
        async with self.client() as imap:
            await _ensure_folder(imap, folder)
            for raw in raws:
                await _append(imap, folder, raw, flags="", when=None)

    async def delete_folder(self, folder: str) -> None:
        """Delete ``folder`` and its mail (a re-created folder gets a new UIDVALIDITY)."""
        async with self.client() as imap:
            _expect_ok(await imap.delete(aioimaplib.quoted(folder)), f"DELETE {folder}")

    async def _start(self, port: int) -> None:
        self.port = port
        self._stderr_tail.clear()
        self._process = await asyncio.create_subprocess_exec(
            *self._command(port),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        # Read stderr all along: an unread pipe would fill up and block pymap.
        self._stderr_task = asyncio.create_task(self._keep_stderr_tail(self._process))
        await self._wait_accepting(self._process)
        logger.info("loopback IMAP server (pymap) on %s:%d, pid %d", _HOST, port, self._process.pid)

    def _command(self, port: int) -> list[str]:
        command = [sys.executable, "-c", _PYMAP_MAIN, "--host", _HOST, "--port", str(port)]
        if self._tls_files is None:
            command.append("--no-tls")
        else:
            command += ["--cert", str(self._tls_files[0]), "--key", str(self._tls_files[1])]
        return [*command, "dict", "--demo-user", self.username, "--demo-password", self.password]

    async def _wait_accepting(self, process: asyncio.subprocess.Process) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _START_DEADLINE_S
        while loop.time() < deadline:
            if process.returncode is not None:
                raise self._start_error(f"pymap exited with status {process.returncode}")
            if await _accepts(_HOST, self.port):
                return
            await asyncio.sleep(_POLL_INTERVAL_S)
        raise self._start_error(f"pymap did not accept connections within {_START_DEADLINE_S}s")

    def _port_was_taken(self) -> bool:
        return any("address already in use" in line.lower() for line in self._stderr_tail)

    def _start_error(self, reason: str) -> LoopbackServerError:
        stderr = "\n".join(self._stderr_tail) or "(nothing on stderr)"
        return LoopbackServerError(f"{reason} (port {self.port}); pymap's stderr:\n{stderr}")

    async def _keep_stderr_tail(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None  # noqa: S101 - created with stderr=PIPE
        async for line in process.stderr:
            self._stderr_tail.append(line.decode("utf-8", "replace").rstrip())

    async def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), _STOP_GRACE_S)
            except TimeoutError:
                logger.warning("pymap (pid %d) ignored SIGTERM; killing it", process.pid)
                process.kill()
                await process.wait()
        if self._stderr_task is not None:
            # The pipe reaches end-of-file once the process is gone.
            await self._stderr_task
            self._stderr_task = None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((_HOST, 0))
        port: int = probe.getsockname()[1]
        return port


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _close(imap: aioimaplib.IMAP4) -> None:
    if imap.get_state() in (aioimaplib.AUTH, aioimaplib.SELECTED):
        await imap.logout()
    if imap.protocol.transport is not None:
        imap.protocol.transport.close()


async def _ensure_folder(imap: aioimaplib.IMAP4, folder: str) -> None:
    if folder.upper() == "INBOX":
        return
    response = await imap.create(aioimaplib.quoted(folder))
    if response.result != "OK" and b"ALREADYEXISTS" not in b" ".join(response.lines):
        raise LoopbackServerError(f"CREATE {folder} failed: {_text(response)}")


async def _append(
    imap: aioimaplib.IMAP4, folder: str, raw: bytes, *, flags: str, when: datetime | None
) -> None:
    response = await imap.append(
        raw, mailbox=aioimaplib.quoted(folder), flags=flags or None, date=when
    )
    _expect_ok(response, f"APPEND to {folder}")


def _expect_ok(response: aioimaplib.Response, what: str) -> None:
    if response.result != "OK":
        raise LoopbackServerError(f"{what} failed: {response.result} {_text(response)}")


def _text(response: aioimaplib.Response) -> str:
    return b" ".join(bytes(line) for line in response.lines).decode("utf-8", "replace")
