"""``inbox-daemon check-source NAME``: opens one source, shows one batch, stores nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from telethon.tl import types

from inbox_daemon.cli import EXIT_CONFIG, EXIT_OK, run_cli
from inbox_daemon.loopback.imap import LoopbackImapServer
from tests.daemon import run_once
from tests.telegram_server import FakeTelegram

pytestmark = pytest.mark.timeout(90)

MAIL = (
    b"Message-ID: <check-1@example.net>\r\nDate: Mon, 23 Nov 2026 08:00:00 +0000\r\n"
    b"From: Carla Diaz <carla@example.net>\r\nTo: support@example.com\r\n"
    b"Subject: Deposit not credited\r\n\r\nMy private words about a deposit.\r\n"
)


async def stored_by_source(path: Path) -> dict[str, int]:
    report = await run_once(path)
    assert report.errors == {}
    return {name: poll.stored for name, poll in report.polls.items()}


async def test_check_source_shows_imap_mail_and_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with LoopbackImapServer() as imap:
        await imap.append("INBOX", MAIL)
        monkeypatch.setenv("CHECK_IMAP_PASSWORD", imap.password)
        path = tmp_path / "inbox.toml"
        path.write_text(
            f"""
config_version = 1
[[sources]]
name = "support-mail"
kind = "imap"
host = "{imap.host}"
port = {imap.port}
security = "none"
username = "{imap.username}"
password_env = "CHECK_IMAP_PASSWORD"
backfill_days = 36500
timeout_s = 10
""",
            encoding="utf-8",
        )
        for _ in range(2):  # the same mail both times: nothing moved on the server
            assert await run_cli(["check-source", "support-mail", "--config", str(path)]) == EXIT_OK
            out = capsys.readouterr().out
            assert "check-1@example.net" in out and "1 messages" in out
            assert "private words" not in out
        assert not (tmp_path / "inbox.db").exists()
        assert await run_cli(["migrate", "--config", str(path)]) == EXIT_OK
        assert await stored_by_source(path) == {"support-mail": 1}


async def test_check_source_reads_a_telegram_bot_after_its_stored_cursor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    me = types.User(777, is_self=True, bot=True, bot_info_version=1, access_hash=1)
    async with FakeTelegram(me) as telegram:
        telegram.world.add_user(501, "Alice", "alice_w")
        monkeypatch.setenv("TG_API_HASH", "0123456789abcdef")
        monkeypatch.setenv("TG_BOT_TOKEN", telegram.world.bot_token)
        monkeypatch.setenv("TG_SESSION", telegram.session_string())
        path = tmp_path / "inbox.toml"
        path.write_text(
            """
config_version = 1
[[sources]]
name = "tg-bot"
kind = "telegram"
mode = "bot"
api_id = 12345
api_hash_env = "TG_API_HASH"
bot_token_env = "TG_BOT_TOKEN"
session_env = "TG_SESSION"
timeout_s = 5
""",
            encoding="utf-8",
        )
        assert await run_cli(["migrate", "--config", str(path)]) == EXIT_OK
        assert await stored_by_source(path) == {"tg-bot": 0}  # takes the update state
        telegram.world.post(types.PeerUser(501), "my withdrawal is stuck")
        capsys.readouterr()
        assert await run_cli(["check-source", "tg-bot", "--config", str(path)]) == EXIT_OK
        out = capsys.readouterr().out
        assert "connected and logged in" in out and "the stored cursor" in out
        assert "501@777:1" in out and "from @alice_w" in out and "withdrawal" not in out
        assert await stored_by_source(path) == {"tg-bot": 1}  # the check stored nothing


async def test_check_source_names_the_configured_sources_when_the_name_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "inbox.toml"
    path.write_text("config_version = 1\n", encoding="utf-8")
    assert await run_cli(["check-source", "nope", "--config", str(path)]) == EXIT_CONFIG
    assert "no source named 'nope'" in capsys.readouterr().err
