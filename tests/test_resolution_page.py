"""The page's resolve form in a real browser (Debian's chromium): reply, or resolve silently."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Page, async_playwright, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from inbox_daemon.agents import add_agent, issue_token
from inbox_daemon.audit import Actor
from inbox_daemon.config import load_settings
from inbox_daemon.demo import ingest_demo
from inbox_daemon.storage.engine import create_engine, database_url
from inbox_daemon.storage.repository import queue_listing
from inbox_daemon.storage.schema import feedback_records, outbox, resolution_notices
from inbox_daemon.web.server import start_web

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's chromium, installed with apt-get when it is missing (root only)."""
    if not CHROMIUM.exists() and shutil.which("apt-get") and os.geteuid() == 0:
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            subprocess.run(command, capture_output=True, timeout=900, check=False)
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium, and it cannot be installed here (apt-get, root)")
    return CHROMIUM


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(
    chromium: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Page, AsyncEngine]]:
    """A signed-in page over the demo's database, and that database."""
    demo = await ingest_demo(tmp_path_factory.mktemp("demo"))
    settings = load_settings(demo.config_path)
    async with AsyncExitStack() as stack:
        engine = create_engine(database_url(settings.storage.url, settings.config_dir))
        stack.push_async_callback(engine.dispose)
        operator = Actor("cli:test", "cli test@localhost")
        await add_agent(engine, "Maya", "customer_service", role="lead", actor=operator)
        token = (await issue_token(engine, "Maya", ttl_days=1, actor=operator)).token
        server = await start_web(stack, engine, settings, port=0)
        playwright = await stack.enter_async_context(async_playwright())
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=["--no-sandbox", "--headless"]
        )
        stack.push_async_callback(browser.close)
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        await page.goto(server.url)
        await page.locator("#signin").get_by_label("Access token").fill(token)
        await page.locator("#signin").get_by_role("button", name="Sign in").click()
        await expect(page.locator("#who")).to_have_text("Maya")
        yield page, engine


async def acknowledged_mail(engine: AsyncEngine) -> list[str]:
    rows = await queue_listing(engine)
    return [r["reference"] for r in rows if r["channel"] == "email" and r["ack_decision"] == "send"]


async def open_item(page: Page, reference: str) -> None:
    await page.locator(f'tr.item[data-ref="{reference}"] td.subject').click()
    await expect(page.locator(f'#detail article[data-ref="{reference}"]')).to_be_visible()


async def test_the_page_resolves_with_a_reply_or_silently(
    served: tuple[Page, AsyncEngine],
) -> None:
    page, engine = served
    replied, silent = (await acknowledged_mail(engine))[:2]
    await open_item(page, replied)
    button = page.locator("#detail button[data-action=resolve]")
    await expect(button).to_have_text("Resolve silently")
    await page.locator("#detail textarea[name=reply]").fill("We refunded the fee.")
    await expect(button).to_have_text("Resolve and reply")
    await button.click()
    await expect(page.locator("#toast")).to_contain_text(f"{replied} resolved")

    await open_item(page, silent)
    await page.locator("#detail").get_by_role("button", name="Resolve silently").click()
    await expect(page.locator("#toast")).to_contain_text(f"{silent} resolved")

    async with engine.connect() as conn:
        rows = await conn.execute(
            select(feedback_records.c.reference, outbox.c.payload)
            .join(resolution_notices, resolution_notices.c.record_id == feedback_records.c.id)
            .join(outbox, outbox.c.id == resolution_notices.c.outbox_id)
        )
        notices = {reference: payload for reference, payload in rows.all()}
    assert list(notices) == [replied]
    assert "We refunded the fee." in notices[replied]["text"]
