import string
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servicekit.pagination import (
    cursor_link_header,
    decode_cursor,
    encode_cursor,
    link_header,
    page_offsets,
)


def parse_links(header: str) -> dict[str, str]:
    links = {}
    for part in header.split(", "):
        url, rel = part.split("; ")
        links[rel.removeprefix('rel="').removesuffix('"')] = url.strip("<>")
    return links


class TestLinkHeader:
    def test_matches_the_seed_contract(self) -> None:
        header = link_header("/v1/books", [], total=50, limit=10, offset=20)
        links = parse_links(header)
        assert links["next"] == "/v1/books?limit=10&offset=30"
        assert links["prev"] == "/v1/books?limit=10&offset=10"
        assert links["first"] == "/v1/books?limit=10&offset=0"
        assert links["last"] == "/v1/books?limit=10&offset=40"

    def test_keeps_other_query_parameters(self) -> None:
        query = [("limit", "5"), ("author", "Ann & Bo"), ("offset", "5"), ("q", "x")]
        links = parse_links(link_header("/v1/books", query, total=20, limit=5, offset=5))
        assert dict(parse_qsl(urlsplit(links["next"]).query)) == {
            "limit": "5",
            "offset": "10",
            "author": "Ann & Bo",
            "q": "x",
        }

    def test_empty_collection_has_only_first_and_last(self) -> None:
        links = parse_links(link_header("/v1/books", [], total=0, limit=20, offset=0))
        assert links == {
            "first": "/v1/books?limit=20&offset=0",
            "last": "/v1/books?limit=20&offset=0",
        }


@given(
    total=st.integers(min_value=0, max_value=10_000),
    limit=st.integers(min_value=1, max_value=200),
    offset=st.integers(min_value=0, max_value=20_000),
)
def test_page_offsets_properties(total: int, limit: int, offset: int) -> None:
    offsets = page_offsets(total=total, limit=limit, offset=offset)
    last = offsets["last"]
    assert offsets["first"] == 0
    assert last <= max(total - 1, 0) < last + limit or total == 0
    if offset < total:
        assert (last - offset) % limit == 0
    else:
        assert last % limit == 0
    assert ("next" in offsets) == (offset + limit < total)
    if "next" in offsets:
        assert offsets["next"] == offset + limit <= last
    assert ("prev" in offsets) == (offset > 0)
    if "prev" in offsets:
        assert 0 <= offsets["prev"] < offset
        assert offsets["prev"] <= last


@given(
    total=st.integers(min_value=1, max_value=2_000),
    limit=st.integers(min_value=1, max_value=100),
)
def test_following_next_visits_every_item_once(total: int, limit: int) -> None:
    seen, offset = 0, 0
    while True:
        seen += min(limit, total - offset)
        offsets = page_offsets(total=total, limit=limit, offset=offset)
        if "next" not in offsets:
            break
        offset = offsets["next"]
    assert seen == total
    assert offset == page_offsets(total=total, limit=limit, offset=0)["last"]


class TestCursors:
    @given(
        st.datetimes(
            min_value=datetime(1900, 1, 1),
            max_value=datetime(2200, 1, 1),
            timezones=st.just(UTC),
        ),
        st.integers(min_value=1, max_value=2**63 - 1),
    )
    def test_a_cursor_gives_back_its_position(self, created_at: datetime, item_id: int) -> None:
        cursor = encode_cursor(created_at, item_id)
        assert decode_cursor(cursor) == (created_at, item_id)
        assert cursor.isascii()
        assert "=" not in cursor

    @given(st.text(max_size=40))
    def test_anything_else_is_a_value_error(self, text: str) -> None:
        """Random text is never taken for a position (the checksum), nor crashes."""
        try:
            decode_cursor(text)
        except ValueError:
            return
        raise AssertionError(f"{text!r} was taken for a cursor")

    def test_only_the_spelling_it_gave_is_taken(self) -> None:
        """The last character of a 20-byte cursor has 2 spare bits: flipping one changes
        the text, not the bytes."""
        alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
        cursor = encode_cursor(datetime(2026, 1, 1, tzinfo=UTC), 7)
        respelled = cursor[:-1] + alphabet[alphabet.index(cursor[-1]) ^ 1]
        with pytest.raises(ValueError, match="not a cursor"):
            decode_cursor(respelled)

    def test_cursor_links_keep_the_filters(self) -> None:
        header = cursor_link_header(
            "/v1/books", [("q", "dune"), ("after", "x")], limit=5, after="y"
        )
        assert parse_links(header) == {
            "first": "/v1/books?limit=5&after=&q=dune",
            "next": "/v1/books?limit=5&after=y&q=dune",
        }
        last = cursor_link_header("/v1/books", [("after", "x")], limit=5, after=None)
        assert set(parse_links(last)) == {"first"}
