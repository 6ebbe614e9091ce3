"""The storefront as a shopper without JavaScript meets it, over real HTTP on the stack."""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from devstack.servers import free_port
from devstack.services import ServiceProcess
from tests.conftest import Site, Visitor


def order_id_of(response: httpx.Response) -> int:
    assert response.status_code == 303, response.text
    match = re.fullmatch(r"/orders/(\d+)", response.headers["location"])
    assert match, response.headers["location"]
    return int(match[1])


class TestCatalog:
    def test_search_filters_and_pages_by_the_apis_links(self, site: Site, visitor: Visitor) -> None:
        author = f"Pager {uuid.uuid4().hex[:8]}"
        titles = [f"Volume {n:02}" for n in range(14)]
        for title in titles:
            site.book(title=title, author=author, price="5.00")
        first = visitor.get("/", params={"author": author})
        assert first.status_code == 200
        assert "14 books" in first.text
        shown = re.findall(r"Volume \d\d", first.text)
        assert len(shown) == 12
        next_link = re.search(r'rel="next" href="\?([^"]+)"', first.text)
        assert next_link is not None
        assert "author=Pager" in next_link[1].replace("+", " ")
        second = visitor.get("/?" + next_link[1].replace("&amp;", "&"))
        rest = re.findall(r"Volume \d\d", second.text)
        assert sorted(shown + rest) == titles
        assert 'rel="prev"' in second.text
        assert 'rel="next"' not in second.text

    def test_price_filter_and_text_search(self, site: Site, visitor: Visitor) -> None:
        tag = uuid.uuid4().hex[:8]
        site.book(title=f"Cheap {tag}", price="2.00")
        site.book(title=f"Dear {tag}", price="80.00")
        found = visitor.get("/", params={"q": tag, "max_price": "10"})
        assert f"Cheap {tag}" in found.text
        assert f"Dear {tag}" not in found.text

    def test_the_search_forms_empty_fields_are_no_filter_and_bad_ones_say_why(
        self, visitor: Visitor
    ) -> None:
        blank = visitor.get("/", params={"q": "", "author": "", "min_price": "", "max_price": ""})
        assert blank.status_code == 200
        bad = visitor.get("/", params={"max_price": "cheap"})
        assert bad.status_code == 422
        assert "Please check what you typed" in bad.text
        assert "max_price" in bad.text

    def test_a_title_with_markup_is_text(self, site: Site, visitor: Visitor) -> None:
        book = site.book(title="<script>alert(1)</script>", author="<b>Mallory</b>")
        for path in ("/", f"/books/{book['id']}"):
            page = visitor.get(path).text
            assert "<script>alert(1)</script>" not in page
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
            assert "<b>Mallory</b>" not in page

    def test_book_page_shows_price_stock_copies_and_a_placeholder_cover(
        self, site: Site, visitor: Visitor
    ) -> None:
        book = site.book(title="Shelved", price="12.50", stock=4, copies_total=2)
        page = visitor.get(f"/books/{book['id']}").text
        assert "$12.50" in page
        assert "In stock (4)" in page
        assert "2 of 2 copies on the shelf to borrow" in page
        assert "/static/placeholder.svg?v=" in page

    def test_unknown_book_is_a_404_page(self, visitor: Visitor) -> None:
        response = visitor.get("/books/999999999")
        assert response.status_code == 404
        assert "No book has this address." in response.text

    def test_static_files_are_cached_by_content_hash(self, visitor: Visitor) -> None:
        css = re.search(r'href="(/static/app\.css\?v=[0-9a-f]{12})"', visitor.get("/").text)
        assert css is not None
        response = visitor.get(css[1])
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"


