"""The queue page in a real browser (Debian's chromium driven by Playwright) over the demo data.

The demo mail goes through the real pipeline (loopback IMAP and SMTP, one daemon run), the
web application serves the resulting database on loopback, and each test signs in with a
support agent's own token and works the page the way a person would.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from inbox_daemon.agents import add_agent, issue_token, revoke_tokens
from inbox_daemon.audit import Actor
from inbox_daemon.config import load_settings
from inbox_daemon.demo import DemoRun, ingest_demo
from inbox_daemon.storage.engine import create_engine, database_url
from inbox_daemon.web import pages
from inbox_daemon.web.server import start_web

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
#: The people who sign in: name -> (team, role). Leads see every team's items.
STAFF = {
    "Maya": ("customer_service", "lead"),
    "Noor": ("finance", "lead"),
    "Kim": ("customer_service", "agent"),
}
WIDE = {"width": 1400, "height": 900}
#: Red, orange, blue and grey chips (the light scheme's), white text on each.
PRIORITY_COLOURS = {
    "P1": "rgb(198, 40, 40)",
    "P2": "rgb(230, 81, 0)",
    "P3": "rgb(30, 107, 214)",
    "P4": "rgb(96, 112, 128)",
}
PHONE = {"width": 390, "height": 844}
#: The README's screenshot is rewritten only when asked: it is committed, and every run
#: would otherwise change its due times ("in 3h 59m").
SCREENSHOT = ROOT / "docs" / "queue.png"
UPDATE_SCREENSHOT = os.environ.get("INBOX_UPDATE_SCREENSHOT") == "1"

#: A customer who writes markup: it must reach the agent as text, and never run.
SCRIPT_MAIL = (
    b"Message-ID: <markup-1@example.net>\r\n"
    b"Date: Mon, 23 Nov 2026 08:30:00 +0000\r\n"
    b"From: Eve Marsh <eve.marsh@example.net>\r\n"
    b"To: support@example.com\r\n"
    b"Subject: <script>window.pwned = 1</script> deposit not credited\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    b'My USDT deposit is not credited. <img src=x onerror="window.pwned = 2">\r\n'
    b"<b>bold?</b> <script>window.pwned = 3</script>\r\n"
)
SCRIPT_SUBJECT = "<script>window.pwned = 1</script> deposit not credited"


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed with apt-get when it is missing (root only)."""
    if CHROMIUM.exists():
        return CHROMIUM
    problem = _install_chromium()
    if not CHROMIUM.exists():
        pytest.skip(f"no browser for the page tests: {problem}")
    return CHROMIUM


def _install_chromium() -> str:
    if shutil.which("apt-get") is None:
        return "/usr/bin/chromium is missing and apt-get is not available"
    if os.geteuid() != 0:
        return "/usr/bin/chromium is missing; `apt-get install chromium` needs root"
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if result.returncode != 0:
            return f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}"
    return "apt-get install chromium did not install /usr/bin/chromium"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    return await ingest_demo(tmp_path_factory.mktemp("demo"), extra_mail=[SCRIPT_MAIL])


