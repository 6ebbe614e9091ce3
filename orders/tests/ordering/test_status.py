"""Order status: the workers' internal confirm/reject and the customers' cancel."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from orders.app import create_app
from tests.conftest import (
    SERVICE_HEADERS,
    asgi_client,
    assert_problem,
    orders_settings,
    outbox_events,
    serving,
)

ILLEGAL_TRANSITION = "/problems/illegal-transition"


def confirm(client, order_id: Any, headers: dict[str, str] = SERVICE_HEADERS):  # type: ignore[no-untyped-def]
    return client.post(f"/internal/v1/orders/{order_id}/confirm", headers=headers)


def reject(client, order_id: Any, body: Any = None, headers: dict[str, str] = SERVICE_HEADERS):  # type: ignore[no-untyped-def]
    body = (
        {
            "reason": "insufficient stock for book 7: requested 3, available 1",
            "cause": "insufficient_stock",
        }
        if body is None
        else body
    )
    return client.post(f"/internal/v1/orders/{order_id}/reject", json=body, headers=headers)


def cancel(client, order_id: Any):  # type: ignore[no-untyped-def]
    return client.post(f"/v1/orders/{order_id}/cancel")


def stored_status(db: psycopg.Connection[Any], order_id: int) -> tuple[str, str | None]:
    row = db.execute(
        "SELECT status, rejection_reason FROM orders WHERE id = %s", [order_id]
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def topics(db: psycopg.Connection[Any]) -> list[str]:
    return [topic for topic, _ in outbox_events(db)]


async def order_in(status: str, client, place_order) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A new order brought to `status` through the API."""
    order = await place_order()
    moves = {"pending": [], "confirmed": [confirm], "rejected": [reject], "cancelled": [cancel]}
    for move in moves[status]:
        assert (await move(client, order["id"])).status_code == 200
    return order


class TestServiceKey:
    @pytest.mark.parametrize(
        "headers",
        [{}, {"X-Service-Key": "wrong"}, {"X-Service-Key": ""}],
        ids=["none", "wrong", "empty"],
    )
    async def test_confirm_and_reject_refuse_a_missing_or_wrong_key(
        self, client, place_order, db, headers
    ):
        order = await place_order()
        for response in (
            await confirm(client, order["id"], headers=headers),
            await reject(client, order["id"], headers=headers),
        ):
            problem = assert_problem(response, 401)
            assert problem["type"] == "/problems/service-key-required"
            assert "X-Service-Key" in problem["detail"]
            assert response.headers["www-authenticate"] == "APIKey"
        assert stored_status(db, order["id"]) == ("pending", None)
        assert topics(db) == ["order.placed"]

    async def test_key_is_checked_before_the_body(self, client, place_order, db):
        order = await place_order()
        response = await reject(client, order["id"], body={"wrong": 1}, headers={})
        assert_problem(response, 401)
        assert stored_status(db, order["id"]) == ("pending", None)

    @pytest.mark.parametrize("configured", [None, ""], ids=["unset", "empty"])
    async def test_without_a_configured_key_the_internal_api_is_off(
        self, orders_database_url, books_service, place_order, db, configured
    ):
        order = await place_order()
        app = create_app(
            orders_settings(orders_database_url, books_service.url, service_key=configured)
        )
        async with serving(app), asgi_client(app) as unkeyed:
            responses = [
                await confirm(unkeyed, order["id"]),
                await confirm(unkeyed, order["id"], headers={}),
            ]
        for response in responses:
            problem = assert_problem(response, 503)
            assert problem["type"] == "/problems/internal-api-disabled"
            assert "set SERVICE_KEY" in problem["detail"]
        assert stored_status(db, order["id"]) == ("pending", None)
        assert topics(db) == ["order.placed"]

    async def test_internal_routes_are_not_in_the_public_openapi(self, client):
        schema = (await client.get("/docs/openapi.json")).json()
        assert not [path for path in schema["paths"] if path.startswith("/internal")]


