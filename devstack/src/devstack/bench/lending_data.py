"""What the lending section borrows and reads: members with free loan slots, books with a
copy on the shelf, the members with the longest histories."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from devstack.bench.stack import ID_SAMPLE_SIZE, Options, SkipSection, fetch_all

HEAVY_MEMBERS = 1_000
SEED_HINT = "run `make seed SCENARIO=high_scale` first"


@dataclass
class LoanSlots:
    """(member, book) pairs to borrow: each free loan slot of the sampled members once, and
    a random book with a copy on the shelf, each book once (two borrows never race for one
    last copy), never one the member already has (`used`)."""

    members: list[int]
    books: list[int]
    rng: random.Random
    used: set[tuple[int, int]] = field(default_factory=set)

    def take(self) -> tuple[int, int]:
        if not self.members:
            raise LookupError("no member with a free loan slot left in the sample")
        member_id = self.members.pop()
        candidates = [book for book in self.books if (member_id, book) not in self.used]
        if not candidates:
            raise LookupError("no book with a copy on the shelf left in the sample")
        book_id = self.rng.choice(candidates)
        self.books.remove(book_id)
        self.used.add((member_id, book_id))
        return member_id, book_id


# Members who may borrow now: active, below their loan limit (their own, else their
# category's), and not blocked by fines owed or loans overdue (a seed charges fines and
# leaves loans overdue, so a random member may well be blocked: a 403, not a loan).
FREE_SLOTS_SQL = """
    SELECT m.id, coalesce(m.max_loans, c.max_loans) - m.loans_out
    FROM members m JOIN member_categories c ON c.code = m.category
    WHERE m.deleted_at IS NULL AND m.status = 'active'
      AND m.loans_out < coalesce(m.max_loans, c.max_loans)
      AND m.balance <= c.max_balance
      AND (SELECT count(*) FROM borrows b
           WHERE b.member_id = m.id AND b.status = 'active' AND b.due_at < now())
          <= c.max_overdue_loans
    ORDER BY random() LIMIT %s
"""


async def loan_slots(options: Options, rng: random.Random) -> LoanSlots:
    rows = await fetch_all(options.orders_database_url, FREE_SLOTS_SQL, (ID_SAMPLE_SIZE,))
    members = [member_id for member_id, free in rows for _ in range(free)]
    rng.shuffle(members)
    books = await books_on_the_shelf(options.books_database_url)
    if not members or not books:
        raise SkipSection(
            f"{len(members):,} free loan slots and {len(books):,} books with a copy on the "
            f"shelf: {SEED_HINT}"
        )
    # A member cannot borrow a book they already have out (or asked for): never pick it.
    held = await fetch_all(
        options.orders_database_url,
        "SELECT member_id, book_id FROM borrows WHERE status IN ('pending', 'active')"
        " AND member_id = ANY(%s)",
        ([member_id for member_id, _ in rows],),
    )
    return LoanSlots(members, books, rng, used={(m, b) for m, b in held})


async def books_on_the_shelf(url: str) -> list[int]:
    """Active books with a copy free now (the borrows before take some of them)."""
    sql = "SELECT id FROM books WHERE active AND copies_available > 0 ORDER BY random() LIMIT %s"
    return [row[0] for row in await fetch_all(url, sql, (ID_SAMPLE_SIZE,))]


async def heavy_members(url: str) -> list[int]:
    """The members with the longest histories (most borrows)."""
    rows = await fetch_all(
        url,
        "SELECT b.member_id FROM borrows b JOIN members m ON m.id = b.member_id"
        " WHERE m.deleted_at IS NULL GROUP BY b.member_id ORDER BY count(*) DESC LIMIT %s",
        (HEAVY_MEMBERS,),
    )
    return [row[0] for row in rows]
