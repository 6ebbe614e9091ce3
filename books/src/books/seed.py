"""Load demo books: `python -m books.seed --count N` (what `make seed` runs).

The books are drawn with NumPy as indexes into a fixed vocabulary whose COPY binary
fields are encoded once, so a block of rows is one gather of bytes and the server gets
binary COPY without Python building an object per value.

A big load (at least as many books as the table holds, e.g. into an empty catalog) runs
as a bulk load. In one transaction it drops the secondary indexes and the foreign keys
of `books` and pauses the insert triggers whose effects it makes itself (the catalog
counter, moved by the rows copied, and the day counts, recounted; the stock ledger,
which has nothing to record for books without stock), copies every row, adds the foreign
keys back (which checks every row once instead of once per row), re-enables the triggers
and moves the counters. Then it
vacuums the table (one pass: no index to clean yet), rebuilds the indexes two at a time
on their own connections and analyzes.

Why the drop is in the load's transaction and the rebuild after it: whatever stops the
load (Ctrl-C, an error, a lost connection) rolls the drop back with the rows, so the
table never shows a half-done load; and only committed rows can be indexed from other
connections, where the two trigram GIN builds (about 5 and 3.5 s of a core each on 1M
rows, one process each in PostgreSQL 15) run side by side. The rebuild runs in worker
threads, which a Ctrl-C does not reach, and the seed returns only when they are done. A
killed process (SIGKILL) lets the CREATE INDEX already sent finish on the server but
leaves the others missing: create them from the migrations, or seed an empty table again.
The table is locked for the load and slow to search until the rebuild ends: a bulk load is
for development and benchmark catalogs, not one serving shoppers.

A small load into a bigger catalog keeps the indexes, the triggers and the usual writes:
one transaction per chunk, so an interrupted run keeps whole chunks, and the count
triggers (statement-level) move the counter once per COPY.
"""

from __future__ import annotations

import argparse
import itertools
import random
import string
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql
from psycopg.adapt import PyFormat
from psycopg.conninfo import conninfo_to_dict
from psycopg.copy import QueuedLibpqWriter

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
# Indexes into the vocabulary the titles are drawn from; `shift` picks the `{other}` noun
# (never the `{noun}` itself).
TITLE_SLOTS = {"adjective": len(ADJECTIVES), "noun": len(NOUNS), "place": len(PLACES)}
TITLE_SLOTS["shift"] = len(NOUNS) - 1
TITLE_FIELD_SLOTS = {
    "adjective": ("adjective",),
    "noun": ("noun",),
    "place": ("place",),
    "other": ("noun", "shift"),
}
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
COPY_TRAILER = b"\xff\xff"
POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ENCODE_BLOCK = 20_000
STAMPS = np.dtype(
    [("created_size", ">i4"), ("created", ">i8"), ("updated_size", ">i4"), ("updated", ">i8")]
)
# The insert triggers a bulk load pauses because it makes their effects itself.
BULK_PAUSED_TRIGGERS = ("books_count_inserted", "books_stock_ledger_inserted")
# Index builds run side by side on this many connections (one per core of a small box):
# a trigram GIN build runs in one process whatever the parallel settings. More sort
# memory than the server's 64MB made no difference on 1M books (GIN or btree).
REBUILD_CONNECTIONS = 2

BookRow = tuple[str, str, str, Decimal, datetime, datetime]
Progress = Callable[[int, int, float], None]
Phase = Callable[[str], None]
Ints = npt.NDArray[np.int64]


class SeedError(Exception):
    """The database cannot be seeded; the message says what to do."""


@dataclass(frozen=True)
class SeedResult:
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float(self.rows)


