"""A scenario's lending data: the catalog and members as blocks of COPY text, the lent
borrows (simulated in `devstack.seed.history`) as COPY binary.

Borrow requests arrive in library hours, more in November/December and fewer in
June/July, growing over the years. Each is for a book of Zipf-like popularity (a fifth
of the catalog is never borrowed) and from a member by segment (heavy, regular, casual;
a fifth never borrow). A book is lent only when it has a copy on the shelf, to a member
below `max_loans` with no copy of that book out, so every moment of the history is a
state the services could have reached: copies out never exceed copies owned, and what
is still out at the end is exactly the active loans. Bestsellers end up with every copy
out and a FIFO queue of waiting holds.

Timestamps are whole seconds since the epoch until they are written; ids follow time, as
the services' identity columns would.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from books.seed import FIRST_NAMES, LAST_NAMES, demo_rows
from devstack.seed.copybinary import BorrowEncoder
from devstack.seed.history import DAY, LOAN_SECONDS, Catalog, simulate_loans
from devstack.seed.scenarios import Scenario

HOLD_WINDOW_SECONDS = 30 * DAY
# (share of members, borrowing weight, max_loans)
SEGMENTS = ((0.05, 12, 10), (0.50, 3, 5), (0.25, 1, 3), (0.20, 0, 3))
BLOCKED_SHARE = 0.01
DEAD_BOOK_SHARE = 0.20
ZIPF_EXPONENT = 1.0
ZIPF_OFFSET = 20
BLOCK_ROWS = 5_000
NULL = "\\N"

Block = tuple[str, int]
BinaryBlock = tuple[bytes, int]


@dataclass(frozen=True)
class IdBase:
    """The largest id already in each table: the seed's rows come after them."""

    books: int = 0
    members: int = 0
    borrows: int = 0
    holds: int = 0


