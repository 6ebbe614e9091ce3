from __future__ import annotations

import asyncio
import uuid

from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from orders.app import create_app
from tests.conftest import (
    TABLES,
    asgi_client,
    assert_nothing_written,
    assert_problem,
    key_id,
    order_body,
    orders_settings,
    row_counts,
    serving,
)

ONE_OF_EACH = dict.fromkeys(TABLES, 0) | {
    "orders": 1,
    "order_items": 1,
    "outbox": 1,
    "idempotency_keys": 1,
}


def key_headers(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


class TestKeysBelongToTheirClient:
    async def test_two_clients_with_the_same_key_get_two_orders(self, client, shop, make_book, db):
        """Two shops that happen to choose the same Idempotency-Key each get their own
        order; a replay by either gets its own back."""
        book = await make_book()
        body = order_body((book["id"], 1))
        ours = await client.post("/v1/orders", json=body, headers=key_headers("k-shared"))
        theirs = await shop.post("/v1/orders", json=body, headers=key_headers("k-shared"))
        assert ours.status_code == theirs.status_code == 201
        assert ours.json()["id"] != theirs.json()["id"]
        assert "idempotent-replayed" not in theirs.headers
        ours_again = await client.post("/v1/orders", json=body, headers=key_headers("k-shared"))
        theirs_again = await shop.post("/v1/orders", json=body, headers=key_headers("k-shared"))
        assert (ours_again.content, theirs_again.content) == (ours.content, theirs.content)
        assert ours_again.headers["idempotent-replayed"] == "true"
        assert row_counts(db)["orders"] == 2

    async def test_a_borrow_key_is_scoped_too(self, client, shop, make_book, db):
        book = await make_book(copies_total=2)
        member = (await client.post("/v1/members", json={"name": "M", "email": "m@x.org"})).json()
        body = {"member_id": member["id"], "book_id": book["id"]}
        ours = await client.post("/v1/borrows", json=body, headers=key_headers("b-shared"))
        other = {"member_id": member["id"], "book_id": book["id"]}
        theirs = await shop.post("/v1/borrows", json=other, headers=key_headers("b-shared"))
        assert ours.status_code == 201
        # Not the first client's borrow replayed: the shop's own request, refused on its
        # merits (the member already has this book out).
        assert theirs.status_code == 409, theirs.text
        assert "idempotent-replayed" not in theirs.headers


class TestIdempotentCreate:
    async def test_retry_replays_the_first_response_byte_for_byte(self, client, make_book, db):
        book = await make_book()
        body = order_body((book["id"], 2))
        first = await client.post("/v1/orders", json=body, headers=key_headers("k-replay"))
        second = await client.post("/v1/orders", json=body, headers=key_headers("k-replay"))
        assert first.status_code == second.status_code == 201
        assert second.content == first.content
        for header in ("location", "content-type", "content-length"):
            assert second.headers[header] == first.headers[header]
        assert second.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert row_counts(db) == ONE_OF_EACH

    async def test_replay_does_not_ask_books_again(self, client, books, make_book, db):
        book = await make_book()
        body = order_body((book["id"], 1))
        first = await client.post("/v1/orders", json=body, headers=key_headers("k-no-books"))
        assert (await books.delete(f"/v1/books/{book['id']}")).status_code == 200
        second = await client.post("/v1/orders", json=body, headers=key_headers("k-no-books"))
        assert second.content == first.content
        assert row_counts(db) == ONE_OF_EACH

    async def test_same_key_other_body_is_422(self, client, make_book, db):
        book = await make_book()
        await client.post(
            "/v1/orders", json=order_body((book["id"], 1)), headers=key_headers("k-mismatch")
        )
        response = await client.post(
            "/v1/orders", json=order_body((book["id"], 2)), headers=key_headers("k-mismatch")
        )
        problem = assert_problem(response, 422)
        assert problem["type"] == "/problems/idempotency-key-reused"
        assert row_counts(db) == ONE_OF_EACH

    async def test_key_still_in_flight_is_409(self, client, make_book, db):
        book = await make_book()
        body = order_body((book["id"], 1))
        first = await client.post("/v1/orders", json=body, headers=key_headers("k-busy"))
        assert first.status_code == 201
        # The state of a key whose first request is still running: claimed, no response.
        db.execute(
            "UPDATE idempotency_keys SET completed_at = NULL, response_status = NULL,"
            " response_headers = NULL, response_body = NULL, order_id = NULL, locked_at = now()"
        )
        response = await client.post("/v1/orders", json=body, headers=key_headers("k-busy"))
        problem = assert_problem(response, 409)
        assert problem["type"] == "/problems/idempotency-key-in-flight"
        assert response.headers["retry-after"] == "1"
        assert row_counts(db) == ONE_OF_EACH

    async def test_stale_claim_of_a_dead_request_is_taken_over(
        self, client, make_book, db, admin_key
    ):
        book = await make_book()
        body = order_body((book["id"], 1))
        db.execute(
            "INSERT INTO idempotency_keys"
            " (api_key_id, key, fingerprint, lock_token, locked_at, expires_at)"
            " VALUES (%s, 'k-stale', 'x', %s, now() - interval '1 hour', now() + interval '1 day')",
            (key_id(db, admin_key), uuid.uuid4()),
        )
        response = await client.post("/v1/orders", json=body, headers=key_headers("k-stale"))
        assert response.status_code == 201, response.text
        assert row_counts(db) == ONE_OF_EACH

    async def test_expired_key_places_a_new_order(self, client, make_book, db):
        book = await make_book()
        body = order_body((book["id"], 1))
        first = await client.post("/v1/orders", json=body, headers=key_headers("k-old"))
        db.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
        second = await client.post("/v1/orders", json=body, headers=key_headers("k-old"))
        assert second.status_code == 201
        assert second.json()["id"] != first.json()["id"]
        assert "idempotent-replayed" not in second.headers
        assert row_counts(db)["orders"] == 2
        assert row_counts(db)["idempotency_keys"] == 1

    async def test_failed_request_gives_the_key_back(self, client, make_book, db):
        response = await client.post(
            "/v1/orders", json=order_body((999_999, 1)), headers=key_headers("k-retry")
        )
        assert_problem(response, 422)
        assert_nothing_written(db)
        book = await make_book()
        retry = await client.post(
            "/v1/orders", json=order_body((book["id"], 1)), headers=key_headers("k-retry")
        )
        assert retry.status_code == 201
        assert row_counts(db) == ONE_OF_EACH

    async def test_a_failed_commit_gives_the_key_back(self, client, make_book, db, monkeypatch):
        """The connection drops at COMMIT: a 503, nothing kept, and the retry is placed at
        once instead of meeting a 409 until the claim goes stale."""
        book = await make_book()
        body = order_body((book["id"], 1))
        commit = AsyncSession.commit

        async def fail_once(session: AsyncSession) -> None:
            monkeypatch.setattr(AsyncSession, "commit", commit)
            await session.rollback()
            raise OperationalError("COMMIT", None, Exception("server closed the connection"))

        monkeypatch.setattr(AsyncSession, "commit", fail_once)
        failed = await client.post("/v1/orders", json=body, headers=key_headers("k-commit"))
        assert_problem(failed, 503)
        assert_nothing_written(db)
        retry = await client.post("/v1/orders", json=body, headers=key_headers("k-commit"))
        assert retry.status_code == 201, retry.text
        assert row_counts(db) == ONE_OF_EACH

    async def test_without_key_each_post_is_a_new_order(self, client, make_book, db):
        book = await make_book()
        for _ in range(2):
            response = await client.post("/v1/orders", json=order_body((book["id"], 1)))
            assert response.status_code == 201
        assert row_counts(db) == ONE_OF_EACH | {
            "orders": 2,
            "order_items": 2,
            "outbox": 2,
            "idempotency_keys": 0,
        }

    async def test_50_concurrent_posts_with_one_key_place_one_order(self, client, make_book, db):
        book = await make_book()
        body = order_body((book["id"], 3))
        responses = await asyncio.gather(
            *[
                client.post("/v1/orders", json=body, headers=key_headers("k-stampede"))
                for _ in range(50)
            ]
        )
        created = [r for r in responses if r.status_code == 201]
        in_flight = [r for r in responses if r.status_code == 409]
        assert len(created) + len(in_flight) == 50, [r.status_code for r in responses]
        assert len({r.content for r in created}) == 1
        assert sum("idempotent-replayed" not in r.headers for r in created) == 1
        for response in in_flight:
            assert_problem(response, 409)
        assert row_counts(db) == ONE_OF_EACH


class TestPurgeExpiredKeys:
    async def test_deletes_only_expired_keys(self, client, orders_app, make_book, db):
        book = await make_book()
        for key in ("k-keep", "k-drop"):
            await client.post(
                "/v1/orders", json=order_body((book["id"], 1)), headers=key_headers(key)
            )
        db.execute(
            "UPDATE idempotency_keys SET expires_at = now() - interval '1 second'"
            " WHERE key = 'k-drop'"
        )
        assert await orders_app.state.idempotency_store.purge_expired() == 1
        assert db.execute("SELECT key FROM idempotency_keys").fetchall() == [("k-keep",)]
        assert row_counts(db)["orders"] == 2

    async def test_a_backlog_goes_in_bounded_batches(self, orders_app, db, admin_key):
        db.execute(
            "INSERT INTO idempotency_keys"
            " (api_key_id, key, fingerprint, lock_token, locked_at, expires_at)"
            " SELECT %s, 'old-' || n, 'f', gen_random_uuid(), now(), now() - interval '1 hour'"
            " FROM generate_series(1, 25) n",
            [key_id(db, admin_key)],
        )
        store = orders_app.state.idempotency_store
        assert await store._purge_batch(10) == 10
        assert await store.purge_expired(batch=10) == 15
        assert db.execute("SELECT count(*) FROM idempotency_keys").fetchone() == (0,)


class TestIdempotencyDisabled:
    async def test_key_is_ignored_when_switched_off(
        self, orders_database_url, books_service, make_book, db, admin_key
    ):
        app = create_app(
            orders_settings(orders_database_url, books_service.url, idempotency_enabled=False)
        )
        book = await make_book()
        async with serving(app), asgi_client(app, admin_key) as client:
            for _ in range(2):
                response = await client.post(
                    "/v1/orders", json=order_body((book["id"], 1)), headers=key_headers("k-off")
                )
                assert response.status_code == 201
        assert row_counts(db) == ONE_OF_EACH | {
            "orders": 2,
            "order_items": 2,
            "outbox": 2,
            "idempotency_keys": 0,
        }
