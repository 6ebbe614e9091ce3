"""Ten years of loans in NumPy arrays: each copy's loans, then a member for each.

Requests for a book arrive at a rate that follows the library's demand (hours, seasons,
weekends, growth) times the book's popularity. A copy is lent to the first request after
it is back on the shelf, so each copy's loans follow one another and a book never has
more loans out than copies: the loans of all copies are drawn together, one loan of
each copy per step. The time a copy waits on the shelf is measured on a demand clock
(`DemandClock`) that runs in opening hours only, faster in busy seasons.

Members are then drawn by segment weight among those registered by the request, and the
loans that would put a member above `max_loans`, or lend them a second copy of a book
they have out, are given to another member (or, rarely, dropped).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

DAY = 86_400
OPENING = 9 * 3600
OPEN_SECONDS = 11 * 3600
LOAN_SECONDS = 21 * DAY
RENEWAL_SHARES = (0.85, 0.12, 0.03)
# Returned after the due date; with the length of the lateness this makes ~12 % of the
# loans out at the end overdue, as in the anchor system.
LATE_SHARE = 0.12
LATE_MEAN_SECONDS = 18 * DAY
LATE_MAX_SECONDS = 120 * DAY
SEASON = np.array([1.0, 1.0, 1.05, 1.05, 1.0, 0.8, 0.8, 0.95, 1.1, 1.1, 1.3, 1.3])
# Draw a few more loans than wanted: some find no member, the rest are trimmed at random.
SURPLUS = 1.04
MEMBER_ROUNDS = 30


class DemandClock:
    """Cumulative demand for a book of weight 1 since the first day: flat outside opening
    hours and after the last day, so a request never falls there. A day's requests follow
    growth, season, weekday and noise, shared among the books in the catalog by then."""

    def __init__(
        self, rng: np.random.Generator, catalog: Catalog, *, start: int, days: int
    ) -> None:
        self.start = start
        self.days = days
        day = start // DAY + np.arange(days)
        sunday = (day + 3) % 7 == 6
        month = day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12
        growth = 0.6 + 0.4 * np.arange(days) / max(days - 1, 1)
        noise = np.maximum(0.2, rng.normal(1.0, 0.1, days))
        factors = growth * SEASON[month] * np.where(sunday, 0.6, 1.0) * noise
        order = np.argsort(catalog.book_created)
        shelved = np.cumsum(catalog.book_weight[order])
        opened = np.searchsorted(catalog.book_created[order], day * DAY + OPENING, side="right")
        weight = np.where(opened > 0, shelved[np.maximum(opened - 1, 0)], 0.0)
        self.rate = np.where(weight > 0, factors / np.where(weight > 0, weight, 1.0), 0.0)
        self.edges = np.concatenate(([0.0], np.cumsum(self.rate)))
        self.total = float(self.edges[-1])

    def at(self, seconds: Ints) -> Floats:
        offset = seconds - self.start
        day = np.clip(offset // DAY, 0, self.days - 1)
        opened = np.clip((offset - day * DAY - OPENING) / OPEN_SECONDS, 0.0, 1.0)
        return np.where(offset < 0, 0.0, self.edges[day] + self.rate[day] * opened)

    def seconds(self, demand: Floats) -> Ints:
        """The first moment the clock shows `demand` (below `total`)."""
        day = np.clip(np.searchsorted(self.edges, demand, side="right") - 1, 0, self.days - 1)
        opened = ((demand - self.edges[day]) / self.rate[day] * OPEN_SECONDS).astype(np.int64)
        moment: Ints = self.start + day * DAY + OPENING + opened
        return moment


@dataclass
class Loans:
    """One entry per loan, in request order; times in seconds since the epoch."""

    book: Ints
    member: Ints
    requested: Ints
    borrowed: Ints
    due: Ints
    returned: Ints
    renewals: Ints

    def __len__(self) -> int:
        return len(self.book)

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> Loans:
        return Loans(
            self.book[index],
            self.member[index],
            self.requested[index],
            self.borrowed[index],
            self.due[index],
            self.returned[index],
            self.renewals[index],
        )


@dataclass(frozen=True)
class Catalog:
    """What the simulation needs of the books and members, by index."""

    book_created: Ints
    copies: Ints
    book_weight: Floats
    # Sorted: member indexes follow registration.
    member_created: Ints
    member_weight: Ints
    max_loans: Ints


def _mean_loan_days() -> float:
    due_days = LOAN_SECONDS / DAY * sum((1 + n) * s for n, s in enumerate(RENEWAL_SHARES))
    return (1 - LATE_SHARE) * 0.55 * due_days + LATE_SHARE * (due_days + LATE_MEAN_SECONDS / DAY)


def _demand_scale(clock: DemandClock, catalog: Catalog, wanted: float) -> float:
    """The popularity scale at which the copies should make about `wanted` loans: a copy
    with `d` days of demand ahead and a request rate `r` lends about d / (1/r + loan)."""
    lent = catalog.book_weight > 0
    book = np.repeat(np.flatnonzero(lent), catalog.copies[lent])
    shelved = np.maximum(catalog.book_created[book], clock.start)
    ahead = clock.total - clock.at(shelved)
    days_ahead = np.maximum(clock.start + clock.days * DAY - shelved, DAY) / DAY
    per_copy = catalog.book_weight[book] / catalog.copies[book]
    # A loan's days on the copy's own clock: about its share of the demand still ahead.
    loan = _mean_loan_days() * ahead / days_ahead
    low, high = 1e-9, 1e12
    for _ in range(80):
        scale = (low * high) ** 0.5
        made = float(np.sum(ahead / (1 / (scale * per_copy) + loan)))
        low, high = (scale, high) if made < wanted else (low, scale)
    return high


def _copy_loans(
    rng: np.random.Generator, clock: DemandClock, catalog: Catalog, *, scale: float, now: int
) -> Loans:
    lent = catalog.book_weight > 0
    book = np.repeat(np.flatnonzero(lent), catalog.copies[lent])
    rate = scale * catalog.book_weight[book] / catalog.copies[book]
    shelved = np.maximum(catalog.book_created[book], clock.start)
    shelved_demand = clock.at(shelved)
    steps: list[tuple[Ints, ...]] = []
    while len(book):
        demand = shelved_demand + rng.exponential(1.0, len(book)) / rate
        asked = demand < clock.total
        book, rate, shelved, demand = book[asked], rate[asked], shelved[asked], demand[asked]
        count = len(book)
        requested = np.maximum(clock.seconds(demand), shelved)
        borrowed = requested + 1 + rng.integers(0, 30, count)
        renewals = np.searchsorted(np.cumsum(RENEWAL_SHARES), rng.random(count), side="right")
        renewals = np.minimum(renewals, len(RENEWAL_SHARES) - 1).astype(np.int64)
        due = borrowed + LOAN_SECONDS * (1 + renewals)
        late = rng.random(count) < LATE_SHARE
        lateness = np.minimum(
            LATE_MAX_SECONDS, 3600 + rng.exponential(LATE_MEAN_SECONDS, count).astype(np.int64)
        )
        early = ((due - borrowed) * (0.1 + 0.9 * rng.random(count))).astype(np.int64)
        returned = np.where(late, due + lateness, borrowed + early)
        steps.append((book, requested, borrowed, due, returned, renewals))
        # A copy still out now stays out; the others are back on the shelf when returned.
        back = returned <= now
        book, rate, shelved = book[back], rate[back], returned[back]
        shelved_demand = clock.at(shelved)
    columns = [np.concatenate(column) for column in zip(*steps, strict=True)]
    order = np.argsort(columns[1])
    book, requested, borrowed, due, returned, renewals = (column[order] for column in columns)
    return Loans(book, np.zeros_like(book), requested, borrowed, due, returned, renewals)


class _Lent:
    """Loans sorted per member and per (member, book), to count those a loan would overlap.

    A member's keys are `member << 32 | seconds << 1`, with 1 added to a request: at the
    same second a return comes before a request. A loan holds its member's place from its
    request to its return."""

    def __init__(self, starts: Ints, ends: Ints, pair: Ints, requested: Ints, returned: Ints):
        self.starts, self.ends = starts, ends
        self.pair, self.requested, self.returned = pair, requested, returned

    @classmethod
    def of(cls, loans: Loans, pair: Ints, base: int) -> _Lent:
        by_pair = np.lexsort((loans.requested, pair))
        return cls(
            np.sort(_key(loans.member, loans.requested, base) | 1),
            np.sort(_key(loans.member, loans.returned, base)),
            pair[by_pair],
            loans.requested[by_pair],
            loans.returned[by_pair],
        )

    def overlapping(self, loans: Loans, pair: Ints, base: int) -> tuple[Ints, Ints]:
        """For each loan, how many of these are its member's at some moment of it, and
        how many of those are of its book."""
        requested_before = np.searchsorted(
            self.starts, _key(loans.member, loans.returned, base), side="left"
        )
        returned_before = np.searchsorted(
            self.ends, _key(loans.member, loans.requested, base) | 1, side="right"
        )
        low = np.searchsorted(self.pair, pair, side="left")
        high = np.searchsorted(self.pair, pair, side="right")
        same_book = np.zeros(len(loans), dtype=np.int64)
        last = len(self.pair) - 1
        for step in range(int((high - low).max(initial=0))):
            at = np.minimum(low + step, last)
            same_book += (
                (low + step < high)
                & (self.requested[at] < loans.returned)
                & (self.returned[at] > loans.requested)
            )
        return requested_before - returned_before, same_book


def _key(member: Ints, seconds: Ints, base: int) -> Ints:
    key: Ints = (member << 32) | ((seconds - base) << 1)
    return key


def _first_fit(loans: Loans, max_loans: Ints, pair: Ints, base: int) -> tuple[Ints, _Lent]:
    """The loans that find their member at `max_loans` or with their book out (by all the
    loans before them, kept or not, so that the others are clean), and the others."""
    # Per member in request order (the loans' order): a radix sort when indexes are short.
    small = np.uint16 if len(max_loans) <= 1 << 16 else np.int64
    by_member = np.argsort(loans.member.astype(small), kind="stable")
    starts = _key(loans.member, loans.requested, base)[by_member] | 1
    by_end = np.argsort(_key(loans.member, loans.returned, base))
    ends = _key(loans.member, loans.returned, base)[by_end]
    # A member's loans out at a request: those requested up to it, less those returned;
    # the other members' loans count as many times in each.
    level = np.arange(1, len(loans) + 1) - np.searchsorted(ends, starts, side="left")
    clash = np.zeros(len(loans), dtype=bool)
    clash[by_member[level > max_loans[loans.member[by_member]]]] = True
    # Per (member, book) in request order: clashes with any earlier loan still out.
    by_pair = np.argsort(pair, kind="stable")
    sorted_pair = pair[by_pair]
    group = np.cumsum(np.concatenate(([0], sorted_pair[1:] != sorted_pair[:-1])))
    out_until = np.maximum.accumulate((group << 32) + loans.returned[by_pair] - base)
    again = (sorted_pair[1:] == sorted_pair[:-1]) & (
        out_until[:-1] - (group[1:] << 32) > loans.requested[by_pair][1:] - base
    )
    clash[by_pair[1:][again]] = True
    kept_by_pair = by_pair[~clash[by_pair]]
    lent = _Lent(
        starts[~clash[by_member]],
        ends[~clash[by_end]],
        pair[kept_by_pair],
        loans.requested[kept_by_pair],
        loans.returned[kept_by_pair],
    )
    return np.flatnonzero(clash), lent


def _assign_members(rng: np.random.Generator, loans: Loans, catalog: Catalog) -> Loans:
    """A member for each loan, among those registered before its request; the loans no
    member could take are left out."""
    weight = catalog.member_weight
    entries = np.repeat(np.arange(len(weight)), weight)
    ends = np.cumsum(weight)
    registered = np.searchsorted(catalog.member_created, loans.requested, side="left")
    span = np.where(registered > 0, ends[np.maximum(registered - 1, 0)], 0)
    loans = loans.take(span > 0)
    span = span[span > 0]
    if not len(entries) or not len(loans):
        return loans.take(np.zeros(0, dtype=np.intp))
    loans.member = entries[(rng.random(len(loans)) * span).astype(np.int64)]
    books = len(catalog.copies)
    base = int(loans.requested.min())
    moving, lent = _first_fit(loans, catalog.max_loans, loans.member * books + loans.book, base)
    placed = np.zeros(0, dtype=np.int64)
    # Another member for each clash, checked against every other loan (moving ones too).
    for _ in range(MEMBER_ROUNDS):
        if not len(moving):
            break
        loans.member[moving] = entries[(rng.random(len(moving)) * span[moving]).astype(np.int64)]
        pair = loans.member * books + loans.book
        trying = np.concatenate((placed, moving))
        near = _Lent.of(loans.take(trying), pair[trying], base)
        moved = loans.take(moving)
        members, same_book = lent.overlapping(moved, pair[moving], base)
        near_members, near_same_book = near.overlapping(moved, pair[moving], base)
        fits = (members + near_members - 1 < catalog.max_loans[moved.member]) & (
            same_book + near_same_book == 1
        )
        placed = np.concatenate((placed, moving[fits]))
        moving = moving[~fits]
    keep = np.ones(len(loans), dtype=bool)
    keep[moving] = False
    return loans.take(keep)


def simulate_loans(
    rng: np.random.Generator, catalog: Catalog, *, start: int, days: int, now: int, wanted: int
) -> Loans:
    """`wanted` loans (fewer only if the catalog cannot lend that many), in request order."""
    clock = DemandClock(rng, catalog, start=start, days=days)
    scale = _demand_scale(clock, catalog, wanted * SURPLUS)
    loans = Loans(*(np.zeros(0, dtype=np.int64) for _ in range(7)))
    for _ in range(8):
        drawn = _copy_loans(rng, clock, catalog, scale=scale, now=now)
        loans = _assign_members(rng, drawn, catalog)
        if len(loans) >= wanted:
            break
        scale *= 2 * SURPLUS * wanted / max(len(loans), 1)
    # Only loans given back are dropped: what is out now stays as drawn.
    returned = np.flatnonzero(loans.returned <= now)
    extra = min(len(loans) - wanted, len(returned))
    if extra > 0:
        keep = np.ones(len(loans), dtype=bool)
        keep[rng.choice(returned, extra, replace=False)] = False
        loans = loans.take(keep)
    return loans
