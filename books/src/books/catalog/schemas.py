"""Wire formats of the catalog: money as 2-decimal strings, timestamps in UTC with `Z`."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    PlainSerializer,
    StringConstraints,
    field_validator,
    model_validator,
)

from servicekit.pagination import decode_cursor

MAX_PRICE = Decimal("99999999.99")
MAX_BATCH_IDS = 100
MAX_STOCK = 2**31 - 1
MAX_COPIES = 2**31 - 1
MAX_BOOK_ID = 2**63 - 1


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


Money = Annotated[
    Decimal,
    Field(
        ge=0,
        le=MAX_PRICE,
        max_digits=10,
        decimal_places=2,
        allow_inf_nan=False,
        examples=["19.99"],
        json_schema_extra={"type": "string", "pattern": r"^\d{1,8}(\.\d{1,2})?$"},
    ),
    PlainSerializer(_money, return_type=str),
]
Timestamp = Annotated[AwareDatetime, PlainSerializer(_utc, return_type=str)]


def no_nul(text: str) -> str:
    """PostgreSQL cannot store U+0000 in text: refuse it here, as a 422 naming the field,
    not as a database error."""
    if "\x00" in text:
        raise ValueError("must not contain the NUL character (\\u0000)")
    return text


# What `no_nul` and the trimming before the length check enforce, said in the document:
# no NUL, and one character that is not a space.
TEXT_PATTERN = r"^[^\x00]*\S[^\x00]*$"
TEXT = Field(json_schema_extra={"pattern": TEXT_PATTERN})


def whole_number(value: Any) -> Any:
    """JSON has one kind of number: 12.0 is the integer 12, as JSON Schema's `integer` has
    it. 12.5, `true` and `"12"` are still refused by the strict check after this."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def collapse_whitespace(text: str) -> str:
    """`"  The   Great\tGatsby "` -> `"The Great Gatsby"`, as the predecessor stored names."""
    return " ".join(text.split())


# Names are trimmed and their whitespace runs collapsed, so searches and the author
# filter match however a client spaced them; a description keeps its line breaks.
Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    TEXT,
    AfterValidator(no_nul),
    AfterValidator(collapse_whitespace),
]
Author = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=300),
    TEXT,
    AfterValidator(no_nul),
    AfterValidator(collapse_whitespace),
]
Description = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000),
    TEXT,
    AfterValidator(no_nul),
]
# Strict: `true` or `"5"` must not become a stock level.
Stock = Annotated[
    int,
    Field(
        strict=True,
        ge=0,
        le=MAX_STOCK,
        description="Copies for sale; null means stock is not tracked.",
        examples=[12],
    ),
    BeforeValidator(whole_number),
]

CopiesTotal = Annotated[
    int,
    Field(
        strict=True,
        ge=0,
        le=MAX_COPIES,
        description=(
            "Copies the library lends, apart from the stock that is sold; null means the "
            "book is not lendable. It cannot go below the copies out on loan."
        ),
        examples=[3],
    ),
    BeforeValidator(whole_number),
]
ItemTypeCode = Annotated[
    str,
    StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_-]{0,31}$"),
    Field(
        description="The item type (`GET /v1/item-types`) lending policies are matched on.",
        examples=["book"],
    ),
]
# A book id in an internal request body: strict, so `true` or `"7"` is not a book.
BookIdValue = Annotated[int, Field(strict=True, ge=1, le=MAX_BOOK_ID)]


class CoverImage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl
    public_id: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
        TEXT,
        AfterValidator(no_nul),
    ]


class BookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "The Great Gatsby",
                    "author": "F. Scott Fitzgerald",
                    "description": "A classic American novel set in the Jazz Age.",
                    "price": "19.99",
                }
            ]
        },
    )

    title: Title
    author: Author
    description: Description
    price: Money
    image: CoverImage | None = None
    stock: Stock | None = None
    copies_total: CopiesTotal | None = None
    format: ItemTypeCode = "book"

    def column_values(self) -> dict[str, object]:
        """Every copy of a new book is on the shelf."""
        return self.model_dump(exclude={"image"}) | {
            "image": self.image.model_dump(mode="json") if self.image else None,
            "copies_available": self.copies_total,
        }


def drop_null(schema: dict[str, Any], *, nullable: frozenset[str] = frozenset()) -> None:
    """For a body whose fields may be left out but not sent as null (except `nullable`):
    Pydantic documents an optional field as `anyOf: [..., null]`; this says what the
    validator enforces."""
    for name, field in schema["properties"].items():
        if name not in nullable and "anyOf" in field:
            kept = [option for option in field.pop("anyOf") if option.get("type") != "null"]
            field.update(kept[0] if len(kept) == 1 else {"anyOf": kept})
            field.pop("default", None)


def _update_schema(schema: dict[str, Any]) -> None:
    """What the validator below enforces, said in the document: at least one field, and
    null only for the fields that may be null."""
    schema["minProperties"] = 1
    schema["examples"] = [{"price": "24.99", "description": "Updated."}]
    drop_null(schema, nullable=BookUpdate.NULLABLE)