#: Each agent's token, filled in by the ``site`` fixture.
TOKENS: dict[str, str] = {}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(demo: DemoRun) -> AsyncIterator[str]:
    """The page's URL, served over the demo's database; it refreshes every second."""
    settings = load_settings(demo.config_path)
    web = settings.web.model_copy(update={"page_refresh_s": 1.0})
    settings = settings.model_copy(update={"web": web})
    async with AsyncExitStack() as stack:
        engine = create_engine(database_url(settings.storage.url, settings.config_dir))
        stack.push_async_callback(engine.dispose)
        operator = Actor("cli:test", "cli test@localhost")
        for name, (team, role) in STAFF.items():
            await add_agent(engine, name, team, role=role, actor=operator)
            TOKENS[name] = (await issue_token(engine, name, ttl_days=1, actor=operator)).token
        long_ago = datetime.now(UTC) - timedelta(days=3)
        expired = await issue_token(engine, "Kim", ttl_days=1, actor=operator, now=long_ago)
        revoked = await issue_token(engine, "Kim", ttl_days=1, actor=operator)
        await revoke_tokens(engine, "Kim", revoked.info.token_id, actor=operator)
        TOKENS["expired"], TOKENS["revoked"] = expired.token, revoked.token
        server = await start_web(stack, engine, settings, port=0)
        yield server.url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sso_site(demo: DemoRun, site: str) -> AsyncIterator[str]:
    """The page behind a reverse proxy that signs people in: it sets X-Forwarded-User."""
    settings = load_settings(demo.config_path)
    web = settings.web.model_copy(update={"sso_header": "X-Forwarded-User"})
    settings = settings.model_copy(update={"web": web})
    async with AsyncExitStack() as stack:
        engine = create_engine(database_url(settings.storage.url, settings.config_dir))
        stack.push_async_callback(engine.dispose)
        yield (await start_web(stack, engine, settings, port=0)).url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


