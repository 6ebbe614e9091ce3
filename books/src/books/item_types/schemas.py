"""Wire formats of item types."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from books.catalog.schemas import TEXT, ItemTypeCode, Timestamp, collapse_whitespace, no_nul

ItemTypeName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    TEXT,
    AfterValidator(no_nul),
    AfterValidator(collapse_whitespace),
    Field(description="What staff call it.", examples=["Audiobook"]),
]


class ItemTypeCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"code": "dvd", "name": "DVD"}]},
    )

    code: ItemTypeCode
    name: ItemTypeName


class ItemTypeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str = Field(examples=["audiobook"])
    name: str = Field(examples=["Audiobook"])
    created_at: Timestamp
