"""The lent borrows as COPY binary data, built a block of rows at a time with NumPy.

In the binary format the server takes integers and timestamps as they are, where text
would have it parse some 20 million timestamps. Each row is laid out in one line of a
byte matrix (its fixed fields, the tail that depends on its status, then the book's
title and author), and the rows are the matrix's lines cut to their lengths.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

from devstack.seed.history import DAY, Loans

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
TRAILER = b"\xff\xff"
POSTGRES_EPOCH = 946_684_800
BLOCK_ROWS = 100_000
FEE_CENTS_PER_DAY = 25
FEE_MAX_CENTS = 1_500

# The columns in the order the rows carry them; the borrows' other columns are NULL.
BORROW_BINARY_COLUMNS = (
    "id, member_id, book_id, requested_at, borrowed_at, due_at, renewals, updated_at,"
    " status, returned_at, late_fee, book_title, book_author"
)
FIELDS = 13
HEAD = np.dtype(
    [
        ("fields", ">i2"),
        ("id_size", ">i4"),
        ("id", ">i8"),
        ("member_size", ">i4"),
        ("member", ">i8"),
        ("book_size", ">i4"),
        ("book", ">i8"),
        ("requested_size", ">i4"),
        ("requested", ">i8"),
        ("borrowed_size", ">i4"),
        ("borrowed", ">i8"),
        ("due_size", ">i4"),
        ("due", ">i8"),
        ("renewals_size", ">i4"),
        ("renewals", ">i4"),
        ("updated_size", ">i4"),
        ("updated", ">i8"),
    ]
)
NULL_FIELD = b"\xff\xff\xff\xff"


def _text(value: str) -> bytes:
    data = value.encode()
    return len(data).to_bytes(4, "big") + data


ACTIVE = _text("active")
RETURNED = _text("returned")
TIMESTAMP_SIZE = (8).to_bytes(4, "big")
# numeric: 2 base-10000 digits, weight 0, positive, 2 decimals (the server drops a
# leading zero digit: 0.25 arrives as 0|2500).
FEE_HEAD = (12).to_bytes(4, "big") + bytes.fromhex("0002 0000 0000 0002")
TAIL_ACTIVE = len(ACTIVE) + 2 * len(NULL_FIELD)
TAIL_RETURNED = len(RETURNED) + 12 + len(NULL_FIELD)
TAIL_FEE = len(FEE_HEAD) + 4
TAIL_LATE = len(RETURNED) + 12 + TAIL_FEE


def _postgres_time(seconds: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return (seconds - POSTGRES_EPOCH) * 1_000_000


def _bytes(data: bytes) -> npt.NDArray[np.uint8]:
    return np.frombuffer(data, dtype=np.uint8)


def _big_endian(values: npt.NDArray[np.int64], dtype: str, width: int) -> npt.NDArray[np.uint8]:
    """One row of ``width`` bytes per row of ``values`` (a block may hold none)."""
    return values.astype(dtype).view(np.uint8).reshape(-1, width)


class BorrowEncoder:
    """COPY binary blocks of lent borrows; each book's title and author encoded once."""

    def __init__(self, labels: Sequence[tuple[str, str]], *, member_base: int, book_base: int):
        encoded = [_text(title) + _text(author) for title, author in labels]
        self.label_sizes = np.array([len(label) for label in encoded], dtype=np.int64)
        width = int(self.label_sizes.max(initial=0))
        self.labels = np.zeros((len(encoded), width), dtype=np.uint8)
        for index, label in enumerate(encoded):
            self.labels[index, : len(label)] = np.frombuffer(label, dtype=np.uint8)
        self.member_base = member_base
        self.book_base = book_base

    def blocks(self, loans: Loans, *, first_id: int, now: int) -> Iterator[tuple[bytes, int]]:
        yield SIGNATURE, 0
        for begin in range(0, len(loans), BLOCK_ROWS):
            block = loans.take(np.arange(begin, min(begin + BLOCK_ROWS, len(loans))))
            yield self._block(block, first_id=first_id + begin, now=now), len(block)
        yield TRAILER, 0

    def _block(self, loans: Loans, *, first_id: int, now: int) -> bytes:
        count = len(loans)
        returned = loans.returned <= now
        late = returned & (loans.returned > loans.due)
        head = np.empty(count, dtype=HEAD)
        head["fields"] = FIELDS
        for field, size, values in (
            ("id", 8, first_id + np.arange(count)),
            ("member", 8, self.member_base + 1 + loans.member),
            ("book", 8, self.book_base + 1 + loans.book),
            ("requested", 8, _postgres_time(loans.requested)),
            ("borrowed", 8, _postgres_time(loans.borrowed)),
            ("due", 8, _postgres_time(loans.due)),
            ("renewals", 4, loans.renewals),
            ("updated", 8, _postgres_time(np.where(returned, loans.returned, loans.borrowed))),
        ):
            head[f"{field}_size"] = size
            head[field] = values
        tail = np.where(late, TAIL_LATE, np.where(returned, TAIL_RETURNED, TAIL_ACTIVE))
        rows = np.zeros((count, HEAD.itemsize + TAIL_LATE + self.labels.shape[1]), np.uint8)
        rows[:, : HEAD.itemsize] = head.view(np.uint8).reshape(count, -1)
        at = HEAD.itemsize
        rows[~returned, at : at + TAIL_ACTIVE] = _bytes(ACTIVE + NULL_FIELD + NULL_FIELD)
        back = np.flatnonzero(returned)
        rows[back, at : at + len(RETURNED)] = _bytes(RETURNED)
        at += len(RETURNED)
        rows[back, at : at + 4] = _bytes(TIMESTAMP_SIZE)
        rows[back, at + 4 : at + 12] = _big_endian(_postgres_time(loans.returned[back]), ">i8", 8)
        at += 12
        rows[back, at : at + 4] = _bytes(NULL_FIELD)
        fined = np.flatnonzero(late)
        cents = np.minimum(
            FEE_MAX_CENTS, -(-(loans.returned - loans.due)[fined] // DAY) * FEE_CENTS_PER_DAY
        )
        rows[fined, at : at + len(FEE_HEAD)] = _bytes(FEE_HEAD)
        digits = np.stack((cents // 100, cents % 100 * 100), axis=1)
        rows[fined, at + len(FEE_HEAD) : at + TAIL_FEE] = _big_endian(digits, ">i2", 4)
        # The title and author right after each row's tail.
        width = self.labels.shape[1]
        for size in (TAIL_ACTIVE, TAIL_RETURNED, TAIL_LATE):
            chosen = np.flatnonzero(tail == size)
            at = HEAD.itemsize + size
            rows[chosen, at : at + width] = self.labels[loans.book[chosen]]
        lengths = HEAD.itemsize + tail + self.label_sizes[loans.book]
        keep = np.arange(rows.shape[1]) < lengths[:, None]
        return rows[keep].tobytes()
