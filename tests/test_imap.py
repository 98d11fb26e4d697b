"""ImapSession against a real IMAP server (pymap on loopback) and against faulty peers."""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme

from inbox_daemon.errors import PermanentError, RetryableError
from inbox_daemon.loopback.imap import LoopbackImapServer
from inbox_email.imap import ImapSession
from inbox_email.settings import ImapSourceSettings
from tests.conftest import CORPORA
from tests.peers import CuttingProxy, SilentPeer, XOAuth2Peer

PASSWORD_ENV = "INBOX_TEST_IMAP_PASSWORD"
PASSWORD = "demopass"  # pymap's demo account
CORPUS = sorted((CORPORA / "email-imap_tools" / "raw").rglob("*.eml"))


def mail(number: int, *, body: str = "My withdrawal is stuck.") -> bytes:
    return (
        f"From: user{number}@example.net\r\nTo: support@example.com\r\n"
        f"Subject: ticket {number}\r\nMessage-ID: <t{number}@example.net>\r\n\r\n{body}\r\n"
    ).encode()


@pytest.fixture
async def server() -> AsyncIterator[LoopbackImapServer]:
    async with LoopbackImapServer() as running:
        yield running


@pytest.fixture
def settings_for(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Build settings for a server; keyword arguments override the defaults."""

    def build(host: str, port: int, *, password: str = PASSWORD, **overrides: Any):
        monkeypatch.setenv(PASSWORD_ENV, password)
        values: dict[str, Any] = {
            "name": "support-mail",
            "kind": "imap",
            "host": host,
            "port": port,
            "security": "none",
            "username": "demouser",
            "password_env": PASSWORD_ENV,
            "timeout_s": 10.0,
            **overrides,
        }
        return ImapSourceSettings(**values)

    yield build


@pytest.fixture
async def session(server: LoopbackImapServer, settings_for: Any) -> AsyncIterator[ImapSession]:
    imap = ImapSession(settings_for(server.host, server.port, post_ingest="flag"))
    await imap.connect()
    yield imap
    await imap.logout()


async def flags_of(server: LoopbackImapServer, folder: str) -> dict[int, str]:
    async with server.client() as imap:
        await imap.select(f'"{folder}"')
        response = await imap.uid("FETCH", "1:*", "(UID FLAGS)")
    found = re.findall(rb"UID (\d+) FLAGS \(([^)]*)\)", b" ".join(response.lines[:-1]))
    return {int(uid): flags.decode() for uid, flags in found}


# --- connecting and logging in -------------------------------------------------------------


async def test_connect_logs_in_with_the_right_password(session: ImapSession) -> None:
    assert session.connected
    assert {"IMAP4REV1", "MOVE", "UIDPLUS"} <= session.capabilities


async def test_connect_raises_permanent_error_for_a_wrong_password(
    server: LoopbackImapServer, settings_for: Any
) -> None:
    settings = settings_for(server.host, server.port, password="not-the-password")
    with pytest.raises(PermanentError) as raised:
        await ImapSession(settings).connect()
    message = str(raised.value)
    assert f"{server.host}:{server.port}" in message
    assert "demouser" in message
    assert "not-the-password" not in message


async def test_connect_raises_retryable_error_when_nothing_listens(settings_for: Any) -> None:
    async with SilentPeer() as peer:
        port = peer.port  # a port that was free a moment ago and is closed again now
    with pytest.raises(RetryableError, match="connect failed"):
        await ImapSession(settings_for(peer.host, port)).connect()


async def test_connect_raises_retryable_error_when_the_server_never_answers(
    settings_for: Any,
) -> None:
    async with SilentPeer() as peer:
        session = ImapSession(settings_for(peer.host, peer.port, timeout_s=1.0))
        with pytest.raises(RetryableError, match=r"no answer to connect within 1\.0s"):
            await session.connect()
        assert peer.accepted == 1
    assert not session.connected


async def test_connect_raises_permanent_error_when_xoauth2_is_not_offered(
    server: LoopbackImapServer, settings_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INBOX_TEST_TOKEN", "ya29.token")
    settings = settings_for(
        server.host, server.port, auth="xoauth2", oauth2_token_env="INBOX_TEST_TOKEN"
    )
    with pytest.raises(PermanentError, match="does not offer AUTHENTICATE XOAUTH2"):
        await ImapSession(settings).connect()


async def test_xoauth2_sends_the_token_and_logs_in(
    settings_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INBOX_TEST_TOKEN", "ya29.valid")
    async with XOAuth2Peer(valid_token="ya29.valid") as peer:
        settings = settings_for(
            peer.host, peer.port, auth="xoauth2", oauth2_token_env="INBOX_TEST_TOKEN"
        )
        session = ImapSession(settings)
        await session.connect()
        await session.logout()
    assert peer.initial_responses == [b"user=demouser\x01auth=Bearer ya29.valid\x01\x01"]


async def test_xoauth2_refused_token_raises_permanent_error(
    settings_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INBOX_TEST_TOKEN", "ya29.expired")
    async with XOAuth2Peer(valid_token="ya29.valid") as peer:
        settings = settings_for(
            peer.host, peer.port, auth="xoauth2", oauth2_token_env="INBOX_TEST_TOKEN"
        )
        with pytest.raises(PermanentError, match="AUTHENTICATIONFAILED") as raised:
            await ImapSession(settings).connect()
    assert peer.challenge_answers == [b"\r\n"]  # the error challenge was answered
    assert "ya29.expired" not in str(raised.value)


# --- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(tls_ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path]:
    """(the server's certificate and key in one PEM, the CA a client must trust)."""
    server_pem, ca_pem = tmp_path / "server.pem", tmp_path / "ca.pem"
    tls_ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(server_pem)
    tls_ca.cert_pem.write_to_path(ca_pem)
    return server_pem, ca_pem


async def test_starttls_upgrades_the_connection_before_login(
    tls_files: tuple[Path, Path], settings_for: Any
) -> None:
    server_pem, ca_pem = tls_files
    async with LoopbackImapServer(cert_file=server_pem, key_file=server_pem) as server:
        settings = settings_for(server.host, server.port, security="starttls", ca_file=ca_pem)
        session = ImapSession(settings)
        await session.connect()
        status = await session.select("INBOX")
        capabilities = session.capabilities
        await session.logout()
    assert status.exists == 0
    # Re-read after the upgrade: the server no longer offers STARTTLS, and LOGIN worked.
    assert "STARTTLS" not in capabilities
    assert "MOVE" in capabilities


async def test_starttls_raises_permanent_error_when_the_server_does_not_offer_it(
    server: LoopbackImapServer, settings_for: Any
) -> None:
    settings = settings_for(server.host, server.port, security="starttls", validate_certs=False)
    with pytest.raises(PermanentError, match="does not offer STARTTLS"):
        await ImapSession(settings).connect()


def server_tls_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def test_tls_connects_when_the_certificate_is_trusted(
    server: LoopbackImapServer, tls_ca: trustme.CA, tls_files: tuple[Path, Path], settings_for: Any
) -> None:
    tls_port = CuttingProxy(server.host, server.port, ssl_context=server_tls_context(tls_ca))
    async with tls_port:
        settings = settings_for(tls_port.host, tls_port.port, security="tls", ca_file=tls_files[1])
        session = ImapSession(settings)
        await session.connect()
        await session.select("INBOX")
        await session.logout()


async def test_tls_raises_permanent_error_for_an_untrusted_certificate(
    server: LoopbackImapServer, tls_ca: trustme.CA, settings_for: Any
) -> None:
    tls_port = CuttingProxy(server.host, server.port, ssl_context=server_tls_context(tls_ca))
    async with tls_port:
        settings = settings_for(tls_port.host, tls_port.port, security="tls")
        with pytest.raises(PermanentError, match="certificate not trusted"):
            await ImapSession(settings).connect()


async def test_tls_without_certificate_validation_accepts_any_certificate(
    server: LoopbackImapServer, tls_ca: trustme.CA, settings_for: Any
) -> None:
    tls_port = CuttingProxy(server.host, server.port, ssl_context=server_tls_context(tls_ca))
    async with tls_port:
        settings = settings_for(tls_port.host, tls_port.port, security="tls", validate_certs=False)
        session = ImapSession(settings)
        await session.connect()
        await session.logout()


async def test_tls_to_a_plain_text_port_raises_permanent_error(
    server: LoopbackImapServer, settings_for: Any
) -> None:
    settings = settings_for(server.host, server.port, security="tls", validate_certs=False)
    with pytest.raises(PermanentError, match="TLS failed"):
        await ImapSession(settings).connect()


# --- folders and search ------------------------------------------------------------------------


async def test_select_reports_uidvalidity_uidnext_and_count(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    await server.append_many("Support", [mail(n) for n in range(3)])
    status = await session.select("Support")
    assert status.folder == "Support"
    assert status.uidvalidity > 0
    assert status.exists == 3
    assert status.uidnext is not None
    assert await session.search_uids(after_uid=None, since=None) == list(
        range(status.uidnext - 3, status.uidnext)
    )
    assert not status.read_only


async def test_select_is_read_only_when_nothing_happens_after_ingest(
    server: LoopbackImapServer, settings_for: Any
) -> None:
    session = ImapSession(settings_for(server.host, server.port, post_ingest="none"))
    await session.connect()
    status = await session.select("INBOX")
    with pytest.raises(RuntimeError, match="read-only"):
        await session.add_flag([1], "\\Flagged")
    await session.logout()
    assert status.read_only


async def test_select_of_a_missing_folder_raises_permanent_error_naming_it(
    session: ImapSession,
) -> None:
    with pytest.raises(PermanentError, match=r"'Nowhere'.*NONEXISTENT"):
        await session.select("Nowhere")
    assert session.connected  # a refused folder does not cost the connection


async def test_select_encodes_non_ascii_folder_names(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    async with server.client() as imap:
        # RFC 3501's own example: 台北 in modified UTF-7.
        await imap.create("&U,BTFw-")
        await imap.append(mail(1), mailbox="&U,BTFw-")
    assert (await session.select("台北")).exists == 1


async def test_search_after_the_last_uid_is_empty(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    await server.append_many("Support", [mail(n) for n in range(3)])
    await session.select("Support")
    uids = await session.search_uids(after_uid=None, since=None)
    # "UID n:*" matches the highest UID even when it is below n; that must not leak through.
    assert await session.search_uids(after_uid=uids[-1], since=None) == []
    assert await session.search_uids(after_uid=uids[0], since=None) == uids[1:]


async def test_search_since_skips_older_mail(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    now = datetime.now(UTC)
    await server.append("Support", mail(1), when=now - timedelta(days=30))
    await server.append("Support", mail(2), when=now)
    await session.select("Support")
    every = await session.search_uids(after_uid=None, since=None)
    recent = await session.search_uids(after_uid=None, since=(now - timedelta(days=7)).date())
    assert recent == every[1:]
    assert await session.search_uids(after_uid=every[1], since=date(2000, 1, 1)) == []


# --- fetching ---------------------------------------------------------------------------------


async def test_fetch_returns_each_corpus_message_byte_for_byte(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    raws = [path.read_bytes() for path in CORPUS]
    assert len(raws) == 113
    await server.append_many("Corpus", raws)
    await session.select("Corpus")
    uids = await session.search_uids(after_uid=None, since=None)
    sizes = await session.fetch_sizes(uids)
    bodies = await session.fetch_bodies(uids, max_bytes=10 * 1024 * 1024)
    assert [bodies[uid] for uid in uids] == raws
    assert [sizes[uid] for uid in uids] == [len(raw) for raw in raws]


async def test_fetch_bodies_cuts_mail_above_the_limit(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    big = mail(1, body="x" * 5000)
    await server.append_many("Support", [big, mail(2)])
    await session.select("Support")
    uids = await session.search_uids(after_uid=None, since=None)
    bodies = await session.fetch_bodies(uids, max_bytes=1024)
    assert bodies == {uids[0]: big[:1024], uids[1]: mail(2)}


async def test_fetch_leaves_messages_unseen(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    await server.append_many("Support", [mail(n) for n in range(3)])
    await session.select("Support")  # read-write: PEEK alone keeps \Seen unset
    uids = await session.search_uids(after_uid=None, since=None)
    await session.fetch_sizes(uids)
    await session.fetch_bodies(uids, max_bytes=1 << 20)
    flags = await flags_of(server, "Support")
    assert set(flags) == set(uids)
    assert not any("\\Seen" in value for value in flags.values())


async def test_fetch_of_vanished_uids_returns_nothing_for_them(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    await server.append_many("Support", [mail(1)])
    await session.select("Support")
    uid = (await session.search_uids(after_uid=None, since=None))[0]
    assert await session.fetch_bodies([uid, uid + 50], max_bytes=1024) == {uid: mail(1)}
    assert await session.fetch_sizes([uid + 50]) == {}


async def test_fetch_of_many_messages_uses_bounded_commands(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    # aioimaplib recurses once per response line; one FETCH of 1,500 mails overflows it.
    raws = [mail(n) for n in range(1500)]
    await server.append_many("Bulk", raws)
    await session.select("Bulk")
    uids = await session.search_uids(after_uid=None, since=None)
    sizes = await session.fetch_sizes(uids)
    bodies = await session.fetch_bodies(uids, max_bytes=1 << 20)
    assert [bodies[uid] for uid in uids] == raws
    assert len(sizes) == 1500


# --- acting on messages -----------------------------------------------------------------------


async def test_add_flag_sets_the_flag_on_those_messages_only(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    await server.append_many("Support", [mail(n) for n in range(3)])
    await session.select("Support")
    uids = await session.search_uids(after_uid=None, since=None)
    await session.add_flag(uids[:2], "\\Flagged")
    flags = await flags_of(server, "Support")
    assert ["\\Flagged" in flags[uid] for uid in uids] == [True, True, False]


async def test_move_moves_messages_into_the_folder(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    await server.append_many("Support", [mail(n) for n in range(3)])
    await server.append_many("Done", [])
    await session.select("Support")
    uids = await session.search_uids(after_uid=None, since=None)
    await session.move(uids[:2], "Done")
    assert len(await flags_of(server, "Support")) == 1
    assert len(await flags_of(server, "Done")) == 2


async def test_move_without_the_move_capability_copies_and_expunges(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    await server.append_many("Support", [mail(n) for n in range(3)])
    await server.append_many("Done", [])
    # Servers without RFC 6851 exist; make this one look like them.
    session._connected().protocol.capabilities.discard("MOVE")
    await session.select("Support")
    uids = await session.search_uids(after_uid=None, since=None)
    await session.move(uids[1:], "Done")
    assert list(await flags_of(server, "Support")) == uids[:1]
    assert len(await flags_of(server, "Done")) == 2


async def test_move_into_a_missing_folder_raises_permanent_error(
    server: LoopbackImapServer, session: ImapSession
) -> None:
    await server.append("Support", mail(1))
    await session.select("Support")
    uids = await session.search_uids(after_uid=None, since=None)
    with pytest.raises(PermanentError, match="'Nowhere'"):
        await session.move(uids, "Nowhere")


# --- failures in the middle -----------------------------------------------------------------------


async def test_connection_cut_in_a_fetch_response_raises_retryable_error(
    server: LoopbackImapServer, settings_for: Any
) -> None:
    await server.append_many("Support", [mail(n, body="y" * 2000) for n in range(20)])
    async with CuttingProxy(server.host, server.port, cut_after_marker=b"ticket 7") as proxy:
        session = ImapSession(settings_for(proxy.host, proxy.port, timeout_s=2.0))
        await session.connect()
        await session.select("Support")
        uids = await session.search_uids(after_uid=None, since=None)
        with pytest.raises(RetryableError, match="connection closed during UID FETCH"):
            await session.fetch_bodies(uids, max_bytes=1 << 20)
        assert proxy.cut.is_set()
        assert not session.connected
        with pytest.raises(RetryableError, match="not connected since"):
            await session.search_uids(after_uid=None, since=None)
        await session.logout()  # never raises, even now


async def test_session_connects_again_after_a_failure(
    server: LoopbackImapServer, settings_for: Any
) -> None:
    await server.append("Support", mail(1))
    async with CuttingProxy(server.host, server.port, cut_after_marker=b"ticket 1") as proxy:
        session = ImapSession(settings_for(proxy.host, proxy.port, timeout_s=2.0))
        await session.connect()
        await session.select("Support")
        uids = await session.search_uids(after_uid=None, since=None)
        with pytest.raises(RetryableError):
            await session.fetch_bodies(uids, max_bytes=1024)
        await session.connect()
        assert (await session.select("Support")).exists == 1
        await session.logout()


async def test_server_shutdown_raises_retryable_error(settings_for: Any) -> None:
    async with LoopbackImapServer() as server:
        session = ImapSession(settings_for(server.host, server.port, timeout_s=2.0))
        await session.connect()
        await session.select("INBOX")
    with pytest.raises(RetryableError):
        await session.search_uids(after_uid=None, since=None)
    await session.logout()


async def test_server_falling_silent_in_a_response_raises_retryable_error(
    server: LoopbackImapServer, settings_for: Any
) -> None:
    proxy = CuttingProxy(server.host, server.port, cut_after_marker=b" EXISTS", stall=True)
    async with proxy:
        session = ImapSession(settings_for(proxy.host, proxy.port, timeout_s=1.0))
        await session.connect()
        with pytest.raises(RetryableError, match=r"no answer to EXAMINE INBOX within 1\.0s"):
            await session.select("INBOX")
        await session.logout()


async def test_server_falling_silent_in_a_fetch_raises_retryable_error(
    server: LoopbackImapServer, settings_for: Any
) -> None:
    await server.append_many("Support", [mail(n) for n in range(10)])
    proxy = CuttingProxy(server.host, server.port, cut_after_marker=b"ticket 4", stall=True)
    async with proxy:
        session = ImapSession(settings_for(proxy.host, proxy.port, timeout_s=1.0))
        await session.connect()
        await session.select("Support")
        uids = await session.search_uids(after_uid=None, since=None)
        with pytest.raises(RetryableError, match=r"no answer to UID FETCH within 1\.0s"):
            await session.fetch_bodies(uids, max_bytes=1024)
        await session.logout()
