"""The web section: pages of the storefront, each next to the API call it makes, at the
same concurrency. The difference is the page's own cost (a second HTTP hop, decoding,
the template); the catalog has to be as large as the books section's."""

from __future__ import annotations

import dataclasses
import random

import httpx

from devstack.bench.catalog import count_books, sample_book_ids
from devstack.bench.load import Call, expect, scenario, user_clients
from devstack.bench.report import Report
from devstack.bench.stack import Options, SkipSection

# Each page makes one API call; the storefront lists this many books a page.
PAGE_SIZE = 12
SEARCH_WORD = "the"


def getter(clients: list[httpx.AsyncClient], path: str, params: dict[str, str | int]) -> Call:
    async def get(user: int) -> None:
        expect(await clients[user].get(path, params=params), 200)

    return get


async def web_is_up(url: str) -> bool:
    try:
        async with httpx.AsyncClient(base_url=url, timeout=3) as client:
            return (await client.get("/livez")).status_code == 200
    except httpx.HTTPError:
        return False


async def run_web(options: Options) -> Report:
    report = Report("web")
    if not await web_is_up(options.web_url):
        raise SkipSection(f"no web app at {options.web_url} (start it with `make run`)")
    books = await count_books(options.books_database_url)
    if books < options.min_books:
        raise SkipSection(
            f"the catalog has {books:,} books and the bench needs at least "
            f"{options.min_books:,}: run `SEED_BOOKS={options.min_books - books} make seed` first"
        )
    ids = await sample_book_ids(options.books_database_url)
    load = dataclasses.replace(options.load, concurrency=options.web_concurrency)
    report.heading = (
        f"web: {books:,} books; site {options.web_url}, API {options.books_url}; {load.describe()}"
    )
    rng = random.Random(options.random_seed)  # noqa: S311 - load pattern, not secrets
    pages: list[tuple[str, str, dict[str, str | int]]] = [
        ("GET / (catalog, page 1)", "/", {}),
        ("GET /v1/books?limit=12 (its API call)", "/v1/books", {"limit": PAGE_SIZE}),
        (f"GET /?q={SEARCH_WORD} (search)", "/", {"q": SEARCH_WORD}),
        (
            f"GET /v1/books?q={SEARCH_WORD}&limit=12 (its API call)",
            "/v1/books",
            {"q": SEARCH_WORD, "limit": PAGE_SIZE},
        ),
    ]
    async with (
        user_clients(options.web_url, load.concurrency) as site,
        user_clients(options.books_url, load.concurrency) as api,
    ):
        for name, path, params in pages:
            clients = api if path.startswith("/v1/") else site
            report.summaries.append(await scenario(name, getter(clients, path, params), load))

        async def book_page(user: int) -> None:
            expect(await site[user].get(f"/books/{rng.choice(ids)}"), 200)

        async def book_api(user: int) -> None:
            expect(await api[user].get(f"/v1/books/{rng.choice(ids)}"), 200)

        report.summaries.append(await scenario("GET /books/{id} (book page)", book_page, load))
        report.summaries.append(await scenario("GET /v1/books/{id} (its API call)", book_api, load))
    report.notes.append(
        "each page makes one call to books, so page minus API is the site's own work: the"
        " second HTTP hop, decoding into typed structs and rendering the template"
    )
    return report
