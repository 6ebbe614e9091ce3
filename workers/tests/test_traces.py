"""Traces across the real processes: books, orders, the orders relay and a worker pool,
each exporting OTLP to a receiver in the test; and, without the endpoint, no tracing at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from devstack.otlp import OtlpReceiver, ReceivedSpan, otlp_receiver
from devstack.servers import free_port
from devstack.services import ManagedProcess, ServiceProcess
from servicekit.api_keys import bearer
from tests.conftest import SERVICE_KEY, books_env, enqueue, fetch, keyed_client, wait_until

SETTLED_S = 60.0


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as receiver:
        yield receiver


def tracing_env(receiver: OtlpReceiver) -> dict[str, str]:
    # Batches leave every 100 ms instead of 5 s, so the test waits less.
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}


@pytest.fixture(scope="module")
def traced_books(books_database_url: str, receiver: OtlpReceiver) -> Iterator[ServiceProcess]:
    env = books_env(books_database_url) | tracing_env(receiver)
    with ServiceProcess("books.app:create_app", free_port(), env) as service:
        yield service


@pytest.fixture(scope="module")
def traced_orders(
    orders_database_url: str, traced_books: ServiceProcess, receiver: OtlpReceiver
) -> Iterator[ServiceProcess]:
    env = {
        "ORDERS_DATABASE_URL": orders_database_url,
        "ORDERS_BOOKS_URL": traced_books.url,
        "SERVICE_KEY": SERVICE_KEY,
    } | tracing_env(receiver)
    with ServiceProcess("orders.app:create_app", free_port(), env) as service:
        yield service


@pytest.fixture(scope="module")
def saga_processes(
    orders_database_url: str,
    redis_url: str,
    traced_books: ServiceProcess,
    traced_orders: ServiceProcess,
    receiver: OtlpReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """`python -m orders.relay` and `python -m workers.worker`, as `make run` starts them."""
    redis.Redis.from_url(redis_url).flushdb()
    relay_port, worker_port = free_port(), free_port()
    metrics_dir = tmp_path_factory.mktemp("worker-metrics")
    relay = ManagedProcess(
        command=[sys.executable, "-m", "orders.relay"],
        ready_url=f"http://127.0.0.1:{relay_port}/metrics",
        env={
            "ORDERS_DATABASE_URL": orders_database_url,
            "REDIS_URL": redis_url,
            "ORDERS_RELAY_METRICS_PORT": str(relay_port),
        }
        | tracing_env(receiver),
    )
    worker = ManagedProcess(
        command=[sys.executable, "-m", "workers.worker"],
        ready_url=f"http://127.0.0.1:{worker_port}/metrics",
        env={
            "REDIS_URL": redis_url,
            "SERVICE_KEY": SERVICE_KEY,
            "WORKERS_BOOKS_URL": traced_books.url,
            "WORKERS_ORDERS_URL": traced_orders.url,
            "WORKERS_METRICS_PORT": str(worker_port),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        }
        | tracing_env(receiver),
        own_session=True,
        stop_timeout_s=40.0,
    )
    with relay, worker:
        yield


@pytest.fixture
def http(
    traced_books: ServiceProcess,
    traced_orders: ServiceProcess,
    connection: redis.Redis,
    admin_key: str,
) -> Iterator[httpx.Client]:
    """A client of the traced services, with the admin key; Redis is emptied first, as
    outbox ids restart at 1 in every test and the relay skips a job id that exists."""
    with keyed_client("", admin_key) as client:
        yield client


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def create_book(http: httpx.Client, books: ServiceProcess, **fields: Any) -> dict[str, Any]:
    body = {
        "title": "Dune",
        "author": "Frank Herbert",
        "description": "Spice and sand.",
        "price": "12.50",
    } | fields
    return created(http.post(f"{books.url}/v1/books", json=body))


def wait_for_status(http: httpx.Client, url: str, status: str) -> None:
    last: list[Any] = []

    def reached() -> bool:
        last[:] = [http.get(url).json()]
        return bool(last[0]["status"] == status)

    try:
        wait_until(reached, timeout_s=SETTLED_S, what=f"{url} {status}")
    except AssertionError as error:
        raise AssertionError(f"{error}; last seen: {last}") from None


def one(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    found = [span for span in spans if span.service == service and span.name == name]
    assert len(found) == 1, f"{service}: {name} in {sorted({(s.service, s.name) for s in spans})}"
    return found[0]


def trace_of(spans: list[ReceivedSpan], trace_id: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.trace_id == trace_id]


def have(*wanted: tuple[str, str]) -> Callable[[list[ReceivedSpan]], bool]:
    """Whether every (service, span name) has arrived: each process exports on its own."""
    return lambda spans: set(wanted) <= {(span.service, span.name) for span in spans}


def parent(spans: list[ReceivedSpan], span: ReceivedSpan) -> ReceivedSpan:
    (found,) = [candidate for candidate in spans if candidate.span_id == span.parent_span_id]
    return found


def is_sql(span: ReceivedSpan) -> bool:
    return span.kind == "client" and "postgresql" in (
        span.attributes.get("db.system"),
        span.attributes.get("db.system.name"),
    )


@pytest.mark.usefixtures("saga_processes")
class TestOneTracePerSaga:
    def test_an_order_is_one_trace_from_the_post_to_the_confirmation(
        self,
        http: httpx.Client,
        traced_books: ServiceProcess,
        traced_orders: ServiceProcess,
        receiver: OtlpReceiver,
    ) -> None:
        book = create_book(http, traced_books, stock=5)
        order = created(
            http.post(
                f"{traced_orders.url}/v1/orders",
                json={"items": [{"book_id": book["id"], "quantity": 2}]},
                headers={"X-Request-ID": "req-trace-order"},
            )
        )
        wait_for_status(http, f"{traced_orders.url}/v1/orders/{order['id']}", "confirmed")
        confirm = "POST /internal/v1/orders/{order_id}/confirm"
        spans = receiver.wait_for(
            have(
                ("orders", "POST /v1/orders"),
                ("books", "GET /v1/books"),
                ("orders-relay", "enqueue order.placed"),
                ("workers", "workers.stock.place_order"),
                ("books", "POST /internal/v1/stock/reservations"),
                ("orders", confirm),
            ),
            timeout_s=SETTLED_S,
            what="the spans of the order",
        )

        post = one(spans, "orders", "POST /v1/orders")
        assert post.kind == "server"
        assert post.attributes["request_id"] == "req-trace-order"
        trace = trace_of(spans, post.trace_id)
        lookup = one(trace, "books", "GET /v1/books")
        assert parent(trace, lookup).kind == "client"
        assert parent(trace, lookup).service == "orders"
        enqueue = one(trace, "orders-relay", "enqueue order.placed")
        assert enqueue.kind == "producer"
        assert parent(trace, enqueue).service == "orders"
        job = one(trace, "workers", "workers.stock.place_order")
        assert (job.kind, parent(trace, job)) == ("consumer", enqueue)
        assert job.attributes["request_id"] == "req-trace-order"
        reservation = one(trace, "books", "POST /internal/v1/stock/reservations")
        assert parent(trace, parent(trace, reservation)) == job
        assert parent(trace, parent(trace, one(trace, "orders", confirm))) == job
        assert {span.service for span in trace if is_sql(span)} == {"books", "orders"}
        tagged = [span for span in spans if span.attributes.get("request_id") == "req-trace-order"]
        assert {span.trace_id for span in tagged} == {post.trace_id}

    def test_a_borrow_is_one_trace_from_the_post_to_the_active_loan(
        self,
        http: httpx.Client,
        traced_books: ServiceProcess,
        traced_orders: ServiceProcess,
        receiver: OtlpReceiver,
    ) -> None:
        book = create_book(http, traced_books, stock=None, copies_total=1)
        member = created(
            http.post(
                f"{traced_orders.url}/v1/members",
                json={"name": "Ada", "email": "ada@example.org"},
            )
        )
        borrow = created(
            http.post(
                f"{traced_orders.url}/v1/borrows",
                json={"member_id": member["id"], "book_id": book["id"]},
                headers={"X-Request-ID": "req-trace-borrow"},
            )
        )
        wait_for_status(http, f"{traced_orders.url}/v1/borrows/{borrow['id']}", "active")
        activate = "POST /internal/v1/borrows/{borrow_id}/activate"
        spans = receiver.wait_for(
            have(
                ("orders", "POST /v1/borrows"),
                ("orders-relay", "enqueue borrow.requested"),
                ("workers", "workers.loans.check_out"),
                ("books", "POST /internal/v1/copies/checkouts"),
                ("orders", activate),
            ),
            timeout_s=SETTLED_S,
            what="the spans of the borrow",
        )

        post = one(spans, "orders", "POST /v1/borrows")
        trace = trace_of(spans, post.trace_id)
        enqueue = one(trace, "orders-relay", "enqueue borrow.requested")
        job = one(trace, "workers", "workers.loans.check_out")
        assert parent(trace, job) == enqueue
        checkout = one(trace, "books", "POST /internal/v1/copies/checkouts")
        assert parent(trace, parent(trace, checkout)) == job
        assert parent(trace, parent(trace, one(trace, "orders", activate))) == job


def mentions(span: ReceivedSpan, text: str) -> bool:
    return any(text in str(value) for value in span.attributes.values())


class TestShutdown:
    @pytest.mark.parametrize(
        ("factory", "path"),
        [
            ("books.app:create_app", "/v1/books/424242"),
            ("orders.app:create_app", "/v1/orders/424242"),
        ],
    )
    def test_a_stopped_api_sends_the_spans_it_still_holds(
        self,
        receiver: OtlpReceiver,
        books_database_url: str,
        orders_database_url: str,
        admin_key: str,
        factory: str,
        path: str,
    ) -> None:
        """Its exporter would wait ten minutes; uvicorn ends itself with the SIGTERM it
        caught, past the SDK's atexit hook, so the app's lifespan sends them on shutdown."""
        env = books_env(books_database_url) | {
            "ORDERS_DATABASE_URL": orders_database_url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_BSP_SCHEDULE_DELAY": "600000",
        }

        def request_spans() -> list[ReceivedSpan]:
            return [
                span
                for span in receiver.snapshot()
                if span.kind == "server" and mentions(span, path)
            ]

        with ServiceProcess(factory, free_port(), env) as service:
            assert httpx.get(f"{service.url}{path}", headers=bearer(admin_key)).status_code == 404
            assert request_spans() == []
        receiver.wait_for(lambda _: bool(request_spans()), timeout_s=SETTLED_S, what=path)

    def test_a_stopped_worker_sends_the_spans_it_still_holds(
        self,
        receiver: OtlpReceiver,
        traced_books: ServiceProcess,
        redis_url: str,
        connection: redis.Redis,
        tmp_path: Path,
    ) -> None:
        """Its exporter would wait ten minutes; the pool's workers leave through os._exit,
        past the SDK's atexit hook, so each sends what it holds when it stops working."""
        metrics_port = free_port()
        worker = ManagedProcess(
            command=[sys.executable, "-m", "workers.worker"],
            ready_url=f"http://127.0.0.1:{metrics_port}/metrics",
            env={
                "REDIS_URL": redis_url,
                "SERVICE_KEY": SERVICE_KEY,
                "WORKERS_BOOKS_URL": traced_books.url,
                "WORKERS_ORDERS_URL": f"http://127.0.0.1:{free_port()}",
                "WORKERS_METRICS_PORT": str(metrics_port),
                "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                "OTEL_BSP_SCHEDULE_DELAY": "600000",
                # A queue of its own: the saga tests' worker may still be running.
                "WORKERS_QUEUES": "traces-shutdown",
                "WORKERS_PROCESSES": "1",
            },
            own_session=True,
            stop_timeout_s=40.0,
        )

        def job_spans() -> list[ReceivedSpan]:
            return [
                span
                for span in receiver.snapshot()
                if span.attributes.get("messaging.message.id") == "trace-shutdown-1"
            ]

        with worker:
            job = enqueue(
                connection,
                "workers.bench.noop",
                {},
                queue_name="traces-shutdown",
                job_id="trace-shutdown-1",
            )
            wait_until(
                lambda: fetch(connection, job.id).is_finished, timeout_s=SETTLED_S, what="the job"
            )
            assert job_spans() == []
        assert worker.process is None
        receiver.wait_for(lambda _: bool(job_spans()), timeout_s=SETTLED_S, what="span of the job")
        (span,) = job_spans()
        assert (span.service, span.name, span.kind) == (
            "workers",
            "workers.bench.noop",
            "consumer",
        )


