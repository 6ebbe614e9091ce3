"""Who may call the copies API, what the public documents say about it, what it counts."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client import REGISTRY

from tests.conftest import SERVICE_KEY, assert_problem
from tests.lending.conftest import CHECKINS, CHECKOUTS, TRANSFERS, copies_of, loans

ENDPOINTS = [
    (CHECKOUTS, {"reference": "borrow:1", "book_id": 1}),
    (CHECKINS, {"reference": "borrow:1"}),
    (TRANSFERS, {"from_reference": "borrow:1", "to_reference": "hold:1"}),
]


class TestServiceKey:
    @pytest.mark.parametrize(("path", "body"), ENDPOINTS)
    @pytest.mark.parametrize("headers", [{}, {"X-Service-Key": SERVICE_KEY + "x"}])
    async def test_without_the_key_is_401_and_moves_nothing(  # type: ignore[no-untyped-def]
        self,
        client: httpx.AsyncClient,
        make_book,
        checkout,
        db: psycopg.Connection[Any],
        path: str,
        body: dict[str, Any],
        headers: dict[str, str],
    ) -> None:
        book = await make_book(copies_total=2)
        await checkout("borrow:1", book["id"])
        ledger = loans(db)
        response = await client.post(path, json=body, headers=headers)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "APIKey"
        assert loans(db) == ledger
        assert copies_of(db, book["id"]) == (2, 1)

    async def test_key_is_checked_before_the_body(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.post(CHECKOUTS, json={"reference": 5}), 401)


class TestPublicDocuments:
    async def test_openapi_does_not_mention_the_copies_api(self, client: httpx.AsyncClient) -> None:
        document = (await client.get("/openapi.json")).json()
        assert not [path for path in document["paths"] if path.startswith("/internal")]
        assert not {"CheckoutRequest", "CheckoutRead", "TransferRequest"} & set(
            document["components"]["schemas"]
        )


class TestMetrics:
    async def test_counts_movements_by_kind_and_outcome(  # type: ignore[no-untyped-def]
        self, make_book, checkout, checkin, transfer, client: httpx.AsyncClient
    ) -> None:
        expected = {
            ("checkout", "checked_out"): 1,
            ("checkout", "replayed"): 1,
            ("checkout", "unavailable"): 1,
            ("transfer", "transferred"): 1,
            ("transfer", "replayed"): 1,
            ("checkin", "checked_in"): 1,
            ("checkin", "replayed"): 1,
            ("checkin", "not_checked_out"): 1,
        }

        def sample(kind: str, outcome: str) -> float:
            labels = {"kind": kind, "outcome": outcome}
            return REGISTRY.get_sample_value("books_copy_movements_total", labels) or 0.0

        before = {labels: sample(*labels) for labels in expected}
        book = await make_book(copies_total=1)
        await checkout("borrow:1", book["id"])
        await checkout("borrow:1", book["id"])
        await checkout("borrow:2", book["id"])
        await transfer("borrow:1", "hold:1")
        await transfer("borrow:1", "hold:1")
        await checkin("hold:1")
        await checkin("hold:1")
        await checkin("borrow:3")
        assert {labels: sample(*labels) - before[labels] for labels in expected} == expected
        exposed = (await client.get("/metrics")).text
        assert 'books_copy_movements_total{kind="checkout",outcome="checked_out"}' in exposed
