"""Black-box check of the orders API: real books and orders processes, real HTTP."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.servers import free_port
from devstack.services import ServiceProcess
from servicekit.api_keys import bearer

# The seed README's "Manual Testing Script", verbatim.
MANUAL_TESTING_SCRIPT = Path(__file__).with_name("manual_testing_script.sh")


@pytest.fixture(scope="module")
def orders_process(
    orders_database_url: str, books_service: ServiceProcess
) -> Iterator[ServiceProcess]:
    env = {"ORDERS_DATABASE_URL": orders_database_url, "ORDERS_BOOKS_URL": books_service.url}
    with ServiceProcess("orders.app:create_app", free_port(), env) as service:
        yield service


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl, jq")
class TestManualTestingScript:
    def test_runs_as_written_in_the_seed_readme(self, books_service, orders_process, admin_key):
        """With the key given to each curl, as our README says to."""
        script = (
            MANUAL_TESTING_SCRIPT.read_text()
            .replace("localhost:8001", f"localhost:{books_service.port}")
            .replace("localhost:8082", f"localhost:{orders_process.port}")
            .replace("curl ", f'curl -H "Authorization: Bearer {admin_key}" ')
        )
        result = subprocess.run(
            ["bash", "-e", "-c", script], capture_output=True, text=True, timeout=60, check=True
        )
        lines = result.stdout.splitlines()
        book_id = int(lines[0].removeprefix("Created book with ID: "))
        order_id = int(lines[1].removeprefix("Created order with ID: "))
        order = json.loads("\n".join(lines[2:]))
        assert order["id"] == order_id
        assert order["total_price"] == "39.98"
        assert order["status"] == "pending"
        [item] = order["items"]
        assert item["book_id"] == book_id
        assert item["book_title"] == "Test Book"
        assert item["book_author"] == "Test Author"
        assert (item["quantity"], item["unit_price"], item["total_price"]) == (2, "19.99", "39.98")


class TestOrdersContract:
    def test_create_fetch_list_and_errors_over_http(self, books_service, orders_process, admin_key):
        key = bearer(admin_key)
        with httpx.Client(base_url=orders_process.url, timeout=10, headers=key) as orders:
            book = httpx.post(
                f"{books_service.url}/v1/books",
                json={"title": "C", "author": "A", "description": "D", "price": "3.50"},
                headers=key,
            ).json()
            body = {"items": [{"book_id": book["id"], "quantity": 3}]}
            created = orders.post("/v1/orders", json=body, headers={"Idempotency-Key": "c-1"})
            assert created.status_code == 201
            assert created.headers["location"] == f"/v1/orders/{created.json()['id']}"
            replay = orders.post("/v1/orders", json=body, headers={"Idempotency-Key": "c-1"})
            assert replay.content == created.content
            fetched = orders.get(created.headers["location"])
            assert fetched.json() == created.json()
            listed = orders.get("/v1/orders", params={"limit": 1})
            assert listed.json()["data"][0] == created.json()
            assert int(listed.headers["x-total-count"]) >= 1
            assert 'rel="first"' in listed.headers["link"]
            problem = orders.post("/v1/orders", json={"items": []})
            assert problem.status_code == 422
            assert problem.headers["content-type"] == "application/problem+json"
            assert problem.json()["request_id"] == problem.headers["x-request-id"]
            assert problem.json()["error"] == "VALIDATION_ERROR"
            assert orders.get("/health").json()["status"] == "healthy"
            assert orders.get("/ready").status_code == 200
            assert "orders_requests_total" in orders.get("/metrics").text
            assert orders.get("/docs/openapi.json").status_code == 200
        assert '"service": "orders"' in orders_process.output()
