"""A scenario's lending data, as blocks of COPY text, simulated day by day.

Borrow requests arrive in library hours, more in November/December and fewer in
June/July, growing over the years. Each picks a book by a Zipf-like popularity (a fifth
of the catalog is never borrowed) and a member by segment (heavy, regular, casual;
a fifth never borrow). A request is lent only when the book has a copy on the shelf, the
member is below `max_loans` and has no copy of that book out, so every moment of the
history is a state the services could have reached: copies out never exceed copies
owned, and what is still out at the end is exactly the active loans. Bestsellers end up
with every copy out and a FIFO queue of waiting holds.

Timestamps are whole seconds since the epoch until they are written; ids follow time, as
the services' identity columns would.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from books.seed import FIRST_NAMES, LAST_NAMES, demo_rows
from devstack.seed.scenarios import Scenario

DAY = 86_400
OPENING = 9 * 3600
OPEN_SECONDS = 11 * 3600
LOAN_SECONDS = 21 * DAY
# Returned after the due date; with the length of the lateness this makes ~12 % of the
# loans out at the end overdue, as in the anchor system.
LATE_SHARE = 0.12
LATE_MEAN_SECONDS = 18 * DAY
LATE_MAX_SECONDS = 120 * DAY
FEE_CENTS_PER_DAY = 25
FEE_MAX_CENTS = 1_500
HOLD_WINDOW_SECONDS = 30 * DAY
# (share of members, borrowing weight, max_loans)
SEGMENTS = ((0.05, 12, 10), (0.50, 3, 5), (0.25, 1, 3), (0.20, 0, 3))
BLOCKED_SHARE = 0.01
DEAD_BOOK_SHARE = 0.20
ZIPF_EXPONENT = 1.0
ZIPF_OFFSET = 20
SEASON = (1.0, 1.0, 1.05, 1.05, 1.0, 0.8, 0.8, 0.95, 1.1, 1.1, 1.3, 1.3)
BLOCK_ROWS = 5_000
MAX_DRAWS = 200
NULL = "\\N"

Block = tuple[str, int]


@dataclass(frozen=True)
class IdBase:
    """The largest id already in each table: the seed's rows come after them."""

    books: int = 0
    members: int = 0
    borrows: int = 0
    holds: int = 0


class Timestamps:
    """COPY text of epoch seconds from two lookup tables: datetime formatting of the
    ~15 million timestamps of the big scenario would cost more than the rest together."""

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


