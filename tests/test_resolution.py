"""Resolution notices and survey answers, end to end on loopback IMAP, SMTP and X servers.

A customer mails the desk and another mentions it on X; the daemon stores both; an agent
resolves each with a reply from the CLI; the next run delivers the notices (threaded mail,
an X DM). The customers' answers come back and are read: "solved" keeps the item resolved,
"not solved" reopens it, and neither is acknowledged.
"""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from inbox_daemon.agents import add_agent
from inbox_daemon.audit import cli_actor
from inbox_daemon.cli import run_cli
from inbox_daemon.loopback.imap import LoopbackImapServer
from inbox_daemon.loopback.smtp import LoopbackSmtpServer
from inbox_daemon.loopback.x_api import LoopbackXApi, XUser
from inbox_daemon.storage.schema import (
    feedback_records,
    outbox,
    queue_events,
    queue_items,
    resolution_notices,
)
from tests.daemon import migrated_engine, run_once

pytestmark = pytest.mark.timeout(120)

CONFIG = """\
config_version = 1
[storage]
url = "sqlite:///./inbox.db"
[replies]
ticket_url = "https://support.example.com/new?ref={{reference}}"
[service]
log_level = "WARNING"
[[sources]]
name = "support-mail"
kind = "imap"
host = "{imap.host}"
port = {imap.port}
security = "none"
username = "{imap.username}"
password_env = "INBOX_TEST_RESOLUTION_IMAP"
timeout_s = 20
[sources.smtp]
host = "{smtp.host}"
port = {smtp.port}
security = "none"
from_address = "support@example.com"
[[sources]]
name = "x-support"
kind = "twitter"
handle = "@exchange_support"
api_base_url = "{x_url}"
user_auth = "oauth1"
consumer_key_env = "INBOX_TEST_RESOLUTION_X"
consumer_secret_env = "INBOX_TEST_RESOLUTION_X"
access_token_env = "INBOX_TEST_RESOLUTION_X"
access_token_secret_env = "INBOX_TEST_RESOLUTION_X"
bearer_token_env = "INBOX_TEST_RESOLUTION_X"
direct_messages = true
timeout_s = 20
"""


def mail(message_id: str, subject: str, text: str, **headers: str) -> bytes:
    message = EmailMessage()
    message["Message-ID"] = f"<{message_id}>"
    message["Date"] = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    message["From"] = "Dmitry Orlov <dmitry@example.net>"
    message["To"] = "support@example.com"
    message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(text)
    return bytes(message).replace(b"\n", b"\r\n")


async def reference_of(config: Path, external_id: str) -> str:
    async with migrated_engine(config) as engine, engine.connect() as conn:
        reference: str = await conn.scalar(
            select(feedback_records.c.reference).where(
                feedback_records.c.external_id == external_id
            )
        )
    return reference


