"""The seed section: `make seed` into an empty catalog, in rows/s up to a ready table
(indexes rebuilt, counter set, VACUUM and ANALYZE done), next to its floor measured in
the same run: the same binary COPY blocks into a bare copy of `books` (no index,
constraint or trigger, nothing after the COPY). Both run in a scratch database on the
books database server, migrated with the books migrations and dropped afterwards, so the
stack's catalog is never touched. `--scale 1m` loads 1,000,000 books each.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import numpy as np
import psycopg
from alembic import command

from books.seed import (
    COLUMNS,
    COPY_SIGNATURE,
    COPY_TRAILER,
    ENCODE_BLOCK,
    DemoBooks,
    SeedError,
    describe,
    seed_books,
)
from devstack.bench.load import Summary
from devstack.bench.report import Report, first_line, versus_rps
from devstack.bench.stack import Options, SkipSection
from devstack.pytest_plugin import alembic_config, create_database, drop_database

RAW_COPY = f"COPY raw_books ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"


@contextmanager
def scratch_catalog(server_url: str) -> Iterator[str]:
    """A migrated books database of its own on the server of `server_url`, dropped after."""
    url = create_database(server_url, "bench_seed")
    try:
        command.upgrade(alembic_config("books", url), "head")
        yield url
    finally:
        drop_database(server_url, url)


def raw_copy(url: str, count: int, random_seed: int | None) -> Summary:
    """The floor: draw, encode and COPY `count` books into a table with nothing to maintain."""
    rng = np.random.default_rng(random_seed)
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE raw_books (LIKE books INCLUDING DEFAULTS INCLUDING IDENTITY)")
        started = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(RAW_COPY) as copy:
            copy.write(COPY_SIGNATURE)
            for begin in range(0, count, ENCODE_BLOCK):
                size = min(ENCODE_BLOCK, count - begin)
                copy.write(DemoBooks.draw(rng, size, now=now).copy_data())
            copy.write(COPY_TRAILER)
        seconds = time.perf_counter() - started
        conn.execute("DROP TABLE raw_books")
    return Summary("raw binary COPY into a bare table (floor)", count, 0, seconds, None, None, None)


def measure(server_url: str, count: int, random_seed: int | None) -> Report:
    report = Report("seed", rate="rows/s")
    report.heading = (
        f"seed: {count:,} demo books into an empty, migrated scratch catalog on the server "
        f"of {describe(server_url)}, timed until the table is ready"
    )
    with scratch_catalog(server_url) as url:
        print("  raw COPY ...", file=sys.stderr, flush=True)
        floor = raw_copy(url, count, random_seed)
        print("  seed ...", file=sys.stderr, flush=True)
        phases: list[str] = []
        result = seed_books(url, count=count, random_seed=random_seed, phase=phases.append)
    seed = Summary("books.seed (make seed)", result.rows, 0, result.seconds, None, None, None)
    report.summaries = [floor, versus_rps(seed, floor, "the floor")]
    report.notes = [f"  {phase}" for phase in phases]
    return report


async def run_seed(options: Options) -> Report:
    try:
        return await asyncio.to_thread(
            measure, options.books_database_url, options.min_books, options.random_seed
        )
    except (psycopg.Error, SeedError) as error:
        where = describe(options.books_database_url)
        raise SkipSection(
            f"cannot seed a scratch catalog on {where}: {first_line(error)}"
        ) from error