@dataclass(frozen=True)
class Column:
    """Every value a column takes, and their COPY binary fields padded to one width."""

    values: tuple[Any, ...]
    fields: npt.NDArray[np.uint8]
    sizes: Ints

    @classmethod
    def of(cls, values: Sequence[Any], encoded: Sequence[bytes]) -> Column:
        sizes = np.array([len(field) for field in encoded], dtype=np.int64)
        fields = np.zeros((len(encoded), int(sizes.max())), dtype=np.uint8)
        for line, field in zip(fields, encoded, strict=True):
            line[: len(field)] = np.frombuffer(field, dtype=np.uint8)
        return cls(tuple(values), fields, sizes)


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _titles() -> tuple[list[str], Ints, Ints]:
    """Every title, the first title of each pattern and each pattern's slot strides.

    A book's title is `first[pattern] + sum(slot pick * strides[pattern, slot])`: the
    slots a pattern does not use have stride 0, so the table holds each title once.
    """
    titles: list[str] = []
    first: list[int] = []
    strides: list[list[int]] = []
    for pattern in TITLE_PATTERNS:
        names = {name for _, name, _, _ in string.Formatter().parse(pattern) if name}
        slots = [slot for slot in TITLE_SLOTS if any(slot in TITLE_FIELD_SLOTS[n] for n in names)]
        stride = dict.fromkeys(TITLE_SLOTS, 0)
        step = 1
        for slot in reversed(slots):  # itertools.product varies the last slot fastest
            stride[slot] = step
            step *= TITLE_SLOTS[slot]
        first.append(len(titles))
        strides.append(list(stride.values()))
        for combination in itertools.product(*(range(TITLE_SLOTS[slot]) for slot in slots)):
            pick = dict.fromkeys(TITLE_SLOTS, 0) | dict(zip(slots, combination, strict=True))
            titles.append(
                pattern.format(
                    adjective=ADJECTIVES[pick["adjective"]],
                    noun=NOUNS[pick["noun"]],
                    place=PLACES[pick["place"]],
                    other=NOUNS[(pick["noun"] + 1 + pick["shift"]) % len(NOUNS)],
                )
            )
    return titles, np.array(first, dtype=np.int64), np.array(strides, dtype=np.int64)


def _text_column(values: Sequence[str], *, row_head: bytes = b"") -> Column:
    return Column.of(values, [row_head + _field(value.encode()) for value in values])


def _price_column() -> Column:
    """The prices as numeric's binary fields, encoded by psycopg's own dumper."""
    dumper = psycopg.adapters.get_dumper(Decimal, PyFormat.BINARY)(Decimal)
    encoded = [dumper.dump(price) for price in PRICES]
    return Column.of(PRICES, [_field(bytes(data)) for data in encoded if data is not None])


_TITLE_VALUES, TITLE_FIRST, TITLE_STRIDES = _titles()
# The title comes first in a row, so its fields carry the row's field count.
TITLES = _text_column(_TITLE_VALUES, row_head=len(COLUMNS).to_bytes(2, "big"))
AUTHORS = _text_column([f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES])
DESCRIPTIONS = _text_column(
    [
        f"A {genre} about {subject}. {closer}"
        for genre in GENRES
        for subject in SUBJECTS
        for closer in CLOSERS
    ]
)
PRICE_COLUMN = _price_column()


@dataclass(frozen=True)
class DemoBooks:
    """Demo books as indexes into the columns' values, timestamps in µs since 1970."""

    title: Ints
    author: Ints
    description: Ints
    price: Ints
    created_at: Ints
    updated_at: Ints

    @classmethod
    def draw(
        cls, rng: np.random.Generator, count: int, *, now: datetime, years: float = 8.0
    ) -> DemoBooks:
        """`count` plausible books created over the past `years`."""
        pattern = rng.integers(len(TITLE_PATTERNS), size=count)
        title = TITLE_FIRST[pattern]
        for slot, size in enumerate(TITLE_SLOTS.values()):
            title = title + rng.integers(size, size=count) * TITLE_STRIDES[pattern, slot]
        now_us = (now - UNIX_EPOCH) // timedelta(microseconds=1)
        span_us = timedelta(days=365.25 * years) // timedelta(microseconds=1)
        created = now_us - (span_us * rng.random(count)).astype(np.int64)
        # Most books were edited soon after they were added, a few much later.
        updated = created + ((now_us - created) * rng.random(count) ** 6).astype(np.int64)
        return cls(
            title=title,
            author=rng.integers(len(AUTHORS.values), size=count),
            description=rng.integers(len(DESCRIPTIONS.values), size=count),
            price=rng.integers(len(PRICES), size=count),
            created_at=created,
            updated_at=updated,
        )

    def rows(self) -> list[BookRow]:
        def moment(micros: int) -> datetime:
            return UNIX_EPOCH + timedelta(microseconds=micros)

        return [
            (
                TITLES.values[title],
                AUTHORS.values[author],
                DESCRIPTIONS.values[description],
                PRICES[price],
                moment(created),
                moment(updated),
            )
            for title, author, description, price, created, updated in zip(
                self.title.tolist(),
                self.author.tolist(),
                self.description.tolist(),
                self.price.tolist(),
                self.created_at.tolist(),
                self.updated_at.tolist(),
                strict=True,
            )
        ]

    def copy_data(self) -> bytes:
        """The rows in COPY binary format, without the stream's signature and trailer."""
        count = len(self.title)
        lines: list[npt.NDArray[np.uint8]] = []
        keep: list[npt.NDArray[np.bool_]] = []
        for column, picks in (
            (TITLES, self.title),
            (AUTHORS, self.author),
            (DESCRIPTIONS, self.description),
            (PRICE_COLUMN, self.price),
        ):
            lines.append(column.fields[picks])
            keep.append(np.arange(column.fields.shape[1]) < column.sizes[picks][:, None])
        offset = (POSTGRES_EPOCH - UNIX_EPOCH) // timedelta(microseconds=1)
        stamps = np.empty(count, dtype=STAMPS)
        stamps["created_size"] = stamps["updated_size"] = 8
        stamps["created"] = self.created_at - offset
        stamps["updated"] = self.updated_at - offset
        lines.append(stamps.view(np.uint8).reshape(count, STAMPS.itemsize))
        keep.append(np.ones((count, STAMPS.itemsize), dtype=np.bool_))
        # Row-major boolean indexing: each row's fields in order, padding left out.
        return bytes(np.hstack(lines)[np.hstack(keep)].data)


