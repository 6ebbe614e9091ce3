"""The tracing section: what traces cost a read, `GET /v1/books/{id}` with tracing off and on.

Two books processes of its own on the stack's books database, started side by side and
alike but for `OTEL_EXPORTER_OTLP_ENDPOINT`, which points the second at an OTLP/HTTP
receiver in a process of its own (`python -m devstack.otlp`; the exporter's network
and encoding work is counted, a real collector's storage is not). The two are measured
in turn, off - on - off - on, so that drift of a busy machine falls on both.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx

from devstack.bench.catalog import sample_book_ids
from devstack.bench.load import Summary, expect, scenario, user_clients
from devstack.bench.report import Report
from devstack.bench.stack import Options, SkipSection, fetch_value
from devstack.servers import free_port
from devstack.services import ManagedProcess, ServiceProcess

ROUNDS = 2


@contextmanager
def books_pair(database_url: str) -> Iterator[tuple[ServiceProcess, ServiceProcess, str]]:
    """(untraced books, traced books, the receiver's URL), stopped at the end."""
    receiver_port = free_port()
    receiver_url = f"http://127.0.0.1:{receiver_port}"
    with ExitStack() as stack:
        stack.enter_context(
            ManagedProcess(
                command=[sys.executable, "-m", "devstack.otlp", str(receiver_port)],
                ready_url=receiver_url,
            )
        )
        env = {"BOOKS_DATABASE_URL": database_url}
        off = stack.enter_context(ServiceProcess("books.app:create_app", free_port(), env))
        on = stack.enter_context(
            ServiceProcess(
                "books.app:create_app",
                free_port(),
                env | {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver_url},
            )
        )
        yield off, on, receiver_url


async def run_tracing(options: Options) -> Report:
    report = Report("tracing")
    load = options.load
    url = options.books_database_url
    try:
        await fetch_value(url, "SELECT 1 FROM books LIMIT 1")
    except Exception as error:
        raise SkipSection(f"no books database at the stack's URL ({error})") from error
    ids = await sample_book_ids(url)
    if not ids:
        raise SkipSection("the catalog has no active books (`make seed`)")
    rng = random.Random(options.random_seed)  # noqa: S311 - load pattern, not secrets
    report.heading = (
        f"tracing: GET /v1/books/{{id}} on two books processes of this section, off and on "
        f"(OTLP/HTTP to a local receiver); {ROUNDS} rounds each, alternating; {load.describe()}"
    )
    with books_pair(url) as (off, on, receiver_url):
        results: dict[str, list[Summary]] = {"off": [], "on": []}
        for round_number in range(1, ROUNDS + 1):
            for label, service in (("off", off), ("on", on)):
                async with user_clients(service.url, load.concurrency) as clients:

                    async def get_by_id(user: int) -> None:
                        expect(await clients[user].get(f"/v1/books/{rng.choice(ids)}"), 200)

                    name = f"GET /v1/books/{{id}} tracing {label} (round {round_number})"
                    summary = await scenario(name, get_by_id, load)
                results[label].append(summary)
                report.summaries.append(summary)
        on.stop()  # the exporter sends what it still holds as the process exits
        async with httpx.AsyncClient(timeout=5) as client:
            received = (await client.get(receiver_url)).json()
    off_rps, on_rps = (sum(s.rps for s in results[k]) / ROUNDS for k in ("off", "on"))
    off_p50, on_p50 = (_mean_p50(results[k]) for k in ("off", "on"))
    report.notes.append(
        f"tracing on/off: RPS {on_rps / off_rps:.2f}x, p50 {on_p50 / off_p50:.2f}x "
        f"(means of the rounds); the receiver got {received['spans']:,} spans in "
        f"{received['exports']:,} exports"
    )
    report.notes.append(
        "off is the default (no endpoint): no SDK, no instrumentation; on exports each "
        "request's server span and its SQL spans in batches (OTEL_BSP_* defaults)"
    )
    return report


def _mean_p50(summaries: list[Summary]) -> float:
    values = [s.p50_ms for s in summaries if s.p50_ms is not None]
    return sum(values) / len(values) if values else float("nan")
