from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from orders.books_client import MAX_UNIT_PRICE, BookSnapshot
from orders.ordering.schemas import MAX_ITEMS, MAX_QUANTITY, OrderItemCreate, money
from orders.ordering.service import price_lines

prices = st.decimals(min_value=Decimal(0), max_value=MAX_UNIT_PRICE, places=2)
lines = st.lists(
    st.tuples(prices, st.integers(min_value=1, max_value=MAX_QUANTITY)),
    min_size=1,
    max_size=MAX_ITEMS,
)


class TestPriceLines:
    @given(lines)
    def test_totals_are_the_exact_decimal_sums(self, drawn):
        items = [OrderItemCreate(book_id=i + 1, quantity=q) for i, (_, q) in enumerate(drawn)]
        books = {
            i + 1: BookSnapshot(id=i + 1, title="T", author="A", price=price, active=True)
            for i, (price, _) in enumerate(drawn)
        }
        priced, total = price_lines(items, books)
        for line, (price, quantity) in zip(priced, drawn, strict=True):
            assert isinstance(line.total_price, Decimal)
            assert line.unit_price == price
            assert line.total_price == price * quantity
        exact = sum((price * quantity for price, quantity in drawn), Decimal(0))
        assert isinstance(total, Decimal)
        assert total == exact
        assert money(total) == f"{exact:.2f}"

    @given(prices)
    def test_money_has_exactly_two_decimals(self, price):
        text = money(price)
        assert Decimal(text) == price
        assert len(text.split(".")[1]) == 2