class BookUpdate(BaseModel):
    """Partial update: only the fields present change; `image`, `stock` and `copies_total`
    may be null."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=lambda schema: _update_schema(schema),
    )

    title: Title | None = None
    author: Author | None = None
    description: Description | None = None
    price: Money | None = None
    image: CoverImage | None = None
    stock: Stock | None = None
    copies_total: CopiesTotal | None = None
    format: ItemTypeCode | None = None

    NULLABLE: ClassVar[frozenset[str]] = frozenset({"image", "stock", "copies_total"})

    @model_validator(mode="after")
    def _present_and_not_null(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("send at least one field to change")
        nulls = [
            name for name in self.model_fields_set - self.NULLABLE if getattr(self, name) is None
        ]
        if nulls:
            raise ValueError(f"{', '.join(sorted(nulls))} cannot be null")
        return self

    def changes(self) -> dict[str, object]:
        """Column values for the fields the client sent, but `copies_total`: resizing the
        copies moves `copies_available` too (see `resizes_copies`)."""
        values = {name: getattr(self, name) for name in self.model_fields_set - {"copies_total"}}
        if self.image is not None:
            values["image"] = self.image.model_dump(mode="json")
        return values

    @property
    def resizes_copies(self) -> bool:
        return "copies_total" in self.model_fields_set


class BookRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    author: str
    description: str
    price: Money
    active: bool
    image: CoverImage | None
    stock: int | None
    copies_total: int | None = Field(
        description="Copies the library lends; null when the book is not lendable.",
        examples=[3],
    )
    copies_available: int | None = Field(
        description=(
            "Lendable copies on the shelf now (read-only: checkouts and returns move it); "
            "null when the book is not lendable."
        ),
        examples=[2],
    )
    format: str = Field(description="The item type; `book` unless set.", examples=["book"])
    created_at: Timestamp
    updated_at: Timestamp


class BookDeleted(BaseModel):
    """The answer to a delete, as the predecessor worded it."""

    message: str = Field(examples=["Book with ID 7 was deleted successfully"])


class BookPage(BaseModel):
    data: list[BookRead]
    total: int = Field(description="Number of books matching the query (not just this page).")
    limit: int
    offset: int = Field(description="Books skipped; 0 on a page reached by cursor (`after`).")


class BookListQuery(BaseModel):
    """Query string of `GET /v1/books`."""

    limit: int = Field(default=20, ge=1, le=100, description="Page size, 1 to 100.")
    offset: int = Field(default=0, ge=0, le=2**31 - 1, description="Items to skip.")
    author: Author | None = Field(default=None, description="Exact author, case-insensitive.")
    q: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
            AfterValidator(no_nul),
            AfterValidator(collapse_whitespace),
        ]
        | None
    ) = Field(default=None, description="Text contained in the title or author, case-insensitive.")
    min_price: Money | None = Field(
        default=None, description="Lowest price, inclusive; not above `max_price` (else 422)."
    )
    max_price: Money | None = Field(
        default=None, description="Highest price, inclusive; not below `min_price` (else 422)."
    )
    ids: str | None = Field(
        default=None,
        pattern=r"^\s*\d+\s*(,\s*\d+\s*)*$",
        description=f"Comma-separated book ids (at most {MAX_BATCH_IDS}) for batch lookups.",
        examples=["1,2,3"],
    )
    available: bool | None = Field(
        default=None,
        description=(
            "true: lendable books with a copy on the shelf; "
            "false: lendable books whose copies are all out on loan."
        ),
    )
    after: str | None = Field(
        default=None,
        max_length=64,
        description=(
            "Keyset pagination, for clients that walk far: the books after this cursor. "
            "Send it empty (`after=`) for the first page, then follow the `next` link, "
            "whose cursor is the last book of the page; a page costs the same at any depth "
            "and a walk neither repeats nor skips a book when books are added meanwhile. "
            "Not with `offset`."
        ),
        examples=[""],
    )

    format: ItemTypeCode | None = Field(default=None, description="Only books of this item type.")

    @field_validator("ids")
    @classmethod
    def _bounded_ids(cls, ids: str | None) -> str | None:
        if ids is not None and len(ids.split(",")) > MAX_BATCH_IDS:
            raise ValueError(f"at most {MAX_BATCH_IDS} ids per request")
        if ids is not None and any(int(part) > MAX_BOOK_ID for part in ids.split(",")):
            raise ValueError(f"a book id is at most {MAX_BOOK_ID}")
        return ids

    @field_validator("after")
    @classmethod
    def _a_cursor_we_gave(cls, after: str | None) -> str | None:
        if after:
            decode_cursor(after)
        return after

    @model_validator(mode="after")
    def _offset_or_cursor(self) -> Self:
        if self.after is not None and "offset" in self.model_fields_set:
            raise ValueError("send either offset or after, not both")
        return self

    @model_validator(mode="after")
    def _price_range(self) -> Self:
        if (
            self.min_price is not None
            and self.max_price is not None
            and self.min_price > self.max_price
        ):
            raise ValueError("min_price must not exceed max_price")
        return self

    @property
    def position(self) -> tuple[datetime, int] | None:
        """(created_at, id) of the last book before this page, when `after` names one."""
        return decode_cursor(self.after) if self.after else None

    @property
    def id_list(self) -> list[int] | None:
        if self.ids is None:
            return None
        return sorted({int(part) for part in self.ids.split(",")})

    @property
    def is_filtered(self) -> bool:
        return any(
            value is not None
            for value in (
                self.author,
                self.q,
                self.min_price,
                self.max_price,
                self.ids,
                self.available,
                self.format,
            )
        )
