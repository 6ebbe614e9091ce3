"""HTTP layer of the catalog: parse, call one service method, shape the response."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from books.catalog.schemas import (
    BookCreate,
    BookDeleted,
    BookListQuery,
    BookPage,
    BookRead,
    BookUpdate,
)
from books.catalog.service import CatalogServiceDep, catalog_reader
from books.covers import forms
from books.covers.forms import (
    BookCreateForm,
    media_type,
    multipart_request_body,
    read_book_form,
    read_json,
    unsupported_body,
    validate_body,
)
from books.covers.service import CoverServiceDep
from books.http import (
    BookId,
    BooksRoute,
    json_response,
    problem_responses,
    query_model,
    query_parameters,
    require_json,
)
from books.security import requires
from servicekit.api_keys import CATALOG_WRITE
from servicekit.pagination import cursor_link_header, link_header

router = APIRouter(prefix="/v1/books", tags=["books"], route_class=BooksRoute)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=BookRead,
    responses=problem_responses(400, 401, 403, 413, 415, 422, 501, 502),
    openapi_extra=multipart_request_body(BookCreateForm, json_model=BookCreate),
    dependencies=[requires(CATALOG_WRITE)],
)
async def create_book(
    request: Request, service: CatalogServiceDep, covers: CoverServiceDep, response: Response
) -> BookRead:
    """Add a book to the catalog."""
    match media_type(request):
        case forms.JSON:
            book = await service.create_book(
                data=validate_body(BookCreate, await read_json(request))
            )
        case forms.MULTIPART:
            data, cover = await read_book_form(request, max_file_bytes=covers.max_bytes)
            book = await covers.create_book(data=data, cover=cover)
        case _:
            raise unsupported_body(request, forms.JSON, forms.MULTIPART)
    response.headers["Location"] = f"/v1/books/{book.id}"
    return BookRead.model_validate(book)


@router.get(
    "",
    response_model=BookPage,
    responses=problem_responses(422),
    openapi_extra=query_parameters(BookListQuery),
)
async def list_books(
    query: Annotated[BookListQuery, Depends(query_model(BookListQuery))], request: Request
) -> Response:
    """List active books, newest first, with optional filters."""
    page = await catalog_reader(request).list_books(query=query)
    params = request.query_params.multi_items()
    links = (
        link_header(
            request.url.path, params, total=page.total, limit=query.limit, offset=query.offset
        )
        if query.after is None
        else cursor_link_header(request.url.path, params, limit=query.limit, after=page.after)
    )
    body = BookPage(data=page.books, total=page.total, limit=query.limit, offset=query.offset)
    return json_response(body, headers={"X-Total-Count": str(page.total), "Link": links})


@router.get("/{book_id}", response_model=BookRead, responses=problem_responses(404, 422))
async def get_book(book_id: BookId, request: Request) -> Response:
    """Fetch one active book."""
    return json_response(await catalog_reader(request).get_book(book_id=book_id))


@router.patch(
    "/{book_id}",
    response_model=BookRead,
    responses=problem_responses(400, 401, 403, 404, 415, 422),
    dependencies=[requires(CATALOG_WRITE), Depends(require_json)],
)
@router.put(
    "/{book_id}",
    response_model=BookRead,
    responses=problem_responses(400, 401, 403, 404, 415, 422),
    dependencies=[requires(CATALOG_WRITE), Depends(require_json)],
    summary="Change some fields of a book",
    description="Same as PATCH: only the fields sent change (kept for the seed contract).",
)
async def update_book(book_id: BookId, changes: BookUpdate, service: CatalogServiceDep) -> BookRead:
    """Change some fields of a book."""
    return BookRead.model_validate(await service.update_book(book_id=book_id, changes=changes))


@router.delete(
    "/{book_id}",
    response_model=BookDeleted,
    responses=problem_responses(401, 403, 404, 422),
    dependencies=[requires(CATALOG_WRITE)],
)
async def delete_book(book_id: BookId, service: CatalogServiceDep) -> BookDeleted:
    """Soft-delete a book: it disappears from reads; orders keep their snapshots."""
    await service.delete_book(book_id=book_id)
    return BookDeleted(message=f"Book with ID {book_id} was deleted successfully")