FACTS_SCRIPT = """
import json, sys
import redis
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
import books.app, orders.app
from servicekit.tracing import configure_tracing
from workers.worker import SimpleJobWorker
books_app = books.app.create_app()
orders_app = orders.app.create_app()
SimpleJobWorker(["orders"], connection=redis.Redis.from_url(sys.argv[1]))
print(json.dumps({
    "relay": configure_tracing("orders-relay", instrument_sql=False),
    "provider": type(trace.get_tracer_provider()).__name__,
    "sdk_loaded": "opentelemetry.sdk.trace" in sys.modules,
    "psycopg": PsycopgInstrumentor().is_instrumented_by_opentelemetry,
    "httpx": HTTPXClientInstrumentor().is_instrumented_by_opentelemetry,
    "books_instrumented": getattr(books_app, "_is_instrumented_by_opentelemetry", False),
    "books_middleware": [m.cls.__name__ for m in books_app.user_middleware],
    "orders_middleware": [getattr(m, "middleware", m).__name__ for m in orders_app.middleware],
    "orders_plugins": [type(p).__name__ for p in orders_app.plugins],
}))
"""


def tracing_facts(
    books_database_url: str, orders_database_url: str, redis_url: str, endpoint: str | None
) -> dict[str, Any]:
    """What the apps, a relay and a worker install, built in a fresh interpreter."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env = environ | {
        "BOOKS_DATABASE_URL": books_database_url,
        "ORDERS_DATABASE_URL": orders_database_url,
        "SERVICE_KEY": SERVICE_KEY,
    }
    if endpoint is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    result = subprocess.run(
        [sys.executable, "-c", FACTS_SCRIPT, redis_url],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    facts: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return facts


class TestTracingOff:
    def test_without_an_endpoint_nothing_is_installed_or_instrumented(
        self, books_database_url: str, orders_database_url: str, redis_url: str
    ) -> None:
        facts = tracing_facts(books_database_url, orders_database_url, redis_url, None)
        assert facts["relay"] is False
        assert facts["provider"] == "ProxyTracerProvider"
        assert facts["sdk_loaded"] is False
        assert facts["psycopg"] is False
        assert facts["httpx"] is False
        assert facts["books_instrumented"] is False
        middleware = [*facts["books_middleware"], *facts["orders_middleware"]]
        assert "CorrelationIdMiddleware" in middleware
        assert "PrometheusMiddleware" in middleware
        assert not [m for m in middleware if "OpenTelemetry" in m or "Span" in m]
        assert "OpenTelemetryPlugin" not in facts["orders_plugins"]

    def test_with_an_endpoint_the_same_facts_say_on(
        self, books_database_url: str, orders_database_url: str, redis_url: str
    ) -> None:
        """The other side of the test above: what it looks at does change."""
        facts = tracing_facts(
            books_database_url, orders_database_url, redis_url, f"http://127.0.0.1:{free_port()}"
        )
        assert facts["relay"] is True
        assert facts["provider"] == "TracerProvider"
        assert facts["sdk_loaded"] is True
        assert facts["psycopg"] is True
        assert facts["httpx"] is True
        assert facts["books_instrumented"] is True
        assert "RequestIdOnSpan" in facts["books_middleware"]
        assert "RequestIdOnSpan" in facts["orders_middleware"]
        assert "OpenTelemetryPlugin" in facts["orders_plugins"]
