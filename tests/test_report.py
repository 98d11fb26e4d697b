"""The retrospective report over the demo data, read in a real browser (Debian's chromium).

The demo mail goes through the real pipeline, its agent resolves a few items with a reply
and customers answer the survey; the report is written to files and served at ``/report``.
Every figure the page shows is compared with a count made here in SQL.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from inbox_daemon.agents import add_agent, issue_token
from inbox_daemon.audit import Actor
from inbox_daemon.config import load_settings
from inbox_daemon.demo import DemoRun, ingest_demo
from inbox_daemon.pipeline.hints import HINT_HEADER
from inbox_daemon.report import Report, build_report, earliest_record, phrases_of
from inbox_daemon.storage.engine import create_engine, database_url
from inbox_daemon.storage.schema import feedback_records, outbox, resolution_notices
from inbox_daemon.web.report_page import period, write_report
from inbox_daemon.web.server import start_web

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]

CHROMIUM = Path("/usr/bin/chromium")
CHARTS = ("channel", "category", "language", "sla", "ratings")


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
async def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    return await ingest_demo(tmp_path_factory.mktemp("demo"), resolve_some=True)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(demo: DemoRun) -> AsyncIterator[AsyncEngine]:
    settings = load_settings(demo.config_path)
    engine = create_engine(database_url(settings.storage.url, settings.config_dir))
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def report(engine: AsyncEngine) -> Report:
    until = datetime.now(UTC) + timedelta(seconds=1)
    since = await earliest_record(engine)
    assert since is not None
    return await build_report(engine, since=since, until=until)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def page(chromium: Path) -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        browser: Browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=["--no-sandbox", "--headless"]
        )
        yield await browser.new_page()
        await browser.close()


async def sql_counts(engine: AsyncEngine, column: str) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(feedback_records.c[column], func.count()).group_by(feedback_records.c[column])
        )
        return {str(value): count for value, count in rows.all()}


async def shown_counts(page: Page, key: str) -> dict[str, int]:
    cells = await page.locator(f"table.totals[data-key={key}] tr:has(td)").all_inner_texts()
    return {line.split("\t")[0]: int(line.split("\t")[1]) for line in cells}


async def test_the_report_page_shows_real_charts_and_the_database_counts(
    report: Report, engine: AsyncEngine, page: Page, tmp_path: Path
) -> None:
    written = write_report(report, tmp_path)
    assert {path.name for path in written} >= {"report.html", "volume.csv", "sla.csv"}
    await page.goto((tmp_path / "report.html").as_uri())
    for chart in CHARTS:
        svg = page.locator(f"figure[data-chart={chart}] svg")
        assert await svg.count() == 1, chart
        box = await svg.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100, chart
        assert await svg.locator("path").count() > 5, chart  # axes, ticks and bars drawn
    for key in ("channel", "category", "language"):
        assert await shown_counts(page, key) == await sql_counts(engine, key), key
    await check_satisfaction(page, engine)


async def check_satisfaction(page: Page, engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        notices = await conn.scalar(select(func.count()).select_from(resolution_notices))
        answered = await conn.scalar(
            select(func.count()).where(resolution_notices.c.answered_at.is_not(None))
        )
    assert notices == 3 and answered == 2  # the demo's resolutions and answers
    assert await page.locator("[data-figure=notices]").inner_text() == str(notices)
    assert await page.locator("[data-figure=answered]").inner_text() == str(answered)


async def test_the_csv_files_hold_the_same_figures(
    report: Report, engine: AsyncEngine, tmp_path: Path
) -> None:
    write_report(report, tmp_path)
    with (tmp_path / "volume.csv").open(encoding="utf-8") as rows:
        total = sum(int(row["records"]) for row in csv.DictReader(rows))
    assert total == sum((await sql_counts(engine, "channel")).values())
    with (tmp_path / "satisfaction.csv").open(encoding="utf-8") as rows:
        (satisfaction,) = list(csv.DictReader(rows))
    assert (satisfaction["solved"], satisfaction["not_solved"]) == ("1", "1")
    assert satisfaction["mean_rating"] == "3.5"  # the demo's answers: 5 and 2


async def test_the_hints_sent_are_counted(report: Report, engine: AsyncEngine, page: Page) -> None:
    async with engine.connect() as conn:
        payloads = (
            await conn.execute(select(outbox.c.payload).where(outbox.c.state == "sent"))
        ).scalars()
        sent = Counter(p["headers"][HINT_HEADER] for p in payloads if HINT_HEADER in p["headers"])
    assert sent  # the demo's deposit, account and KYC mail are acknowledged with an article
    assert {f"{row.hint} {row.url}": row.sent for row in report.hints} == dict(sent)


async def test_the_server_serves_the_report_to_signed_in_agents(
    demo: DemoRun, engine: AsyncEngine, page: Page
) -> None:
    settings = load_settings(demo.config_path)
    await add_agent(engine, "Maya", "customer_service", role="lead", actor=Actor("t", "t"))
    token = (await issue_token(engine, "Maya", ttl_days=1, actor=Actor("t", "t"))).token
    async with AsyncExitStack() as stack:
        server = await start_web(stack, engine, settings, port=0)
        base = server.url.rstrip("/")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/report") as response:
                assert response.status == 401
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(
                f"{base}/report", params={"since": "7x"}, headers=headers
            ) as response:
                assert response.status == 400
                assert (await response.json())["error"]["field"] == "since"
        await page.set_extra_http_headers({"Authorization": f"Bearer {token}"})
        await page.goto(f"{base}/report?since=60d")
        await page.set_extra_http_headers({})
        assert await page.locator("figure.chart svg").count() == len(CHARTS)
        assert await shown_counts(page, "channel") == await sql_counts(engine, "channel")


async def test_phrases_are_word_pairs_and_cjk_character_pairs() -> None:
    assert list(phrases_of("My ETH withdrawal is stuck")) == [
        "eth withdrawal",
        "withdrawal stuck",
    ]
    assert list(phrases_of("提现失败")) == ["提现", "现失", "失败"]


@pytest.mark.parametrize(("text", "hours"), [("7d", 168), ("48h", 48), ("30m", 0.5)])
async def test_periods_are_read_with_their_unit(text: str, hours: float) -> None:
    assert period(text) == timedelta(hours=hours)


@pytest.mark.parametrize("text", ["", "7", "d", "-1d", "7w", "abc"])
async def test_malformed_periods_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected a number"):
        period(text)