async def test_resolve_with_reply_reaches_the_customer_and_reads_the_answers(
    tmp_path: Path,
) -> None:
    async with AsyncExitStack() as stack:
        imap = await stack.enter_async_context(LoopbackImapServer())
        smtp = await stack.enter_async_context(LoopbackSmtpServer())
        x_api = await stack.enter_async_context(
            LoopbackXApi(XUser("1000", "exchange_support", "Example Exchange Support"))
        )
        os.environ["INBOX_TEST_RESOLUTION_IMAP"] = imap.password
        os.environ["INBOX_TEST_RESOLUTION_X"] = "test"
        config = tmp_path / "inbox.toml"
        config.write_text(
            CONFIG.format(imap=imap, smtp=smtp, x_url=x_api.base_url), encoding="utf-8"
        )
        async with migrated_engine(config) as engine:
            await add_agent(engine, "maya", "customer_service", role="lead", actor=cli_actor())
        customer = x_api.add_user("lena_k", "Lena K")
        x_api.post(
            customer,
            "@exchange_support my ETH withdrawal is stuck for 3 hours",
            at=datetime.now(UTC) - timedelta(minutes=5),
        )
        await imap.append(
            "INBOX",
            mail(
                "q1@example.net",
                "Депозит не зачислен",
                "Здравствуйте! Мой депозит USDT до сих пор не зачислен на счёт, что мне делать?",
            ),
        )
        await run_once(config)
        acknowledgments = len(smtp.received)
        mail_ref = await reference_of(config, "q1@example.net")
        async with migrated_engine(config) as engine, engine.connect() as conn:
            x_ref = await conn.scalar(
                select(feedback_records.c.reference).where(feedback_records.c.channel == "twitter")
            )
        reply = "We credited your deposit: 250 USDT, TxID 0xabc."
        assert (
            await run_cli(
                [
                    "queue",
                    "resolve",
                    mail_ref,
                    "--as",
                    "maya",
                    "--reply",
                    reply,
                    "--config",
                    str(config),
                ]
            )
            == 0
        )
        assert (
            await run_cli(
                [
                    "queue",
                    "resolve",
                    str(x_ref),
                    "--as",
                    "maya",
                    "--reply",
                    "Your ETH arrived.",
                    "--config",
                    str(config),
                ]
            )
            == 0
        )
        dms_before = len(x_api.sent_dms)
        await run_once(config)

        notices = smtp.received[acknowledgments:]
        assert len(notices) == 1
        notice = message_from_bytes(notices[0].data, policy=policy.default)
        assert list(notices[0].rcpt_tos) == ["dmitry@example.net"]
        assert notice["In-Reply-To"] == "<q1@example.net>"
        assert "<q1@example.net>" in notice["References"]
        assert mail_ref in notice["Subject"] and notice["Subject"].startswith("Re: Депозит")
        body = notice.get_content()
        assert reply in body and "Проблема решена?" in body
        dms = x_api.sent_dms[dms_before:]
        assert [dm["recipient_id"] for dm in dms] == [customer.id]
        assert "Your ETH arrived." in dms[0]["text"] and "solved" in dms[0]["text"]
        assert x_api.replies == [r for r in x_api.replies if "Your ETH" not in r["text"]]

        # The answers: by mail on the notice's thread, and by DM on X.
        await imap.append(
            "INBOX",
            mail(
                "a1@example.net",
                f"Re: {notice['Subject']}",
                "Всё пришло, спасибо! Оценка 5",
                In_Reply_To=notice["Message-ID"],
                References=f"{notice['References']} {notice['Message-ID']}",
            ),
        )
        x_api.add_dm(customer, "still not there 👎 1/5", at=datetime.now(UTC))
        sent_before = (len(smtp.received), len(x_api.sent_dms), len(x_api.replies))
        await run_once(config)
        assert (len(smtp.received), len(x_api.sent_dms), len(x_api.replies)) == sent_before

        async with migrated_engine(config) as engine, engine.connect() as conn:
            answers = {
                row.reference: (row.verdict, row.rating, row.state)
                for row in await conn.execute(
                    select(
                        feedback_records.c.reference,
                        resolution_notices.c.verdict,
                        resolution_notices.c.rating,
                        queue_items.c.state,
                    )
                    .join(queue_items, queue_items.c.id == resolution_notices.c.item_id)
                    .join(feedback_records, feedback_records.c.id == queue_items.c.record_id)
                )
            }
            events = (
                await conn.execute(select(queue_events.c.action, queue_events.c.detail))
            ).all()
            unsent = await conn.scalar(select(outbox.c.id).where(outbox.c.state != "sent").limit(1))
        assert answers == {
            mail_ref: ("solved", 5, "resolved"),
            x_ref: ("not_solved", 1, "reopened"),
        }
        assert ("survey", "the customer answered the survey: solved, rating 5/5") in events
        assert unsent is None


async def test_resolve_without_a_reply_sends_nothing(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        imap = await stack.enter_async_context(LoopbackImapServer())
        smtp = await stack.enter_async_context(LoopbackSmtpServer())
        x_api = await stack.enter_async_context(
            LoopbackXApi(XUser("1000", "exchange_support", "Example Exchange Support"))
        )
        os.environ["INBOX_TEST_RESOLUTION_IMAP"] = imap.password
        os.environ["INBOX_TEST_RESOLUTION_X"] = "test"
        config = tmp_path / "inbox.toml"
        config.write_text(
            CONFIG.format(imap=imap, smtp=smtp, x_url=x_api.base_url), encoding="utf-8"
        )
        async with migrated_engine(config) as engine:
            await add_agent(engine, "maya", "customer_service", role="lead", actor=cli_actor())
        await imap.append("INBOX", mail("q2@example.net", "Spam?", "Is this account real?"))
        await run_once(config)
        before = len(smtp.received)
        ref = await reference_of(config, "q2@example.net")
        assert (
            await run_cli(["queue", "resolve", ref, "--as", "maya", "--config", str(config)]) == 0
        )
        await run_once(config)
        assert len(smtp.received) == before
        async with migrated_engine(config) as engine, engine.connect() as conn:
            assert await conn.scalar(select(resolution_notices.c.id)) is None