class TestConfirm:
    async def test_confirms_a_pending_order_and_announces_it(self, client, make_book, db):
        book = await make_book(title="Dune", price="9.99")
        placed = await client.post(
            "/v1/orders", json={"items": [{"book_id": book["id"], "quantity": 2}], "customer_id": 7}
        )
        order_id = placed.json()["id"]
        response = await client.post(
            f"/internal/v1/orders/{order_id}/confirm",
            headers=SERVICE_HEADERS | {"X-Request-ID": "req-confirm-1"},
        )
        assert response.status_code == 200, response.text
        order = response.json()
        assert order["status"] == "confirmed"
        assert order["rejection_reason"] is None
        assert order == (await client.get(f"/v1/orders/{order_id}")).json()
        assert order["updated_at"] >= placed.json()["updated_at"]
        row = db.execute(
            "SELECT payload, request_id FROM outbox WHERE topic = 'order.confirmed'"
        ).fetchone()
        assert row == (
            {
                "order_id": order_id,
                "customer_id": "7",
                "total_price": "19.98",
                "lines": [
                    {
                        "book_id": book["id"],
                        "book_title": "Dune",
                        "quantity": 2,
                        "unit_price": "9.99",
                    }
                ],
            },
            "req-confirm-1",
        )

    async def test_a_repeat_answers_200_and_writes_nothing(self, client, place_order, db):
        order = await order_in("confirmed", client, place_order)
        first = (await client.get(f"/v1/orders/{order['id']}")).json()
        response = await confirm(client, order["id"])
        assert response.status_code == 200, response.text
        assert response.json() == first
        assert topics(db) == ["order.placed", "order.confirmed"]

    @pytest.mark.parametrize("status", ["rejected", "cancelled"])
    async def test_a_finished_order_is_409(self, client, place_order, db, status):
        order = await order_in(status, client, place_order)
        before = (stored_status(db, order["id"]), topics(db))
        problem = assert_problem(await confirm(client, order["id"]), 409)
        assert problem["type"] == ILLEGAL_TRANSITION
        assert problem["detail"] == f"Order {order['id']} is {status}; it cannot become confirmed."
        assert (stored_status(db, order["id"]), topics(db)) == before

    async def test_a_missing_order_is_404(self, client, db):
        problem = assert_problem(await confirm(client, 404), 404)
        assert problem["type"] == "/problems/order-not-found"
        assert topics(db) == []

    async def test_a_non_integer_id_is_422(self, client, db):
        problem = assert_problem(await confirm(client, "abc"), 422)
        assert problem["errors"][0]["field"] == "order_id"
        assert topics(db) == []


class TestReject:
    async def test_rejects_a_pending_order_with_the_reason(self, client, place_order, db):
        order = await place_order()
        response = await reject(
            client,
            order["id"],
            {"reason": "  book 7: requested 3, available 1\n", "cause": "insufficient_stock"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["status"], body["rejection_reason"]) == (
            "rejected",
            "book 7: requested 3, available 1",
        )
        assert body == (await client.get(f"/v1/orders/{order['id']}")).json()
        # Nothing to announce: the reservation that failed left no stock to give back.
        assert topics(db) == ["order.placed"]

    async def test_a_repeat_answers_200_and_keeps_the_first_reason(self, client, place_order, db):
        order = await place_order()
        await reject(client, order["id"], {"reason": "first", "cause": "book_not_found"})
        response = await reject(client, order["id"], {"reason": "second", "cause": "book_inactive"})
        assert response.status_code == 200, response.text
        assert response.json()["rejection_reason"] == "first"
        assert stored_status(db, order["id"]) == ("rejected", "first")

    @pytest.mark.parametrize("status", ["confirmed", "cancelled"])
    async def test_a_confirmed_or_cancelled_order_is_409(self, client, place_order, db, status):
        order = await order_in(status, client, place_order)
        before = (stored_status(db, order["id"]), topics(db))
        problem = assert_problem(await reject(client, order["id"]), 409)
        assert problem["type"] == ILLEGAL_TRANSITION
        assert problem["detail"] == f"Order {order['id']} is {status}; it cannot become rejected."
        assert (stored_status(db, order["id"]), topics(db)) == before

    async def test_a_missing_order_is_404(self, client, db):
        assert_problem(await reject(client, 404), 404)
        assert topics(db) == []

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"cause": "book_not_found"}, "reason"),
            ({"reason": "", "cause": "book_not_found"}, "reason"),
            ({"reason": "   ", "cause": "book_not_found"}, "reason"),
            ({"reason": 5, "cause": "book_not_found"}, "reason"),
            ({"reason": "x" * 10_001, "cause": "book_not_found"}, "reason"),
            ({"reason": "x"}, "cause"),
            ({"reason": "x", "cause": "out_of_ink"}, "cause"),
            ({"reason": "x", "cause": "book_not_found", "extra": 1}, "extra"),
        ],
        ids=[
            "missing",
            "empty",
            "blank",
            "not-a-string",
            "too-long",
            "cause-missing",
            "cause-unknown",
            "unknown-field",
        ],
    )
    async def test_a_bad_body_is_422(self, client, place_order, db, body, field):
        order = await place_order()
        problem = assert_problem(await reject(client, order["id"], body), 422)
        assert field in problem["errors"][0]["field"] + problem["errors"][0]["message"]
        assert stored_status(db, order["id"]) == ("pending", None)

    async def test_a_body_that_is_not_json_is_415(self, client, place_order, db):
        order = await place_order()
        response = await client.post(
            f"/internal/v1/orders/{order['id']}/reject", content=b"reason", headers=SERVICE_HEADERS
        )
        assert_problem(response, 415)
        assert stored_status(db, order["id"]) == ("pending", None)