def demo_rows(
    rng: random.Random, count: int, *, now: datetime, years: float = 8.0
) -> list[BookRow]:
    """`count` plausible books created over the past `years`, as Python values."""
    generator = np.random.default_rng(rng.getrandbits(64))
    return DemoBooks.draw(generator, count, now=now, years=years).rows()


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
    chunk_size: int = 100_000,
    random_seed: int | None = None,
    progress: Progress | None = None,
    phase: Phase | None = None,
) -> SeedResult:
    """Load `count` demo books and leave the table ready (indexes, counter, VACUUM, ANALYZE).

    `chunk_size` rows go in each COPY, with a progress report after each; `seconds` of
    the result runs until the table is ready, not only loaded.
    """
    rng = np.random.default_rng(random_seed)
    now = datetime.now(UTC)
    started = time.perf_counter()
    chunks = _chunks(rng, count, chunk_size, now=now)

    def report(done: int) -> None:
        if progress is not None:
            progress(done, count, time.perf_counter() - started)

    def say(message: str) -> None:
        if phase is not None:
            phase(f"{message} ({time.perf_counter() - started:.1f} s)")

    with connect(url) as conn:
        existing = _scalar(conn, "SELECT count(*) FROM books")
        conn.rollback()
        if count < existing:
            done = _load_in_chunks(conn, chunks, report)
            conn.autocommit = True
            # Fresh statistics, so the planner uses the indexes at once on the bigger
            # table, and a set visibility map, so deep pages skip rows in the index alone.
            conn.execute("VACUUM (ANALYZE) books")
            say("vacuumed and analyzed")
        else:
            done, indexes = _bulk_load(conn, chunks, report, say)
            conn.autocommit = True
            try:
                conn.execute("VACUUM books")
                say("vacuumed")
            finally:
                rebuild_indexes(url, indexes)
                say(f"rebuilt {len(indexes)} indexes, {REBUILD_CONNECTIONS} at a time")
            conn.execute("ANALYZE books")
            say("analyzed")
    return SeedResult(rows=done, seconds=time.perf_counter() - started)


def _chunks(
    rng: np.random.Generator, count: int, chunk_size: int, *, now: datetime
) -> Iterator[Iterator[bytes]]:
    """Per chunk, its COPY binary data a block at a time (drawn only when sent)."""

    def blocks(rows: int) -> Iterator[bytes]:
        yield COPY_SIGNATURE
        for begin in range(0, rows, ENCODE_BLOCK):
            yield DemoBooks.draw(rng, min(ENCODE_BLOCK, rows - begin), now=now).copy_data()
        yield COPY_TRAILER

    for begin in range(0, count, chunk_size):
        yield blocks(min(chunk_size, count - begin))


def _copy(conn: psycopg.Connection[Any], blocks: Iterator[bytes]) -> int:
    """Send one COPY; a writer thread sends a block while the next one is drawn."""
    with conn.cursor() as cursor:
        with cursor.copy(COPY_SQL, writer=QueuedLibpqWriter(cursor)) as copy:
            for block in blocks:
                copy.write(block)
        return cursor.rowcount


def _load_in_chunks(
    conn: psycopg.Connection[Any], chunks: Iterator[Iterator[bytes]], report: Callable[[int], None]
) -> int:
    done = 0
    for blocks in chunks:
        with conn.transaction():
            done += _copy(conn, blocks)
        report(done)
    return done


