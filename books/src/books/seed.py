"""Load demo books: `python -m books.seed --count N` (what `make seed` runs).

Rows are generated a chunk at a time and streamed with binary COPY, one transaction per
chunk, so a million books never sit in memory and an interrupted run keeps whole chunks.
The count triggers on `books` are statement-level, so each COPY moves the catalog counter
once and `X-Total-Count` stays exact.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TextIO

import psycopg
from psycopg.conninfo import conninfo_to_dict

from books.config import get_settings

ADJECTIVES = (
    "Silent", "Crimson", "Hidden", "Last", "Forgotten", "Golden", "Broken", "Distant",
    "Wandering", "Midnight", "Quiet", "Burning", "Frozen", "Secret", "Endless", "Little",
    "Wild", "Lost", "Bright", "Hollow", "Restless", "Paper", "Glass", "Iron", "Velvet",
    "Salt", "Northern", "Sunken", "Painted", "Borrowed",
)  # fmt: skip
NOUNS = (
    "Garden", "River", "Lighthouse", "Orchard", "Kingdom", "Harbor", "Letter", "Winter",
    "Library", "Mountain", "Clockmaker", "Island", "Forest", "Bridge", "Daughter", "Compass",
    "Map", "Station", "Storm", "Violin", "Tide", "Cathedral", "Archive", "Voyage", "Machine",
    "Season", "Shadow", "Promise", "Circus", "Atlas",
)  # fmt: skip
PLACES = (
    "Lisbon", "the North", "Avalon", "the Steppe", "Kyoto", "the Sea", "Prague", "the Valley",
    "Marrakesh", "the Moors", "Tallinn", "the Dunes", "Oaxaca", "the Fjords", "Samarkand",
)  # fmt: skip
TITLE_PATTERNS = (
    "The {adjective} {noun}",
    "{adjective} {noun}s",
    "The {noun} of {place}",
    "A {noun} in {place}",
    "The {adjective} {noun} of {place}",
    "{noun}s and {other}s",
    "Beyond the {adjective} {noun}",
)
FIRST_NAMES = (
    "Ada", "Elena", "Tomas", "Mira", "Jonah", "Ines", "Kenji", "Amara", "Lucas", "Freya",
    "Omar", "Sofia", "Nikolai", "Priya", "Hugo", "Yara", "Mateo", "Ingrid", "Felix", "Leila",
    "Arjun", "Clara", "Dmitri", "Nora", "Rafael", "Zoe", "Samuel", "Hana", "Victor", "Maya",
)  # fmt: skip
LAST_NAMES = (
    "Okafor", "Lindqvist", "Moreau", "Tanaka", "Alvarez", "Novak", "Haddad", "Brennan",
    "Kowalski", "Sato", "Fischer", "Castellano", "Mbeki", "Rossi", "Ivanova", "Nakamura",
    "Oyelaran", "Dubois", "Petrov", "Quinn", "Halvorsen", "Marchetti", "Adeyemi", "Varga",
    "Delacroix", "Ekwueme", "Sorensen", "Bianchi", "Kaur", "Whitlock",
)  # fmt: skip
GENRES = (
    "novel", "thriller", "memoir", "family saga", "mystery", "fable", "love story",
    "coming-of-age story", "historical novel", "collection of linked stories",
)  # fmt: skip
SUBJECTS = (
    "a cartographer who maps places that no longer exist",
    "two sisters who inherit a failing bookshop",
    "a detective haunted by an unsolved case",
    "a crew stranded on a drifting research ship",
    "an orphan raised by a travelling theatre",
    "a translator who finds a message hidden in a manuscript",
    "a village that wakes up one morning a day behind the world",
    "an engineer racing to finish a bridge before the floods",
    "a chess prodigy who refuses to play",
    "a family of beekeepers keeping an old promise",
)
CLOSERS = (
    "Told with warmth and a sharp eye for detail.",
    "A story about memory, loss and second chances.",
    "Funny, tender and impossible to put down.",
    "An atmospheric page-turner.",
    "A quiet book that stays with you.",
    "Winner of several readers' prizes.",
)
# Shop-like price points (4.99, 12.49, 20.00 ...), exact 2-decimal Decimals.
PRICES = tuple(
    Decimal(dollars * 100 + cents).scaleb(-2)
    for dollars in range(2, 80)
    for cents in (0, 49, 95, 99)
)
COLUMNS = ("title", "author", "description", "price", "created_at", "updated_at")
COPY_SQL = f"COPY books ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
COPY_TYPES = ("text", "text", "text", "numeric", "timestamptz", "timestamptz")

BookRow = tuple[str, str, str, Decimal, datetime, datetime]
Progress = Callable[[int, int, float], None]


class SeedError(Exception):
    """The database cannot be seeded; the message says what to do."""


@dataclass(frozen=True)
class SeedResult:
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float(self.rows)


def demo_rows(
    rng: random.Random, count: int, *, now: datetime, years: float = 8.0
) -> list[BookRow]:
    """`count` plausible books created over the past `years` (column by column: faster)."""
    nouns = rng.choices(range(len(NOUNS)), k=count)
    # A non-zero shift, so "{noun}s and {other}s" never pairs a noun with itself.
    shifts = rng.choices(range(1, len(NOUNS)), k=count)
    titles = [
        pattern.format(
            adjective=adjective,
            noun=NOUNS[noun],
            place=place,
            other=NOUNS[(noun + shift) % len(NOUNS)],
        )
        for pattern, adjective, noun, shift, place in zip(
            rng.choices(TITLE_PATTERNS, k=count),
            rng.choices(ADJECTIVES, k=count),
            nouns,
            shifts,
            rng.choices(PLACES, k=count),
            strict=True,
        )
    ]
    authors = [
        f"{first} {last}"
        for first, last in zip(
            rng.choices(FIRST_NAMES, k=count), rng.choices(LAST_NAMES, k=count), strict=True
        )
    ]
    descriptions = [
        f"A {genre} about {subject}. {closer}"
        for genre, subject, closer in zip(
            rng.choices(GENRES, k=count),
            rng.choices(SUBJECTS, k=count),
            rng.choices(CLOSERS, k=count),
            strict=True,
        )
    ]
    prices = rng.choices(PRICES, k=count)
    span = timedelta(days=365.25 * years)
    rows: list[BookRow] = []
    for title, author, description, price in zip(
        titles, authors, descriptions, prices, strict=True
    ):
        created_at = now - span * rng.random()
        # Most books were edited soon after they were added, a few much later.
        updated_at = created_at + (now - created_at) * rng.random() ** 6
        rows.append((title, author, description, price, created_at, updated_at))
    return rows


def database_url() -> str:
    """The books database of the environment (BOOKS_DATABASE_URL or the `make run` stack)."""
    return get_settings().psycopg_database_url


def describe(url: str) -> str:
    """Where a URL points, without credentials."""
    params = conninfo_to_dict(url)
    return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname')}"


def connect(url: str) -> psycopg.Connection[Any]:
    """Connect to a migrated books database or raise SeedError saying what is wrong."""
    try:
        conn = psycopg.connect(url, connect_timeout=5)
    except psycopg.OperationalError as error:
        reason = (str(error).strip().splitlines() or ["no answer"])[0]
        raise SeedError(
            f"cannot reach the books database at {describe(url)} ({reason}).\n"
            "Start the stack with `make run`, or point BOOKS_DATABASE_URL at a running database."
        ) from None
    row = conn.execute(
        "SELECT to_regclass('books') IS NOT NULL AND to_regclass('catalog_counters') IS NOT NULL"
    ).fetchone()
    conn.rollback()
    if not (row and row[0]):
        conn.close()
        raise SeedError(
            f"the books database at {describe(url)} is not migrated: run `make migrate` "
            "(or start the stack with `make run`, which migrates)."
        )
    return conn


def seed_books(
    url: str,
    *,
    count: int,
    chunk_size: int = 10_000,
    random_seed: int | None = None,
    progress: Progress | None = None,
) -> SeedResult:
    """COPY `count` demo books into the database at `url`, then VACUUM and ANALYZE."""
    rng = random.Random(random_seed)  # noqa: S311 - demo data, not secrets
    now = datetime.now(UTC)
    started = time.perf_counter()
    done = 0
    with connect(url) as conn:
        while done < count:
            rows = demo_rows(rng, min(chunk_size, count - done), now=now)
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
                copy.set_types(COPY_TYPES)
                for row in rows:
                    copy.write_row(row)
            done += len(rows)
            if progress is not None:
                progress(done, count, time.perf_counter() - started)
        seconds = time.perf_counter() - started
        # Fresh statistics, so the planner uses the indexes at once on the bigger table,
        # and a set visibility map, so deep pages skip rows in the index alone.
        conn.autocommit = True
        conn.execute("VACUUM (ANALYZE) books")
    return SeedResult(rows=done, seconds=seconds)


def progress_printer(stream: TextIO) -> Progress:
    """One updating line on a terminal, one line per chunk otherwise."""
    interactive = stream.isatty()

    def report(done: int, total: int, elapsed: float) -> None:
        rate = done / elapsed if elapsed > 0 else 0.0
        line = f"seeded {done:,}/{total:,} books ({100 * done / total:.0f}%, {rate:,.0f} rows/s)"
        if interactive:
            stream.write(f"\r{line}" + ("\n" if done == total else ""))
        else:
            stream.write(line + "\n")
        stream.flush()

    return report


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="books.seed", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=positive_int, default=1000, help="books to add")
    parser.add_argument("--chunk-size", type=positive_int, default=10_000, help="rows per COPY")
    parser.add_argument("--random-seed", type=int, default=None, help="repeatable data")
    args = parser.parse_args(argv)
    url = database_url()
    print(f"seeding {args.count:,} books into {describe(url)}")
    try:
        result = seed_books(
            url,
            count=args.count,
            chunk_size=args.chunk_size,
            random_seed=args.random_seed,
            progress=progress_printer(sys.stdout),
        )
    except SeedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except psycopg.Error as error:
        print(f"error: the database refused the seed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: the chunks already committed stay in the catalog", file=sys.stderr)
        return 130
    print(
        f"done: {result.rows:,} books in {result.seconds:.1f} s "
        f"({result.rows_per_second:,.0f} rows/s), table vacuumed and analyzed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