class TestCancel:
    @pytest.mark.parametrize("status", ["pending", "confirmed"])
    async def test_cancels_and_announces_it(self, client, place_order, db, status):
        order = await order_in(status, client, place_order)
        response = await client.post(
            f"/v1/orders/{order['id']}/cancel", headers={"X-Request-ID": "req-cancel-1"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
        assert response.json() == (await client.get(f"/v1/orders/{order['id']}")).json()
        row = db.execute(
            "SELECT payload, request_id FROM outbox WHERE topic = 'order.cancelled'"
        ).fetchone()
        assert row == ({"order_id": order["id"]}, "req-cancel-1")

    @pytest.mark.parametrize("status", ["rejected", "cancelled"])
    async def test_a_rejected_or_cancelled_order_is_409(self, client, place_order, db, status):
        order = await order_in(status, client, place_order)
        before = (stored_status(db, order["id"]), topics(db))
        problem = assert_problem(await cancel(client, order["id"]), 409)
        assert problem["type"] == ILLEGAL_TRANSITION
        assert problem["detail"] == f"Order {order['id']} is {status}; it cannot become cancelled."
        assert (stored_status(db, order["id"]), topics(db)) == before

    async def test_a_missing_order_is_404(self, client, db):
        problem = assert_problem(await cancel(client, 404), 404)
        assert problem["instance"] == "/v1/orders/404/cancel"
        assert topics(db) == []

    async def test_a_non_integer_id_is_422(self, client, db):
        assert_problem(await cancel(client, "abc"), 422)
        assert topics(db) == []

    async def test_is_documented(self, client):
        schema = (await client.get("/docs/openapi.json")).json()
        operation = schema["paths"]["/v1/orders/{order_id}/cancel"]["post"]
        assert set(operation["responses"]) == {
            "200",
            "401",
            "403",
            "404",
            "409",
            "422",
            "429",
            "500",
            "503",
        }
        assert operation["summary"] == (
            "Cancel a pending or confirmed order; its reserved stock is given back."
        )


async def racing(db, order_id: int, *requests):  # type: ignore[no-untyped-def]
    """Run `requests` at once, all held at the order's row lock until each one waits there.

    Each request's conditional UPDATE has then been issued before any could commit: the
    database, not the order of the requests, decides who wins.
    """
    holder = psycopg.connect(db.info.dsn)
    try:
        holder.execute("SELECT 1 FROM orders WHERE id = %s FOR UPDATE", [order_id])
        tasks = [asyncio.ensure_future(request) for request in requests]
        while waiting_on_locks(db) < len(tasks):
            assert not any(task.done() for task in tasks), [
                t.result().text for t in tasks if t.done()
            ]
            await asyncio.sleep(0.01)
        holder.commit()
        return await asyncio.gather(*tasks)
    finally:
        holder.close()


def waiting_on_locks(db: psycopg.Connection[Any]) -> int:
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    assert row is not None
    return int(row[0])


class TestRaces:
    async def test_cancel_and_confirm_at_once_end_as_one_serial_order(
        self, client, place_order, db
    ):
        """Cancel always wins (a confirmed order may be cancelled too); confirm wins only first."""
        for _ in range(5):
            order = await place_order()
            cancelled, confirmed = await racing(
                db, order["id"], cancel(client, order["id"]), confirm(client, order["id"])
            )
            assert cancelled.status_code == 200, cancelled.text
            assert stored_status(db, order["id"]) == ("cancelled", None)
            events = [t for t, p in outbox_events(db) if p["order_id"] == order["id"]]
            if confirmed.status_code == 200:
                assert events == ["order.placed", "order.confirmed", "order.cancelled"]
            else:
                assert_problem(confirmed, 409)
                assert events == ["order.placed", "order.cancelled"]

    async def test_confirm_and_reject_at_once_exactly_one_wins(self, client, place_order, db):
        for _ in range(5):
            order = await place_order()
            confirmed, rejected = await racing(
                db, order["id"], confirm(client, order["id"]), reject(client, order["id"])
            )
            assert sorted([confirmed.status_code, rejected.status_code]) == [200, 409]
            events = [t for t, p in outbox_events(db) if p["order_id"] == order["id"]]
            if confirmed.status_code == 200:
                assert stored_status(db, order["id"])[0] == "confirmed"
                assert events == ["order.placed", "order.confirmed"]
            else:
                assert stored_status(db, order["id"])[0] == "rejected"
                assert events == ["order.placed"]

    async def test_the_loser_names_the_status_the_winner_committed(self, client, place_order, db):
        """The loser's UPDATE waited for the winner; its answer reads the order afresh, so
        it names the winner's status, not the pending one its statement started from."""
        order = await place_order()
        confirmed, rejected = await racing(
            db, order["id"], confirm(client, order["id"]), reject(client, order["id"])
        )
        winner, loser = (
            (confirmed, rejected) if confirmed.status_code == 200 else (rejected, confirmed)
        )
        status = winner.json()["status"]
        assert stored_status(db, order["id"])[0] == status
        assert_problem(loser, 409)
        assert loser.json()["detail"].startswith(f"Order {order['id']} is {status};")

    async def test_two_confirms_at_once_announce_once(self, client, place_order, db):
        """A job delivered twice: both calls succeed, one confirmation is announced."""
        order = await place_order()
        first, second = await racing(
            db, order["id"], confirm(client, order["id"]), confirm(client, order["id"])
        )
        assert (first.status_code, second.status_code) == (200, 200)
        assert topics(db) == ["order.placed", "order.confirmed"]

    async def test_two_cancels_at_once_exactly_one_wins(self, client, place_order, db):
        order = await place_order()
        responses = await racing(
            db, order["id"], cancel(client, order["id"]), cancel(client, order["id"])
        )
        assert sorted(r.status_code for r in responses) == [200, 409]
        assert topics(db) == ["order.placed", "order.cancelled"]


REVENUE = "orders_revenue_total"


def sample(text: str, name: str) -> float:
    values = [line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")]
    return float(values[0]) if values else 0.0


class TestMetrics:
    async def test_counts_revenue_and_rejections_once(self, client, place_order):
        missing = 'orders_rejected_total{cause="book_not_found"}'
        before = (await client.get("/metrics")).text
        confirmed = await place_order(quantity=3, price="12.34")
        rejected = await place_order()
        for _ in range(2):  # a job delivered twice
            await confirm(client, confirmed["id"])
            await reject(client, rejected["id"], {"reason": "book gone", "cause": "book_not_found"})
        after = (await client.get("/metrics")).text
        assert sample(after, REVENUE) - sample(before, REVENUE) == pytest.approx(37.02)
        assert sample(after, missing) - sample(before, missing) == 1

    async def test_counts_revenue_only_once_the_confirmation_commits(self, client, place_order):
        """The COMMIT of a confirmation fails: a 503, no revenue; the job's retry counts it."""
        order = await place_order(quantity=2, price="5.00")
        before = sample((await client.get("/metrics")).text, REVENUE)

        def fail_once(session: Session) -> None:
            event.remove(Session, "before_commit", fail_once)
            raise OperationalError("COMMIT", None, Exception("server closed the connection"))

        event.listen(Session, "before_commit", fail_once)
        assert_problem(await confirm(client, order["id"]), 503)
        assert sample((await client.get("/metrics")).text, REVENUE) == before
        assert (await confirm(client, order["id"])).status_code == 200
        assert sample((await client.get("/metrics")).text, REVENUE) - before == 10

    async def test_counts_transitions_and_refusals(self, client, place_order):
        order = await order_in("confirmed", client, place_order)
        await confirm(client, order["id"])
        await cancel(client, order["id"])
        await cancel(client, order["id"])
        text = (await client.get("/metrics")).text
        assert 'orders_status_transitions_total{to="confirmed"}' in text
        assert 'orders_status_transitions_total{to="cancelled"}' in text
        assert (
            'orders_status_transitions_not_applied_total{reason="already",to="confirmed"}' in text
        )
        assert (
            'orders_status_transitions_not_applied_total{reason="illegal",to="cancelled"}' in text
        )