class Agent:
    """One person's browser tab on the queue page, and what went wrong in it."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("dialog", self._dialog)

    async def _dialog(self, dialog: Any) -> None:  # an alert() would mean script ran
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    async def sign_in(self, site: str, name: str) -> None:
        await self.page.goto(site)
        form = self.page.locator("#signin")
        await expect(form).to_be_visible()
        await form.get_by_label("Access token").fill(TOKENS[name])
        await form.get_by_role("button", name="Sign in").click()
        await expect(self.page.locator("#who")).to_have_text(name)
        await expect(self.page.locator("tr.item").first).to_be_attached()

    def row(self, reference: str) -> Any:
        return self.page.locator(f'tr.item[data-ref="{reference}"]')

    async def open(self, reference: str) -> Any:
        row = self.row(reference)
        await row.locator("td.subject").click()
        detail = self.page.locator(f'#detail article[data-ref="{reference}"]')
        await expect(detail).to_be_visible()
        return detail


@pytest_asyncio.fixture(loop_scope="module")
async def open_agent(browser: Browser, site: str) -> AsyncIterator[Any]:
    """Opens signed-in tabs (a fresh browser profile each); checks no script error at the end."""
    agents: list[Agent] = []
    async with AsyncExitStack() as stack:

        async def open_tab(name: str, viewport: dict[str, int] = WIDE) -> Agent:
            context = await browser.new_context(viewport=viewport, color_scheme="light")
            stack.push_async_callback(context.close)
            agent = Agent(await context.new_page())
            await agent.sign_in(site, name)
            agents.append(agent)
            return agent

        yield open_tab
    for agent in agents:
        assert agent.errors == []
        assert agent.dialogs == []


async def api(site: str, method: str, path: str, *, who: str = "Maya", **kwargs: Any) -> Any:
    """A JSON API call signed in as ``who`` (a lead by default: every team's items)."""
    headers = {"Authorization": f"Bearer {TOKENS[who]}"}
    async with (
        aiohttp.ClientSession(base_url=site, headers=headers) as session,
        session.request(method, path, **kwargs) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


async def open_items(site: str) -> list[dict[str, Any]]:
    listing = await api(site, "GET", "/api/v1/items?status=open&limit=500")
    return list(listing["items"])


def by_subject(items: list[dict[str, Any]], fragment: str) -> str:
    [reference] = [item["reference"] for item in items if fragment in item["subject"]]
    return reference


def filter_select(page: Page, name: str) -> Any:
    return page.locator(f'#filters select[name="{name}"]')


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --- what a person sees ----------------------------------------------------------------------


async def test_screenshot_of_the_queue_with_the_demo_data(open_agent: Any, site: str) -> None:
    """Rows, priority colours and the claim flow, then the picture the README shows."""
    agent = await open_agent("Maya")
    page = agent.page
    items = await open_items(site)
    await expect(page.locator("tr.item")).to_have_count(len(items))
    assert len(items) == 28  # the demo's 19 open mails, its 8 posts and DMs on X, and the markup
    for priority, colour in PRIORITY_COLOURS.items():
        chip = page.locator(f"td.pri .chip.{priority.lower()}").first
        await expect(chip).to_have_css("background-color", colour)
        await expect(chip).to_have_css("color", "rgb(255, 255, 255)")

    await page.locator("tr.incident .toggle").first.click()
    reference = by_subject(items, "BTC deposit not credited")
    detail = await agent.open(reference)
    await detail.get_by_role("button", name="Claim").click()
    await expect(detail.locator(".holder")).to_have_text("Maya (you)")
    await expect(agent.row(reference).locator(".badge")).to_have_text("claimed")
    await expect(page.locator("#toast")).to_contain_text(f"You hold {reference}")
    await expect(page.locator("#toast")).to_be_hidden(timeout=10_000)

    picture = await page.screenshot()
    assert png_size(picture) == (WIDE["width"], WIDE["height"])
    if UPDATE_SCREENSHOT or not SCREENSHOT.exists():
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(picture)
    assert png_size(SCREENSHOT.read_bytes()) == (WIDE["width"], WIDE["height"])


async def test_the_page_asks_for_the_token_once(
    open_agent: Any, site: str, browser: Browser
) -> None:
    agent = await open_agent("Noor")
    await agent.page.reload()
    await expect(agent.page.locator("tr.item").first).to_be_visible()
    await expect(agent.page.locator("#signin")).to_be_hidden()
    await expect(agent.page.locator("#who")).to_have_text("Noor")

    context = await browser.new_context(viewport=WIDE)
    try:
        page = await context.new_page()
        await page.goto(site)
        form = page.locator("#signin")
        await form.get_by_label("Access token").fill("not-the-token-at-all")
        await form.get_by_role("button", name="Sign in").click()
        await expect(page.locator("#signin-problem")).to_contain_text("not valid")
        await expect(page.locator("tr.item")).to_have_count(0)
    finally:
        await context.close()


async def test_rows_are_sorted_by_priority_then_due_time(open_agent: Any, site: str) -> None:
    agent = await open_agent("Maya")
    items = await open_items(site)
    await expect(agent.page.locator("tr.item")).to_have_count(len(items))
    shown = await agent.page.locator("tr.item").evaluate_all(
        "rows => rows.map(row => [row.dataset.ref, row.querySelector('.chip').textContent])"
    )
    assert sorted(ref for ref, _ in shown) == sorted(item["reference"] for item in items)
    priorities = [priority for _, priority in shown]
    assert priorities == sorted(priorities)
    listed = [item["reference"] for item in items]
    assert [ref for ref, _ in shown] == listed  # the incident's reports are adjacent here


async def test_filters_narrow_the_rows_and_survive_a_reload(open_agent: Any, site: str) -> None:
    agent = await open_agent("Maya")
    page = agent.page
    items = await open_items(site)
    await filter_select(page, "team").select_option("risk_control")
    risk = [item["reference"] for item in items if item["team"] == "risk_control"]
    await expect(page.locator("tr.item")).to_have_count(len(risk))
    assert "team=risk_control" in page.url

    await page.reload()
    await expect(filter_select(page, "team")).to_have_value("risk_control")
    await expect(page.locator("tr.item")).to_have_count(len(risk))

    await page.get_by_role("button", name="Reset").click()
    await filter_select(page, "language").select_option("ja")
    await expect(page.locator("tr.item")).to_have_count(1)
    await expect(page.locator("tr.item td.lang")).to_have_text("ja")
    await filter_select(page, "language").select_option("")
    await filter_select(page, "priority").select_option("P1")
    p1 = [item for item in items if item["priority"] == "P1"]
    await expect(page.locator("tr.item")).to_have_count(len(p1))
    await filter_select(page, "channel").select_option("email")
    await expect(page.locator("tr.item")).to_have_count(len(p1))
    await filter_select(page, "status").select_option("resolved")
    await expect(page.locator("tr.empty")).to_have_text("Nothing matches these filters.")


async def test_claim_next_opens_the_most_urgent_waiting_item_of_the_team(
    open_agent: Any, site: str
) -> None:
    agent = await open_agent("Maya")
    page = agent.page
    await expect(page.get_by_role("button", name="Claim next")).to_be_disabled()
    await filter_select(page, "team").select_option("product")
    waiting = [i for i in await open_items(site) if i["team"] == "product" and not i["assignee"]]
    await page.get_by_role("button", name="Claim next").click()
    detail = page.locator(f'#detail article[data-ref="{waiting[0]["reference"]}"]')
    await expect(detail.locator(".holder")).to_have_text("Maya (you)")


async def test_an_incident_row_expands_to_its_reports(open_agent: Any, site: str) -> None:
    agent = await open_agent("Maya")
    page = agent.page
    incident = page.locator("tr.incident").first
    await expect(incident).to_contain_text("problems with withdrawal ETH ERC20")
    incident_id = await incident.get_attribute("data-incident")
    members = page.locator(f'tr.item[data-member-of="{incident_id}"]')
    await expect(members).to_have_count(2)
    for index in range(2):
        await expect(members.nth(index)).to_be_hidden()
    toggle = incident.locator(".toggle")
    await toggle.click()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    for index in range(2):
        await expect(members.nth(index)).to_be_visible()
    detail = await api(site, "GET", f"/api/v1/incidents/{incident_id}")
    shown = set(await members.evaluate_all("rows => rows.map(row => row.dataset.ref)"))
    assert shown == {report["reference"] for report in detail["reports"]}
    await toggle.click()
    await expect(members.first).to_be_hidden()


async def test_the_detail_shows_texts_reasons_and_the_acknowledgment(
    open_agent: Any, site: str
) -> None:
    agent = await open_agent("Maya")
    items = await open_items(site)
    detail = await agent.open(by_subject(items, "account hacked"))
    await expect(detail.locator("h2")).to_contain_text("account hacked")
    await expect(detail.locator("section[aria-label=Message] > .text")).to_be_visible()
    original = detail.locator("details.original")
    await original.locator("summary").click()
    await expect(original.locator(".text")).to_be_visible()
    reasons = detail.locator("dl.reasons dt")
    labels = await reasons.all_text_contents()
    assert any(label.startswith("category ") for label in labels)
    assert any(label.startswith("priority P1") for label in labels)
    assert any(label.startswith("team ") for label in labels)
    await expect(detail.locator(".ack")).to_contain_text("Sent")

    withheld = await agent.open(by_subject(items, "Automatische Antwort"))
    await expect(withheld.locator(".ack")).to_contain_text("None sent: out-of-office reply")
    await withheld.get_by_role("button", name="Close the detail").click()
    await expect(agent.page.locator("#detail")).to_be_hidden()


async def test_claim_and_resolve_through_the_page(open_agent: Any, site: str) -> None:
    maya, noor = await open_agent("Maya"), await open_agent("Noor")
    items = await open_items(site)
    reference = by_subject(items, "KYC")
    for agent in (maya, noor):
        await agent.open(reference)
    # Noor is writing a note, so her tab keeps the item as she first saw it.
    noor_note = noor.page.locator("#detail textarea[name=note]")
    await noor_note.fill("Looking into it")

    await maya.page.locator("#detail").get_by_role("button", name="Claim").click()
    await expect(maya.page.locator("#detail .holder")).to_have_text("Maya (you)")
    await expect(maya.page.locator("#detail button[data-action=claim]")).to_have_text("Renew claim")
    # Noor's tab still offers the claim; the server refuses it and the page says why.
    await noor.page.locator("#detail").get_by_role("button", name="Claim").click()
    await expect(noor.page.locator("#detail .problem")).to_contain_text("claimed by Maya")
    await noor_note.fill("")
    await noor.page.locator("body").click(position={"x": 5, "y": 5})  # leaves the note
    await expect(noor.page.locator("#detail .holder")).to_have_text("Maya")
    await expect(noor.page.locator("#detail button[data-action=resolve]")).to_be_disabled()

    await maya.page.locator("#detail textarea[name=note]").fill("Asked for a clearer photo.")
    await maya.page.locator("#detail").get_by_role("button", name="Resolve").click()
    await expect(maya.page.locator("#toast")).to_contain_text(f"{reference} resolved")
    await expect(maya.row(reference)).to_have_count(0)  # the open queue no longer has it
    await expect(maya.page.locator("#detail .claim-state")).to_contain_text("Resolved by Maya")
    item = await api(site, "GET", f"/api/v1/items/{reference}")
    assert (item["item"]["status"], item["item"]["resolution_note"]) == (
        "resolved",
        "Asked for a clearer photo.",
    )


async def test_what_a_customer_wrote_is_shown_as_text(open_agent: Any, site: str) -> None:
    agent = await open_agent("Maya")
    page = agent.page
    items = await open_items(site)
    reference = by_subject(items, "<script>")
    await expect(agent.row(reference).locator(".subj")).to_have_text(SCRIPT_SUBJECT)
    detail = await agent.open(reference)
    await expect(detail.locator("h2")).to_have_text(SCRIPT_SUBJECT)
    text = detail.locator("section[aria-label=Message] > .text")
    await expect(text).to_contain_text('<img src=x onerror="window.pwned = 2">')
    await expect(text).to_contain_text("<b>bold?</b> <script>window.pwned = 3</script>")
    # Not one element inside what the customer wrote: it is all text.
    assert await page.locator("#rows tr.item .subj *, #detail h2 *, #detail .text *").count() == 0
    assert await page.locator("#rows script, #detail script, #detail img").count() == 0
    assert await page.evaluate("window.pwned") is None


async def test_auto_refresh_keeps_filters_scroll_and_open_rows(open_agent: Any, site: str) -> None:
    agent = await open_agent("Maya", {"width": 1200, "height": 420})
    page = agent.page
    await filter_select(page, "status").select_option("open")
    toggle = page.locator("tr.incident .toggle").first
    await toggle.click()
    items = await open_items(site)
    opened = by_subject(items, "Futures tab")
    await agent.open(opened)
    await page.mouse.wheel(0, 300)
    await page.wait_for_function("window.scrollY > 0")
    scrolled = await page.evaluate("window.scrollY")

    other = by_subject(items, "Kayıt bonusu")
    await api(site, "POST", f"/api/v1/items/{other}/claim", who="Noor")
    await expect(agent.row(other).locator(".badge")).to_have_text("claimed", timeout=10_000)

    assert await page.evaluate("window.scrollY") == scrolled
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    await expect(page.locator(f'#detail article[data-ref="{opened}"]')).to_be_visible()
    await expect(agent.row(opened)).to_have_class(re.compile(r"\bselected\b"))
    await expect(filter_select(page, "status")).to_have_value("open")


async def test_show_more_appends_the_next_page_and_refresh_keeps_it(
    open_agent: Any, site: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "PAGE_SIZE", 4)
    agent = await open_agent("Maya")
    page = agent.page
    items = await open_items(site)
    more = page.get_by_role("button", name="Show more")
    for shown in range(4, len(items), 4):
        await expect(page.locator("tr.item")).to_have_count(shown)
        await more.click()
    await expect(page.locator("tr.item")).to_have_count(len(items))
    await expect(more).to_be_hidden()

    last = items[-1]["reference"]
    await api(site, "POST", f"/api/v1/items/{last}/claim", who="Noor")
    await expect(agent.row(last).locator(".badge")).to_have_text("claimed", timeout=10_000)
    await expect(page.locator("tr.item")).to_have_count(len(items))


async def test_the_page_works_at_phone_width(open_agent: Any, site: str) -> None:
    agent = await open_agent("Maya", PHONE)
    page = agent.page
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]  # nothing scrolls sideways
    await expect(page.locator("table.queue thead")).to_be_hidden()
    first = page.locator("tr.item").first
    await expect(first).to_have_css("display", "grid")
    reference = await first.get_attribute("data-ref")
    assert reference is not None
    await first.locator("td.subject").click()
    panel = page.locator("#detail")
    await expect(panel.locator(f'article[data-ref="{reference}"]')).to_be_visible()
    box = await panel.bounding_box()
    assert box is not None
    assert (box["x"], box["y"], box["width"]) == (0, 0, PHONE["width"])
    await page.go_back()
    await expect(panel).to_be_hidden()
    await expect(first).to_be_visible()


# --- who signs in, and what they see ---------------------------------------------------------

#: Teams whose items only their own members (and leads and admins) see, by default.
RESTRICTED = {"finance", "risk_control", "compliance"}


async def test_an_agent_sees_only_the_items_their_team_may_see(open_agent: Any, site: str) -> None:
    kim = await open_agent("Kim")  # customer_service, not a lead
    items = await open_items(site)  # as Maya, a lead: everything
    hidden = [item["reference"] for item in items if item["team"] in RESTRICTED]
    seen = [item["reference"] for item in items if item["team"] not in RESTRICTED]
    assert hidden and seen
    await expect(kim.page.locator("tr.item")).to_have_count(len(seen))
    shown = await kim.page.locator("tr.item").evaluate_all("rows => rows.map(r => r.dataset.ref)")
    assert sorted(shown) == sorted(seen)
    teams = await filter_select(kim.page, "team").locator("option").all_text_contents()
    assert not RESTRICTED & set(teams)
    # Opening a hidden item by its address says what an unknown reference says.
    await kim.page.evaluate(f"location.hash = '{hidden[0]}'")
    await expect(kim.page.locator("#detail .problem")).to_contain_text(
        f"no feedback record has the reference {hidden[0]}"
    )
    await expect(kim.page.locator("#detail article")).to_have_count(0)


async def test_the_detail_shows_who_opened_and_worked_the_item(open_agent: Any, site: str) -> None:
    agent = await open_agent("Noor")
    reference = by_subject(await open_items(site), "Futures tab")
    detail = await agent.open(reference)
    audit = detail.locator("section[aria-label='Audit log'] li")
    await expect(audit.filter(has_text="Noor view")).to_have_count(1)
    await detail.get_by_role("button", name="Claim").click()
    await expect(audit.filter(has_text="Noor claim")).to_have_count(1)
    await expect(audit.filter(has_text="Noor claim")).to_contain_text("from http 127.0.0.1")
    listed = await api(site, "GET", f"/api/v1/items/{reference}", who="Noor")
    # The page re-reads the open item every second: one view is logged, not one a second.
    assert [row["action"] for row in listed["audit"] if row["actor"] == "Noor"] == [
        "view",
        "claim",
    ]


@pytest.mark.parametrize(("token", "says"), [("expired", "expired"), ("revoked", "revoked")])
async def test_an_expired_or_revoked_token_asks_to_sign_in_again(
    site: str, browser: Browser, token: str, says: str
) -> None:
    context = await browser.new_context(viewport=WIDE)
    try:
        page = await context.new_page()
        await page.goto(site)
        form = page.locator("#signin")
        await form.get_by_label("Access token").fill(TOKENS[token])
        await form.get_by_role("button", name="Sign in").click()
        await expect(page.locator("#signin-problem")).to_contain_text(says)
        await expect(page.locator("#signin")).to_be_visible()
        await expect(page.locator("tr.item")).to_have_count(0)
    finally:
        await context.close()


async def test_the_proxy_signs_the_agent_in_without_a_token(
    sso_site: str, browser: Browser
) -> None:
    context = await browser.new_context(
        viewport=WIDE, extra_http_headers={"X-Forwarded-User": "Kim"}
    )
    try:
        page = await context.new_page()
        await page.goto(sso_site)
        await expect(page.locator("#who")).to_have_text("Kim")
        await expect(page.locator("tr.item").first).to_be_visible()
        await expect(page.locator("#signin")).to_be_hidden()
        teams = await page.locator("tr.item td.team").all_text_contents()
        assert teams and not RESTRICTED & set(teams)  # Kim's own view, not a lead's
    finally:
        await context.close()