@dataclass(frozen=True)
class BulkState:
    """What a bulk load takes off `books` and puts back."""

    indexes: list[tuple[str, str, str]]  # schema, name, definition: GIN builds first
    foreign_keys: list[tuple[str, str]]  # name, definition
    triggers: list[str]

    @classmethod
    def read(cls, conn: psycopg.Connection[Any]) -> BulkState:
        # Secondary indexes only: a primary key or a unique index guards the data.
        indexes = conn.execute(
            """
            SELECT n.nspname, c.relname, pg_get_indexdef(i.indexrelid)
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am am ON am.oid = c.relam
            WHERE i.indrelid = 'books'::regclass AND NOT i.indisunique
              AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid)
            ORDER BY am.amname = 'btree', c.relname
            """
        ).fetchall()
        foreign_keys = conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'books'::regclass AND contype = 'f' ORDER BY conname"
        ).fetchall()
        triggers = conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'books'::regclass"
            " AND tgname = ANY(%s) AND tgenabled <> 'D' ORDER BY tgname",
            (list(BULK_PAUSED_TRIGGERS),),
        ).fetchall()
        return cls(indexes, foreign_keys, [name for (name,) in triggers])

    def take_off(self, conn: psycopg.Connection[Any]) -> None:
        for schema, name, _ in self.indexes:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, name)))
        self._alter(
            conn,
            [
                sql.SQL("DROP CONSTRAINT {}").format(sql.Identifier(name))
                for name, _ in self.foreign_keys
            ]
            + [
                sql.SQL("DISABLE TRIGGER {}").format(sql.Identifier(name)) for name in self.triggers
            ],
        )

    def put_back(self, conn: psycopg.Connection[Any]) -> None:
        """Re-add the foreign keys (checked against every row) and re-enable the triggers."""
        self._alter(
            conn,
            [
                sql.SQL("ADD CONSTRAINT {} {}").format(sql.Identifier(name), sql.SQL(definition))
                for name, definition in self.foreign_keys
            ]
            + [sql.SQL("ENABLE TRIGGER {}").format(sql.Identifier(name)) for name in self.triggers],
        )

    @staticmethod
    def _alter(conn: psycopg.Connection[Any], actions: Sequence[sql.Composable]) -> None:
        if actions:
            conn.execute(sql.SQL("ALTER TABLE books {}").format(sql.SQL(", ").join(actions)))


def _bulk_load(
    conn: psycopg.Connection[Any],
    chunks: Iterator[Iterator[bytes]],
    report: Callable[[int], None],
    say: Phase,
) -> tuple[int, list[str]]:
    """Copy every chunk in one transaction with `books` stripped for the load.

    Returns the rows copied and the definitions of the indexes left to rebuild.
    """
    with conn.transaction():
        state = BulkState.read(conn)
        state.take_off(conn)
        say(
            f"bulk load: dropped {len(state.indexes)} indexes and {len(state.foreign_keys)}"
            f" foreign keys, paused {len(state.triggers)} insert triggers"
        )
        done = 0
        for blocks in chunks:
            done += _copy(conn, blocks)
            report(done)
        state.put_back(conn)
        # The paused count trigger's work: every demo book is active; the days' counts
        # (migration 0012) recounted from the rows.
        conn.execute(
            "UPDATE catalog_counters SET active_books = active_books + %s WHERE id = 1", (done,)
        )
        conn.execute("SELECT catalog_days_recount()")
    say(f"loaded {done:,} books (foreign keys checked, triggers back, counters moved)")
    return done, [definition for _, _, definition in state.indexes]


def rebuild_indexes(url: str, definitions: Sequence[str]) -> None:
    """Create the indexes side by side, each on its own connection, GIN ones first.

    The builds run in worker threads: a KeyboardInterrupt reaches the main thread only,
    and leaving the pool waits for every build, so an interrupted seed still ends with
    its indexes.
    """

    def build(definition: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL(definition))

    with ThreadPoolExecutor(max_workers=REBUILD_CONNECTIONS) as pool:
        for future in [pool.submit(build, definition) for definition in definitions]:
            future.result()


def _scalar(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


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


def phase_printer(stream: TextIO) -> Phase:
    """A line per phase of the seed (indexes dropped, loaded, vacuumed, rebuilt...)."""

    def report(message: str) -> None:
        stream.write(message + "\n")
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
    parser.add_argument("--chunk-size", type=positive_int, default=100_000, help="rows per COPY")
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
            phase=phase_printer(sys.stdout),
        )
    except SeedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except psycopg.Error as error:
        print(f"error: the database refused the seed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "\ninterrupted: a bulk load rolls back whole (once committed, it rebuilt its"
            " indexes before stopping); a load into a bigger catalog keeps the chunks it"
            " committed",
            file=sys.stderr,
        )
        return 130
    print(
        f"done: {result.rows:,} books in {result.seconds:.1f} s "
        f"({result.rows_per_second:,.0f} rows/s) to a ready table:"
        " indexes, counter, VACUUM and ANALYZE done"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
