"""`python -m devstack.seed --scenario minimal|high_scale [--truncate | --force]`.

Without `--scenario` it loads demo books as `make seed` always did (`--books N`).
The databases are BOOKS_DATABASE_URL and ORDERS_DATABASE_URL, or the `make run` stack's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

import psycopg

from books import seed as books_seed
from books.seed import SeedError, describe, positive_int
from devstack.seed.loader import Progress, seed_lending
from devstack.seed.scenarios import SCENARIOS
from orders.config import get_settings as orders_settings


def progress_printer(stream: TextIO) -> Progress:
    """One updating line on a terminal, a line per 100,000 rows otherwise."""
    interactive = stream.isatty()

    def report(done: int, total: int, elapsed: float) -> None:
        rate = done / elapsed if elapsed > 0 else 0.0
        line = f"seeded {done:,}/{total:,} rows ({100 * done / total:.0f}%, {rate:,.0f} rows/s)"
        stream.write(f"\r{line}" if interactive else f"{line}\n")
        stream.flush()

    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack.seed", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), help="lending data to load")
    parser.add_argument("--books", type=positive_int, default=1000, help="demo books (no scenario)")
    empty = parser.add_mutually_exclusive_group()
    empty.add_argument("--truncate", action="store_true", help="empty the lending tables first")
    empty.add_argument(
        "--force", action="store_true", help="add the scenario beside existing lending data"
    )
    parser.add_argument("--random-seed", type=int, default=None, help="repeatable data")
    args = parser.parse_args(argv)
    if args.scenario is None:
        return int(books_seed.main(["--count", str(args.books)]))
    scenario = SCENARIOS[args.scenario]
    books_url = books_seed.database_url()
    orders_url = orders_settings().psycopg_database_url
    print(
        f"seeding scenario {scenario.name} ({scenario.books:,} books, {scenario.members:,} "
        f"members, {scenario.borrows:,} borrows, {scenario.holds:,} holds) into "
        f"{describe(books_url)} and {describe(orders_url)}",
        file=sys.stderr,
    )
    try:
        result = seed_lending(
            scenario,
            books_url=books_url,
            orders_url=orders_url,
            force=args.force,
            truncate=args.truncate,
            random_seed=args.random_seed,
            progress=progress_printer(sys.stderr),
        )
    except SeedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except psycopg.Error as error:
        print(f"error: the database refused the seed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: nothing of this seed was committed", file=sys.stderr)
        return 130
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    tables = ", ".join(
        f"{count:,} {table} in {result.table_seconds.get(table, 0.0):.1f} s"
        for table, count in result.rows.items()
    )
    print(
        f"done: {result.total_rows:,} rows in {result.seconds:.1f} s "
        f"({result.rows_per_second:,.0f} rows/s: {tables}), "
        f"vacuumed and analyzed in {result.vacuum_seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
