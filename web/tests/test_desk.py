"""The librarian's desk over real HTTP on the stack: staff only, every refusal shown by
the form that caused it with the input kept."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
import psycopg
import pytest

from tests.conftest import STAFF_NAME, STAFF_PASSWORD, Site, Visitor


def member_id_of(location: str) -> int:
    match = re.fullmatch(r"/desk/members/(\d+)", location)
    assert match, location
    return int(match[1])


class TestSignIn:
    @pytest.mark.parametrize("path", ["/desk", "/desk/members", "/desk/holds", "/desk/overdue"])
    def test_every_desk_page_asks_to_sign_in_first(self, visitor: Visitor, path: str) -> None:
        response = visitor.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == f"/desk/sign-in?next={path}"

    def test_a_wrong_password_is_refused_with_the_name_kept(self, visitor: Visitor) -> None:
        response = visitor.submit(
            "/desk/sign-in", "/desk/sign-in", {"name": STAFF_NAME, "password": "not it at all"}
        )
        assert response.status_code == 401
        assert "That name and password do not match." in response.text
        assert f'value="{STAFF_NAME}"' in response.text
        assert visitor.get("/desk").status_code == 303

    def test_sign_in_goes_back_where_asked_and_sign_out_ends_it(self, visitor: Visitor) -> None:
        response = visitor.submit(
            "/desk/sign-in?next=/desk/holds",
            "/desk/sign-in",
            {"name": STAFF_NAME, "password": STAFF_PASSWORD, "next": "/desk/holds"},
        )
        assert response.headers["location"] == "/desk/holds"
        assert visitor.get("/desk/holds").status_code == 200
        assert visitor.submit("/desk/holds", "/desk/sign-out", {}).status_code == 303
        assert visitor.get("/desk/holds").status_code == 303

    def test_next_never_leaves_the_desk(self, visitor: Visitor) -> None:
        response = visitor.submit(
            "/desk/sign-in",
            "/desk/sign-in",
            {"name": STAFF_NAME, "password": STAFF_PASSWORD, "next": "//evil.example/desk"},
        )
        assert response.headers["location"] == "/desk"

    def test_the_session_cookie_is_httponly_and_samesite(self, visitor: Visitor) -> None:
        response = visitor.submit(
            "/desk/sign-in", "/desk/sign-in", {"name": STAFF_NAME, "password": STAFF_PASSWORD}
        )
        cookie = next(
            value
            for name, value in response.headers.multi_items()
            if name == "set-cookie" and value.startswith("bookstore_session=")
        )
        assert "httponly" in cookie.lower()
        assert "samesite=lax" in cookie.lower()


class TestStaffCommand:
    def run(self, site: Site, *args: str, password: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "web", "staff", *args],
            input=password + "\n",
            env=site.env,
            text=True,
            capture_output=True,
            check=False,
        )

    def test_add_then_remove_an_account(self, site: Site, visitor: Visitor) -> None:
        added = self.run(site, "add", "temp.staff", password="a long enough password")
        assert added.returncode == 0, added.stderr
        stored = open(site.env["WEB_STAFF_FILE"]).read()  # noqa: SIM115
        assert "a long enough password" not in stored
        assert "$argon2id$" in stored
        signed_in = visitor.submit(
            "/desk/sign-in",
            "/desk/sign-in",
            {"name": "temp.staff", "password": "a long enough password"},
        )
        assert signed_in.status_code == 303
        assert self.run(site, "remove", "temp.staff").returncode == 0
        assert "temp.staff" not in open(site.env["WEB_STAFF_FILE"]).read()  # noqa: SIM115

    @pytest.mark.parametrize(
        ("name", "password", "error"),
        [
            ("ok-name", "short", "at least 10 characters"),
            ("Bad Name", "long enough password", "a name is 1-64 of"),
        ],
    )
    def test_bad_input_is_a_one_line_error(
        self, site: Site, name: str, password: str, error: str
    ) -> None:
        result = self.run(site, "add", name, password=password)
        assert result.returncode == 1
        assert error in result.stderr
        assert "Traceback" not in result.stderr

    def test_removing_an_unknown_account_says_so(self, site: Site) -> None:
        result = self.run(site, "remove", "nobody-here")
        assert result.returncode == 1
        assert "no staff account named 'nobody-here'" in result.stderr


class TestMembers:
    def test_register_then_find_by_email_or_name(self, librarian: Visitor) -> None:
        response = librarian.submit(
            "/desk/members",
            "/desk/members",
            {"name": "Octavia Butler", "email": "octavia@example.org"},
        )
        assert response.status_code == 303
        member_id = member_id_of(response.headers["location"])
        page = librarian.get(f"/desk/members/{member_id}").text
        assert "Octavia Butler" in page
        for q in ("OCTAVIA@example.org", "Butler"):
            assert (
                f"/desk/members/{member_id}" in librarian.get("/desk/members", params={"q": q}).text
            )

    def test_a_refused_registration_shows_why_and_keeps_the_input(self, librarian: Visitor) -> None:
        response = librarian.submit(
            "/desk/members", "/desk/members", {"name": "Nobody", "email": "not-an-email"}
        )
        assert response.status_code == 422
        assert 'value="not-an-email"' in response.text
        assert 'value="Nobody"' in response.text
        assert 'aria-invalid="true"' in response.text

    def test_a_taken_email_is_named(self, site: Site, librarian: Visitor) -> None:
        taken = site.member(email="taken@example.org")
        response = librarian.submit(
            "/desk/members", "/desk/members", {"name": "Twin", "email": "TAKEN@example.org"}
        )
        assert response.status_code == 409
        assert "taken@example.org" in response.text.lower()
        assert taken["email"] == "taken@example.org"


class TestLending:
    def lend(self, librarian: Visitor, member_id: int, book_id: int | str) -> httpx.Response:
        page = f"/desk/members/{member_id}"
        key = re.search(r'name="key" value="([^"]+)"', librarian.get(page).text)
        assert key is not None
        return librarian.submit(page, f"{page}/lend", {"book_id": str(book_id), "key": key[1]})

    def test_lend_return_and_the_copy_goes_to_the_hold(
        self, site: Site, librarian: Visitor
    ) -> None:
        book = site.book(title="One Copy", copies_total=1)
        first, second = site.member(name="First Reader"), site.member(name="Second Reader")
        lent = self.lend(librarian, first["id"], book["id"])
        assert lent.status_code == 303
        loan = site.wait(
            f"/v1/members/{first['id']}/borrows", lambda page: page["data"][0]["status"] == "active"
        )["data"][0]
        assert "Take return" in librarian.get(f"/desk/members/{first['id']}").text

        assert self.lend(librarian, second["id"], book["id"]).status_code == 303
        site.wait(
            f"/v1/members/{second['id']}/borrows", lambda page: page["data"][0]["status"] == "held"
        )
        assert "number 1 in the queue" in librarian.get(f"/desk/members/{second['id']}").text

        returned = librarian.submit(
            f"/desk/members/{first['id']}",
            f"/desk/borrows/{loan['id']}/return",
            {"member_id": first["id"]},
        )
        assert returned.status_code == 303
        hold = site.wait(
            f"/v1/holds?member_id={second['id']}", lambda page: page["data"][0]["status"] == "ready"
        )["data"][0]
        shelf = librarian.get("/desk/holds").text
        assert "One Copy" in shelf
        assert f"/desk/members/{second['id']}" in shelf
        handed = librarian.submit(
            f"/desk/members/{second['id']}",
            f"/desk/holds/{hold['id']}/checkout",
            {"member_id": second["id"]},
        )
        assert handed.status_code == 303
        site.wait(
            f"/v1/members/{second['id']}/borrows",
            lambda page: any(b["status"] == "active" for b in page["data"]),
        )

    def test_a_refused_loan_is_explained_by_the_form_with_the_input_kept(
        self, site: Site, librarian: Visitor
    ) -> None:
        not_lendable = site.book(title="For Sale Only")
        member = site.member()
        refused = self.lend(librarian, member["id"], not_lendable["id"])
        assert refused.status_code == 409
        text = refused.text
        assert 'id="lend-error"' in text
        assert f'value="{not_lendable["id"]}"' in text
        nonsense = self.lend(librarian, member["id"], "abc")
        assert nonsense.status_code == 422
        assert "Type the book&#39;s number" in nonsense.text

    def test_the_loan_limit_is_shown_next_to_the_form(self, site: Site, librarian: Visitor) -> None:
        member = site.member(max_loans=1)
        books = [site.book(copies_total=1) for _ in range(2)]
        assert self.lend(librarian, member["id"], books[0]["id"]).status_code == 303
        refused = self.lend(librarian, member["id"], books[1]["id"])
        assert refused.status_code == 409
        assert "limit" in refused.text.lower()

    def test_renew_moves_the_due_date(self, site: Site, librarian: Visitor) -> None:
        book, member = site.book(copies_total=1), site.member()
        self.lend(librarian, member["id"], book["id"])
        loan = site.wait(
            f"/v1/members/{member['id']}/borrows",
            lambda page: page["data"][0]["status"] == "active",
        )["data"][0]
        renewed = librarian.submit(
            f"/desk/members/{member['id']}",
            f"/desk/borrows/{loan['id']}/renew",
            {"member_id": member["id"]},
        )
        assert renewed.status_code == 303
        after = site.orders.get(f"/v1/borrows/{loan['id']}").json()
        assert after["renewals"] == 1
        assert after["due_at"] > loan["due_at"]

    def test_a_refused_renewal_is_shown_on_its_row(self, site: Site, librarian: Visitor) -> None:
        book, member = site.book(copies_total=1), site.member()
        self.lend(librarian, member["id"], book["id"])
        loan = site.wait(
            f"/v1/members/{member['id']}/borrows",
            lambda page: page["data"][0]["status"] == "active",
        )["data"][0]
        page, action = f"/desk/members/{member['id']}", f"/desk/borrows/{loan['id']}/renew"
        answers = [librarian.submit(page, action, {"member_id": member["id"]}) for _ in range(3)]
        assert [a.status_code for a in answers] == [303, 303, 409]
        assert 'role="alert"' in answers[2].text
        assert "renew" in answers[2].text.lower()
        assert site.orders.get(f"/v1/borrows/{loan['id']}").json()["renewals"] == 2

    def test_overdue_and_figures(self, site: Site, librarian: Visitor) -> None:
        book, member = site.book(title="Long Gone", copies_total=1), site.member()
        self.lend(librarian, member["id"], book["id"])
        loan = site.wait(
            f"/v1/members/{member['id']}/borrows",
            lambda page: page["data"][0]["status"] == "active",
        )["data"][0]
        with psycopg.connect(site.env["ORDERS_DATABASE_URL"], autocommit=True) as conn:
            conn.execute(
                "UPDATE borrows SET due_at = now() - interval '3 days' WHERE id = %s", [loan["id"]]
            )
        overdue = librarian.get("/desk/overdue").text
        assert "Long Gone" in overdue
        figures = librarian.get("/desk").text
        assert "<svg" in figures
        assert len(re.findall(r"<rect ", figures)) == 30
        assert "Loans out" in figures


class TestSuspendedHold:
    def test_shown_on_the_member_page_with_the_place_it_keeps(
        self, site: Site, librarian: Visitor
    ) -> None:
        book = site.book(title="Queued Book", copies_total=1)
        member = site.member(name="Away Reader")
        hold = site.orders.post(
            "/v1/holds", json={"member_id": member["id"], "book_id": book["id"]}
        )
        assert hold.status_code == 201, hold.text
        site.wait(f"/v1/holds/{hold.json()['id']}", lambda body: body["status"] == "ready")
        other = site.member(name="Second Reader")
        queued = site.orders.post(
            "/v1/holds", json={"member_id": other["id"], "book_id": book["id"]}
        )
        suspended = site.orders.post(f"/v1/holds/{queued.json()['id']}/suspend", json={})
        assert suspended.status_code == 200, suspended.text
        page = librarian.get(f"/desk/members/{other['id']}").text
        assert "suspended, keeping number 1 in the queue" in page
