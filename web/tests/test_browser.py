"""Journeys in a real browser: Chromium from the machine's packages, driven by
Playwright, against the stack as `make run` starts it. A failed test leaves a screenshot
under .data/test-screenshots/; `UPDATE_SCREENSHOTS=1` also writes the README's two."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.conftest import STAFF_NAME, STAFF_PASSWORD, Site

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REPO = Path(__file__).resolve().parents[2]
FAILURES = REPO / ".data" / "test-screenshots"
README_SCREENSHOTS = REPO / "web" / "screenshots"
SETTLE_MS = 30_000

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium: `apt-get install chromium` (make test does)"
)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1100, "height": 760})
    page = await context.new_page()
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        FAILURES.mkdir(parents=True, exist_ok=True)
        path = FAILURES / f"{request.node.name}.png"
        await page.screenshot(path=str(path), full_page=True)
        print(f"screenshot of the failure: {path}")
    await context.close()


async def keep_for_readme(page: Page, name: str) -> None:
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        README_SCREENSHOTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(README_SCREENSHOTS / f"{name}.png"), full_page=True)


async def sign_in(page: Page, site: Site) -> None:
    await page.goto(f"{site.url}/desk")
    await page.get_by_label("Name").fill(STAFF_NAME)
    await page.get_by_label("Password").fill(STAFF_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="The library today")).to_be_visible()


class TestShopper:
    async def test_search_add_two_books_check_out_and_watch_it_confirm(
        self, site: Site, page: Page
    ) -> None:
        tag = uuid.uuid4().hex[:6]
        first = site.book(title=f"Alpha Voyage {tag}", author="Ann Author", price="11.00", stock=5)
        second = site.book(title=f"Beta Voyage {tag}", author="Bo Author", price="7.50", stock=2)
        await page.goto(site.url)
        await page.get_by_label("Search").fill(tag)
        await page.get_by_role("button", name="Search").click()
        await expect(page.get_by_text("2 books")).to_be_visible()
        for book in (first, second):
            await page.get_by_role("link", name=book["title"]).first.click()
            await expect(page.get_by_role("heading", name=book["title"])).to_be_visible()
            await page.get_by_role("button", name="Add to cart").click()
            await expect(page.get_by_role("heading", name="Your cart")).to_be_visible()
            await page.go_back()
            await page.go_back()
        await page.goto(f"{site.url}/cart")
        await expect(page.get_by_role("cell", name="$18.50")).to_be_visible()
        await page.get_by_role("button", name="Place the order").click()
        await expect(page.get_by_role("heading", name="Order ")).to_be_visible()
        navigations = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))
        await expect(page.locator("#order-status")).to_contain_text("Confirmed", timeout=SETTLE_MS)
        assert navigations == []  # the status came in place, without a reload
        assert site.stock(first["id"]) == 4
        assert site.stock(second["id"]) == 1
        await page.goto(f"{site.url}/books/{first['id']}")
        await expect(page.locator("#availability")).to_contain_text("In stock (4)")
        await page.goto(f"{site.url}/?q={tag}")
        await keep_for_readme(page, "storefront")

    async def test_the_loser_of_a_race_for_the_last_copy_sees_why(
        self, site: Site, browser: Browser
    ) -> None:
        contexts = [await browser.new_context() for _ in range(2)]
        try:
            pages = [await context.new_page() for context in contexts]
            book = site.book(title=f"Last One {uuid.uuid4().hex[:6]}", stock=1)
            for shopper in pages:
                await shopper.goto(f"{site.url}/books/{book['id']}")
                await shopper.get_by_role("button", name="Add to cart").click()
                await expect(shopper.get_by_role("button", name="Place the order")).to_be_visible()
            with site.reservations_held(book["id"]):
                for shopper in pages:
                    await shopper.get_by_role("button", name="Place the order").click()
                    await shopper.wait_for_url("**/orders/*")
            statuses = [p.locator("#order-status") for p in pages]
            for status in statuses:
                await expect(status).not_to_contain_text("Pending", timeout=SETTLE_MS)
            texts = sorted([await s.inner_text() for s in statuses])
            assert texts[0].startswith("Confirmed")
            assert texts[1].startswith("Rejected: ")
            assert "book" in texts[1].lower()
        finally:
            for context in contexts:
                await context.close()

    async def test_keyboard_only(self, site: Site, page: Page) -> None:
        tag = uuid.uuid4().hex[:6]
        book = site.book(title=f"Keys {tag}", stock=3)
        await page.goto(site.url)
        await tab_to(page, "input[name=q]")
        await page.keyboard.type(tag)
        await page.keyboard.press("Enter")
        await expect(page.get_by_text("1 book")).to_be_visible()
        await tab_to(page, f"a[href='/books/{book['id']}']:not(.cover-link)")
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("heading", name=book["title"])).to_be_visible()
        await tab_to(page, "button:text('Add to cart')")
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("link", name=book["title"])).to_be_visible()


async def tab_to(page: Page, selector: str, presses: int = 40) -> None:
    """Press Tab until the element `selector` has the focus."""
    target = page.locator(selector)
    for _ in range(presses):
        await page.keyboard.press("Tab")
        if await target.evaluate("element => element === document.activeElement"):
            return
    raise AssertionError(f"{selector} never took the focus by Tab")


class TestLibrarian:
    async def test_lend_hold_return_and_the_holds_shelf(self, site: Site, page: Page) -> None:
        tag = uuid.uuid4().hex[:6]
        book = site.book(title=f"Only Copy {tag}", copies_total=1)
        ada = site.member(name=f"Ada {tag}")
        ben = site.member(name=f"Ben {tag}")
        await sign_in(page, site)
        await page.get_by_role("link", name="Members").click()
        await page.get_by_label("Find by email or name").fill(f"Ada {tag}")
        await page.get_by_role("button", name="Find").click()
        await page.get_by_role("link", name=f"Ada {tag}").click()
        await page.get_by_label("Book number").fill(str(book["id"]))
        await page.get_by_role("button", name="Lend").click()
        # Pending until a worker checks the copy out; the loans block follows it live.
        await expect(page.get_by_role("button", name="Take return")).to_be_visible(
            timeout=SETTLE_MS
        )

        await page.goto(f"{site.url}/desk/members/{ben['id']}")
        await page.get_by_label("Book number").fill(str(book["id"]))
        await page.get_by_role("button", name="Lend").click()
        await expect(page.get_by_text("number 1 in the queue")).to_be_visible(timeout=SETTLE_MS)

        await page.goto(f"{site.url}/desk/members/{ada['id']}")
        await page.get_by_role("button", name="Take return").click()
        await expect(page.get_by_text("returned")).to_be_visible()
        await page.get_by_role("link", name="Holds shelf").click()
        row = page.get_by_role("row").filter(has_text=f"Only Copy {tag}")
        for _ in range(60):  # the copy reaches the hold through the relay and a worker
            if await row.count():
                break
            await page.wait_for_timeout(500)
            await page.reload()
        await expect(row).to_contain_text(f"member #{ben['id']}")
        await page.get_by_role("link", name="Figures").click()
        await expect(page.locator("svg.chart rect")).to_have_count(30)
        await keep_for_readme(page, "desk")

    async def test_a_refusal_shows_by_the_form_with_the_input_kept(
        self, site: Site, page: Page
    ) -> None:
        for_sale_only = site.book(title="Not For Loan")
        member = site.member()
        await sign_in(page, site)
        await page.goto(f"{site.url}/desk/members/{member['id']}")
        await page.get_by_label("Book number").fill(str(for_sale_only["id"]))
        await page.get_by_role("button", name="Lend").click()
        await expect(page.locator("#lend-error")).to_be_visible()
        await expect(page.get_by_label("Book number")).to_have_value(str(for_sale_only["id"]))


class TestAccessibility:
    async def test_main_pages_have_no_serious_or_critical_violations(
        self, site: Site, page: Page
    ) -> None:
        book = site.book(title="Accessible", stock=3, copies_total=1)
        member = site.member()
        await page.goto(f"{site.url}/books/{book['id']}")
        await page.get_by_role("button", name="Add to cart").click()
        pages = ["/", f"/books/{book['id']}", "/cart", "/orders", "/desk/sign-in"]
        found = {path: await serious_violations(page, f"{site.url}{path}") for path in pages}
        await sign_in(page, site)
        desk = [
            "/desk",
            "/desk/members",
            f"/desk/members/{member['id']}",
            "/desk/holds",
            "/desk/overdue",
        ]
        found |= {path: await serious_violations(page, f"{site.url}{path}") for path in desk}
        assert {path: ids for path, ids in found.items() if ids} == {}


async def serious_violations(page: Page, url: str) -> list[str]:
    await page.goto(url)
    results = await Axe().run(page)
    return [
        f"{violation['id']} ({violation['impact']})"
        for violation in results.response["violations"]
        if violation["impact"] in ("serious", "critical")
    ]