class TestCheckout:
    def test_order_confirmed_and_stock_goes_down(self, site: Site, visitor: Visitor) -> None:
        book = site.book(title="Stocked", stock=5)
        visitor.submit(f"/books/{book['id']}", "/cart", {"book_id": book["id"], "quantity": 2})
        cart = visitor.get("/cart").text
        assert "Stocked" in cart
        assert "$20.00" in cart
        order_id = order_id_of(
            visitor.submit("/cart", "/checkout", {"attempt": attempt_of(visitor)})
        )
        page = visitor.get(f"/orders/{order_id}").text
        assert "Pending" in page or "Confirmed" in page
        site.wait(f"/v1/orders/{order_id}", lambda order: order["status"] == "confirmed")
        assert "Confirmed" in visitor.get(f"/orders/{order_id}/status").text
        assert site.stock(book["id"]) == 3
        assert "Your cart is empty" in visitor.get("/cart").text
        assert f"/orders/{order_id}" in visitor.get("/orders").text

    def test_double_click_and_reload_place_one_order(self, site: Site, visitor: Visitor) -> None:
        book = site.book(title="Once", stock=10)
        visitor.submit(f"/books/{book['id']}", "/cart", {"book_id": book["id"], "quantity": 1})
        cart_page = visitor.get("/cart").text
        token = re.search(r'name="csrftoken" value="([^"]+)"', cart_page)
        assert token is not None
        form = {"csrftoken": token[1], "attempt": attempt_of(visitor, cart_page)}
        # Each click sends the cookies the page was loaded with, as a browser does.
        tabs = [
            httpx.Client(base_url=visitor.client.base_url, cookies=visitor.client.cookies)
            for _ in range(2)
        ]
        answers = post_at_once("/checkout", [(tab, form) for tab in tabs])
        placed = {order_id_of(answer) for answer in answers}
        assert len(placed) == 1
        # The reload after submit posts the same form again.
        visitor.client.cookies.update(answers[0].cookies)
        assert order_id_of(visitor.client.post("/checkout", data=form)) in placed
        [order_id] = placed
        customer = site.orders.get(f"/v1/orders/{order_id}").json()["customer_id"]
        orders = site.orders.get("/v1/orders", params={"customer_id": customer}).json()
        assert [o["id"] for o in orders["data"]] == [order_id]

    def test_more_than_the_stock_is_refused_on_the_cart_with_the_reason(
        self, site: Site, visitor: Visitor
    ) -> None:
        book = site.book(title="Scarce", stock=1)
        visitor.submit(f"/books/{book['id']}", "/cart", {"book_id": book["id"], "quantity": 3})
        refused = visitor.submit("/cart", "/checkout", {"attempt": attempt_of(visitor)})
        assert refused.status_code == 409
        assert "Not enough stock" in refused.text
        assert "requested 3, available 1" in refused.text
        assert "Scarce" in visitor.get("/cart").text  # kept, to change and try again

    def test_two_shoppers_for_the_last_copy_one_order_is_rejected_with_its_reason(
        self, site: Site
    ) -> None:
        """Both pass the API's stock check; the saga reserves the copy for one and rejects
        the other, whose page shows why."""
        book = site.book(title="Last Copy", stock=1)
        shoppers = [Visitor(site), Visitor(site)]
        with site.reservations_held(book["id"]):
            answers = []
            for shopper in shoppers:
                shopper.submit(f"/books/{book['id']}", "/cart", {"book_id": book["id"]})
                answers.append(
                    shopper.submit("/cart", "/checkout", {"attempt": attempt_of(shopper)})
                )
        statuses = {}
        for n, answer in enumerate(answers):
            order = site.wait(
                f"/v1/orders/{order_id_of(answer)}", lambda o: o["status"] != "pending"
            )
            statuses[order["status"]] = (n, order)
        assert set(statuses) == {"confirmed", "rejected"}
        loser, rejected = statuses["rejected"]
        status = shoppers[loser].get(f"/orders/{rejected['id']}/status").text
        assert "Rejected" in status
        assert rejected["rejection_reason"] in status
        assert "hx-trigger" not in status  # settled: the page stops polling

    def test_cancel_while_allowed(self, site: Site, visitor: Visitor) -> None:
        book = site.book(title="Regret", stock=3)
        visitor.submit(f"/books/{book['id']}", "/cart", {"book_id": book["id"], "quantity": 1})
        order_id = order_id_of(
            visitor.submit("/cart", "/checkout", {"attempt": attempt_of(visitor)})
        )
        site.wait(f"/v1/orders/{order_id}", lambda order: order["status"] == "confirmed")
        cancelled = visitor.submit(f"/orders/{order_id}", f"/orders/{order_id}/cancel", {})
        assert cancelled.status_code == 303
        assert "Cancelled" in visitor.get(f"/orders/{order_id}").text
        site.wait(f"/v1/books/{book['id']}", lambda b: b["stock"] == 3, client=site.books)

    def test_another_browser_cannot_see_the_order(self, site: Site, visitor: Visitor) -> None:
        book = site.book(title="Private", stock=3)
        visitor.submit(f"/books/{book['id']}", "/cart", {"book_id": book["id"], "quantity": 1})
        order_id = order_id_of(
            visitor.submit("/cart", "/checkout", {"attempt": attempt_of(visitor)})
        )
        stranger = Visitor(site)
        assert stranger.get(f"/orders/{order_id}").status_code == 404
        assert f"/orders/{order_id}" not in stranger.get("/orders").text

    def test_a_post_without_the_csrf_field_is_refused_and_changes_nothing(
        self, site: Site, visitor: Visitor
    ) -> None:
        book = site.book(title="Forged", stock=3)
        visitor.submit(f"/books/{book['id']}", "/cart", {"book_id": book["id"], "quantity": 1})
        forged = visitor.client.post("/checkout", data={"attempt": attempt_of(visitor)})
        assert forged.status_code == 403
        assert "Forged" in visitor.get("/cart").text  # still in the cart: nothing ordered


def post_at_once(
    path: str, posts: list[tuple[httpx.Client, dict[str, str]]]
) -> list[httpx.Response]:
    """POST each form from its own client at the same time (one thread each)."""
    with ThreadPoolExecutor(max_workers=len(posts)) as pool:
        return list(pool.map(lambda post: post[0].post(path, data=post[1]), posts))


def attempt_of(visitor: Visitor, cart_page: str | None = None) -> str:
    page = cart_page or visitor.get("/cart").text
    attempt = re.search(r'name="attempt" value="([^"]+)"', page)
    assert attempt is not None, page
    return attempt[1]


class TestDependencyDown:
    def test_catalog_down_is_a_friendly_503_and_the_rest_works(self, site: Site) -> None:
        env = {
            "WEB_BOOKS_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
            "WEB_ORDERS_URL": site.orders_url,
            "WEB_SECRET_KEY": site.env["WEB_SECRET_KEY"],
            "WEB_STAFF_FILE": site.env["WEB_STAFF_FILE"],
        }
        with ServiceProcess("web.app:create_app", free_port(), env) as web:
            catalog = httpx.get(f"{web.url}/")
            assert catalog.status_code == 503
            assert "The catalog is unavailable" in catalog.text
            assert "Traceback" not in catalog.text
            assert catalog.headers["retry-after"] == "30"
            assert httpx.get(f"{web.url}/orders").status_code == 200
            assert httpx.get(f"{web.url}/desk/sign-in").status_code == 200