def _fee(late_seconds: int) -> str:
    cents = min(FEE_MAX_CENTS, -(-late_seconds // DAY) * FEE_CENTS_PER_DAY)
    return f"{cents // 100}.{cents % 100:02d}"


class LookupTable:
    """Indexes repeated in proportion to their weight: a uniform pick from the table is a
    weighted pick without a bisection, and a pick from its first `end(k)` entries is one
    among the first k indexes (those created by then, as indexes follow creation)."""

    def __init__(self, weights: list[float], scale: float) -> None:
        self.entries: list[int] = []
        self.ends: list[int] = []
        done = 0.0
        for index, weight in enumerate(weights):
            before = round(done)
            done += weight * scale
            self.entries.extend([index] * (round(done) - before))
            self.ends.append(len(self.entries))

    def end(self, count: int) -> int:
        return self.ends[count - 1] if count else 0


class LendingData:
    """One scenario's rows; call the `*_blocks` methods in the order they are defined."""

    def __init__(
        self, scenario: Scenario, *, ids: IdBase, now: datetime, rng: random.Random
    ) -> None:
        self.scenario = scenario
        self.ids = ids
        self.rng = rng
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
        self.copies_out = [0] * scenario.books
        self.loans_out = [0] * scenario.members
        # member index * books + book index, for each loan out (and at the end, hold open).
        self.open_pairs: set[int] = set()
        # (borrow id, book index, borrowed_at) of the loans still out now.
        self.active: list[tuple[int, int, int]] = []
        self.next_borrow_id = ids.borrows + 1

    def _plan_books(self) -> None:
        count = self.scenario.books
        ranks = list(range(count))
        self.rng.shuffle(ranks)
        dead_from = count - int(count * DEAD_BOOK_SHARE)
        self.book_weight = [
            0.0 if rank >= dead_from else (rank + ZIPF_OFFSET) ** -ZIPF_EXPONENT for rank in ranks
        ]
        randint = self.rng.randint
        self.copies = [
            randint(3, 5)
            if rank < count * 0.05
            else randint(2, 4)
            if rank < count * 0.30
            else randint(1, 2)
            for rank in ranks
        ]
        self.book_labels = [
            f"{self.ids.books + index + 1}\t{row[0]}\t{row[1]}"
            for index, row in enumerate(self.books)
        ]

    def _plan_members(self) -> None:
        count = self.scenario.members
        rng = self.rng
        segments = rng.choices(SEGMENTS, weights=[s[0] for s in SEGMENTS], k=count)
        self.member_weight = [float(segment[1]) for segment in segments]
        self.max_loans = [segment[2] for segment in segments]
        earliest = self.start - 365 * DAY
        span = self.now - 7 * DAY - earliest
        self.member_created = sorted(earliest + int(rng.random() * span) for _ in range(count))
        self.member_ids = [str(self.ids.members + index + 1) for index in range(count)]

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

    def _daily_requests(self, total: int) -> list[int]:
        """`total` requests spread over the days: growth, seasons, weekends, noise."""
        gauss = self.rng.gauss
        days = self.scenario.days
        factors = []
        for day in range(days):
            date = datetime.fromtimestamp(self.start + day * DAY, UTC)
            weekday = 0.6 if date.weekday() == 6 else 1.0
            growth = 0.6 + 0.4 * day / max(days - 1, 1)
            noise = max(0.2, gauss(1.0, 0.1))
            factors.append(growth * SEASON[date.month - 1] * weekday * noise)
        scale = total / sum(factors)
        counts = []
        done = 0.0
        for factor in factors:
            before = round(done)
            done += factor * scale
            counts.append(round(done) - before)
        return counts

    def borrow_blocks(self) -> Iterator[Block]:
        """The lent borrows (returned, or active when still out now), in time order.

        A returned copy is back on the shelf the next morning: returns are kept in one
        bucket per day, far cheaper than a heap, and a copy is never lent twice at once.
        """
        rng = self.rng
        random = rng.random
        expovariate = rng.expovariate
        now = self.now
        ts = self.timestamps
        days, clock, first_day = ts.days, ts.clock, ts.first_day
        book_table = LookupTable(self.book_weight, (1 << 21) / sum(self.book_weight))
        member_table = LookupTable(self.member_weight, 1.0)
        book_entries, member_entries = book_table.entries, member_table.entries
        book_count = self.scenario.books
        copies_out, copies = self.copies_out, self.copies
        loans_out, max_loans = self.loans_out, self.max_loans
        labels, member_ids = self.book_labels, self.member_ids
        open_pairs = self.open_pairs
        active = self.active
        sim_days = self.scenario.days
        first_sim_day = self.start // DAY
        # returns[d]: the (member, book) pairs of the loans given back on day d.
        returns: list[list[int]] = [[] for _ in range(sim_days + 1)]
        borrow_id = self.next_borrow_id - 1
        lines: list[str] = []
        carried = 0
        daily = self._daily_requests(self.scenario.borrows - self.scenario.holds)
        for day, requests in enumerate(daily):
            for pair in returns[day]:
                member, book = divmod(pair, book_count)
                copies_out[book] -= 1
                loans_out[member] -= 1
                open_pairs.discard(pair)
            returns[day] = []
            day_start = self.start + day * DAY + OPENING
            # Only books and members created by the morning; a pick among them.
            book_span = book_table.end(bisect.bisect(self.book_created, day_start))
            member_span = member_table.end(bisect.bisect(self.member_created, day_start))
            if not (book_span and member_span):
                carried += requests
                continue
            requests += carried
            carried = 0
            for requested in sorted(
                day_start + int(random() * OPEN_SECONDS) for _ in range(requests)
            ):
                for _ in range(MAX_DRAWS):
                    book = book_entries[int(random() * book_span)]
                    if copies_out[book] < copies[book]:
                        break
                else:
                    carried += 1
                    continue
                for _ in range(MAX_DRAWS):
                    member = member_entries[int(random() * member_span)]
                    pair = member * book_count + book
                    if loans_out[member] < max_loans[member] and pair not in open_pairs:
                        break
                else:
                    carried += 1
                    continue
                borrow_id += 1
                borrowed = requested + 1 + int(random() * 30)
                draw = random()
                renewals = 0 if draw < 0.85 else 1 if draw < 0.97 else 2
                due = borrowed + LOAN_SECONDS * (1 + renewals)
                if random() < LATE_SHARE:
                    late = 3600 + int(expovariate(1 / LATE_MEAN_SECONDS))
                    returned = due + min(LATE_MAX_SECONDS, late)
                else:
                    returned = borrowed + int((due - borrowed) * (0.1 + 0.9 * random()))
                copies_out[book] += 1
                loans_out[member] += 1
                open_pairs.add(pair)
                requested_text = days[requested // DAY - first_day] + clock[requested % DAY]
                borrowed_text = days[borrowed // DAY - first_day] + clock[borrowed % DAY]
                due_text = days[due // DAY - first_day] + clock[due % DAY]
                if returned <= now:
                    returns[min(returned // DAY - first_sim_day + 1, sim_days)].append(pair)
                    returned_text = days[returned // DAY - first_day] + clock[returned % DAY]
                    fee = _fee(returned - due) if returned > due else NULL
                    lines.append(
                        f"{borrow_id}\t{member_ids[member]}\t{labels[book]}\treturned\t\\N\t\\N"
                        f"\t{requested_text}\t{borrowed_text}\t{due_text}\t{returned_text}"
                        f"\t{renewals}\t{fee}\t{returned_text}\n"
                    )
                else:
                    active.append((borrow_id, book, borrowed))
                    lines.append(
                        f"{borrow_id}\t{member_ids[member]}\t{labels[book]}\tactive\t\\N\t\\N"
                        f"\t{requested_text}\t{borrowed_text}\t{due_text}\t\\N"
                        f"\t{renewals}\t\\N\t{borrowed_text}\n"
                    )
                if len(lines) == BLOCK_ROWS:
                    yield "".join(lines), len(lines)
                    lines = []
        if lines:
            yield "".join(lines), len(lines)
        # What was given back since the last morning: only the active loans stay out.
        for pair in returns[sim_days]:
            member, book = divmod(pair, book_count)
            copies_out[book] -= 1
            loans_out[member] -= 1
            open_pairs.discard(pair)
        self.next_borrow_id = borrow_id + 1

    def book_blocks(self) -> Iterator[Block]:
        """The catalog rows, with the copies on the shelf once the active loans are out."""
        lines = []
        for index, (title, author, description, price, created, updated) in enumerate(self.books):
            lines.append(
                f"{self.ids.books + index + 1}\t{title}\t{author}\t{description}\t{price}"
                f"\t{created.isoformat()}\t{updated.isoformat()}\t{self.copies[index]}"
                f"\t{self.copies[index] - self.copies_out[index]}\n"
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
        shelved_out = [
            book
            for book in range(scenario.books)
            if self.book_weight[book] > 0 and self.copies_out[book] == self.copies[book]
        ]
        lent = [book for book in range(scenario.books) if self.book_weight[book] > 0]
        members = range(scenario.members)
        holds: list[tuple[int, str, int, int, int | None]] = []
        for status, books, wanted in (
            ("waiting", shelved_out, scenario.waiting_holds),
            ("cancelled", lent, scenario.cancelled_holds),
        ):
            if not books:
                continue
            made = 0
            book_picks = rng.choices(
                books, weights=[self.book_weight[b] for b in books], k=wanted * 20
            )
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