class Timestamps:
    """COPY text of epoch seconds from two lookup tables, far cheaper than formatting a
    datetime for each of the text tables' timestamps."""

    def __init__(self, first: int, last: int) -> None:
        self.first_day = first // DAY
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        self.days = [
            (epoch + timedelta(days=day)).strftime("%Y-%m-%d ")
            for day in range(self.first_day, last // DAY + 1)
        ]
        self.clock = [
            f"{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}+00"
            for second in range(DAY)
        ]

    def __call__(self, seconds: int) -> str:
        return self.days[seconds // DAY - self.first_day] + self.clock[seconds % DAY]


class LendingData:
    """One scenario's rows: the history is simulated on creation, the ids given after
    (`number`, once the tables are locked); then call the `*_blocks` methods in the order
    they are defined."""

    def __init__(self, scenario: Scenario, *, now: datetime, rng: random.Random) -> None:
        self.scenario = scenario
        self.ids = IdBase()
        self.rng = rng
        self.arrays = np.random.default_rng(rng.getrandbits(64))
        self.now = int(now.timestamp())
        self.start = (self.now // DAY - scenario.days) * DAY
        years = scenario.days / 365.25
        # Ids follow creation, as identity columns would.
        self.books = sorted(
            demo_rows(rng, scenario.books, now=now, years=years + 2), key=lambda row: row[4]
        )
        self.book_created = [int(row[4].timestamp()) + 1 for row in self.books]
        self.timestamps = Timestamps(
            self.now - int((years + 3) * 365.25 * DAY), self.now + 4 * LOAN_SECONDS
        )
        self._plan_books()
        self._plan_members()
        # member index * books + book index, for each loan out (and at the end, hold open).
        self.open_pairs: set[int] = set()
        # (borrow id, book index, borrowed_at) of the loans still out now.
        self.active: list[tuple[int, int, int]] = []
        self.book_labels: list[str] = []
        self.member_ids: list[str] = []
        self._lend()
        self.next_borrow_id = len(self.loans) + 1

    def number(self, ids: IdBase) -> None:
        """The rows come after the largest ids already in the tables."""
        self.ids = ids
        self.book_labels = [
            f"{ids.books + index + 1}\t{row[0]}\t{row[1]}" for index, row in enumerate(self.books)
        ]
        self.member_ids = [str(ids.members + index + 1) for index in range(self.scenario.members)]
        out = self.out
        self.active = list(
            zip(
                (ids.borrows + 1 + out).tolist(),
                self.loans.book[out].tolist(),
                self.loans.borrowed[out].tolist(),
                strict=True,
            )
        )
        self.next_borrow_id = ids.borrows + len(self.loans) + 1

    def _plan_books(self) -> None:
        count = self.scenario.books
        rank = self.arrays.permutation(count)
        dead_from = count - int(count * DEAD_BOOK_SHARE)
        self.book_weight = np.where(
            rank >= dead_from, 0.0, (rank + ZIPF_OFFSET) ** -float(ZIPF_EXPONENT)
        )
        fewest = np.select([rank < count * 0.05, rank < count * 0.30], [3, 2], 1)
        self.copies = fewest + self.arrays.integers(0, np.where(fewest == 1, 2, 3))

    def _plan_members(self) -> None:
        count = self.scenario.members
        rng = self.rng
        segments = rng.choices(SEGMENTS, weights=[s[0] for s in SEGMENTS], k=count)
        self.member_weight = [float(segment[1]) for segment in segments]
        self.max_loans = [segment[2] for segment in segments]
        earliest = self.start - 365 * DAY
        span = self.now - 7 * DAY - earliest
        self.member_created = sorted(earliest + int(rng.random() * span) for _ in range(count))

    def member_blocks(self) -> Iterator[Block]:
        rng = self.rng
        ts = self.timestamps
        lines = []
        for index, (first, last) in enumerate(
            zip(
                rng.choices(FIRST_NAMES, k=self.scenario.members),
                rng.choices(LAST_NAMES, k=self.scenario.members),
                strict=True,
            )
        ):
            member_id = self.member_ids[index]
            status = "blocked" if rng.random() < BLOCKED_SHARE else "active"
            created = ts(self.member_created[index])
            lines.append(
                f"{member_id}\t{first} {last}\t{first.lower()}.{last.lower()}.{member_id}"
                f"@members.example.org\t{status}\t{self.max_loans[index]}\t0"
                f"\t{created}\t{created}\n"
            )
            if len(lines) == BLOCK_ROWS:
                yield "".join(lines), len(lines)
                lines = []
        if lines:
            yield "".join(lines), len(lines)

    def _lend(self) -> None:
        catalog = Catalog(
            book_created=np.array(self.book_created, dtype=np.int64),
            copies=self.copies.astype(np.int64),
            book_weight=self.book_weight,
            member_created=np.array(self.member_created, dtype=np.int64),
            member_weight=np.array(self.member_weight, dtype=np.int64),
            max_loans=np.array(self.max_loans, dtype=np.int64),
        )
        loans = simulate_loans(
            self.arrays,
            catalog,
            start=self.start,
            days=self.scenario.days,
            now=self.now,
            wanted=self.scenario.borrows - self.scenario.holds,
        )
        self.loans = loans
        self.out = np.flatnonzero(loans.returned > self.now)
        books, members = loans.book[self.out], loans.member[self.out]
        self.copies_out = np.bincount(books, minlength=self.scenario.books)
        self.open_pairs = set((members * self.scenario.books + books).tolist())

    def borrow_blocks(self) -> Iterator[BinaryBlock]:
        """The lent borrows (returned, or active when still out now), in time order."""
        encoder = BorrowEncoder(
            [(row[0], row[1]) for row in self.books],
            member_base=self.ids.members,
            book_base=self.ids.books,
        )
        return encoder.blocks(self.loans, first_id=self.ids.borrows + 1, now=self.now)

    def book_blocks(self) -> Iterator[Block]:
        """The catalog rows, with the copies on the shelf once the active loans are out."""
        lines = []
        copies = self.copies.tolist()
        available = (self.copies - self.copies_out).tolist()
        for index, (title, author, description, price, created, updated) in enumerate(self.books):
            lines.append(
                f"{self.ids.books + index + 1}\t{title}\t{author}\t{description}\t{price}"
                f"\t{created.isoformat()}\t{updated.isoformat()}\t{copies[index]}"
                f"\t{available[index]}\n"
            )
            if len(lines) == BLOCK_ROWS:
                yield "".join(lines), len(lines)
                lines = []
        if lines:
            yield "".join(lines), len(lines)

    def copy_loan_blocks(self) -> Iterator[Block]:
        """The ledger's `out` row of every active loan."""
        ts = self.timestamps
        return _blocks(
            [
                f"borrow:{borrow_id}\t{self.ids.books + book + 1}\tout\t\\N\t{ts(borrowed)}"
                f"\t{ts(borrowed)}\n"
                for borrow_id, book, borrowed in self.active
            ]
        )

    def _draw_holds(self) -> list[tuple[int, str, int, int, int | None]]:
        """(created_at, status, book, member, closed_at): waiting holds queue for books
        with every copy out; cancelled ones are older and may be for any book."""
        rng = self.rng
        scenario = self.scenario
        lendable = self.book_weight > 0
        shelved_out = np.flatnonzero(lendable & (self.copies_out == self.copies)).tolist()
        lent = np.flatnonzero(lendable).tolist()
        book_weight = self.book_weight.tolist()
        members = range(scenario.members)
        holds: list[tuple[int, str, int, int, int | None]] = []
        for status, books, wanted in (
            ("waiting", shelved_out, scenario.waiting_holds),
            ("cancelled", lent, scenario.cancelled_holds),
        ):
            if not books:
                continue
            made = 0
            book_picks = rng.choices(books, weights=[book_weight[b] for b in books], k=wanted * 20)
            member_picks = rng.choices(members, weights=self.member_weight, k=wanted * 20)
            for book, member in zip(book_picks, member_picks, strict=True):
                if made == wanted:
                    break
                if status == "waiting":
                    if member * scenario.books + book in self.open_pairs:
                        continue
                    created = self.now - 60 - int(rng.random() * HOLD_WINDOW_SECONDS)
                    closed = None
                else:
                    created = self.now - HOLD_WINDOW_SECONDS - int(rng.random() * 365 * DAY)
                    closed = created + int((0.5 + 20 * rng.random()) * DAY)
                if self.member_created[member] >= created:
                    continue
                if status == "waiting":
                    self.open_pairs.add(member * scenario.books + book)
                holds.append((created, status, book, member, closed))
                made += 1
        holds.sort(key=lambda hold: hold[0])
        return holds

    def hold_blocks(self) -> tuple[Iterator[Block], Iterator[Block]]:
        """The holds (ids in FIFO order) and the borrow requests that turned into them."""
        ts = self.timestamps
        holds = self._draw_holds()
        hold_lines = []
        borrow_lines = []
        for number, (created, status, book, member, closed) in enumerate(holds, 1):
            hold_id = self.ids.holds + number
            label = self.book_labels[book]
            created_text = ts(created)
            closed_text = NULL if closed is None else ts(closed)
            hold_lines.append(
                f"{hold_id}\t{self.member_ids[member]}\t{label}\t{status}\t\\N\t\\N"
                f"\t{created_text}\t\\N\t\\N\t{closed_text}"
                f"\t{created_text if closed is None else closed_text}\n"
            )
            borrow_lines.append(
                f"{self.next_borrow_id}\t{self.member_ids[member]}\t{label}\theld\t\\N"
                f"\t{hold_id}\t{ts(created - 1)}\t\\N\t\\N\t\\N\t0\t\\N\t{created_text}\n"
            )
            self.next_borrow_id += 1
        return _blocks(hold_lines), _blocks(borrow_lines)


def _blocks(lines: list[str]) -> Iterator[Block]:
    for start in range(0, len(lines), BLOCK_ROWS):
        block = lines[start : start + BLOCK_ROWS]
        yield "".join(block), len(block)
