"""HTTP layer of covers: read the image, call one service method, shape the response."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from books.catalog.schemas import BookRead
from books.covers.forms import CoverForm, multipart_request_body, read_cover_form
from books.covers.service import CoverServiceDep
from books.http import BookId, BooksRoute, problem_responses
from books.security import requires
from servicekit.api_keys import CATALOG_WRITE

router = APIRouter(
    prefix="/v1/books/{book_id}/cover",
    tags=["covers"],
    route_class=BooksRoute,
    dependencies=[requires(CATALOG_WRITE)],
)


@router.put(
    "",
    response_model=BookRead,
    responses=problem_responses(400, 401, 403, 404, 413, 415, 422, 501, 502),
    openapi_extra=multipart_request_body(CoverForm),
)
async def put_cover(book_id: BookId, request: Request, covers: CoverServiceDep) -> BookRead:
    """Upload or replace the cover image of a book (the old image is deleted)."""
    image = await read_cover_form(request, max_file_bytes=covers.max_bytes)
    return BookRead.model_validate(await covers.replace_cover(book_id=book_id, data=image))


@router.delete(
    "",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 422, 501),
)
async def delete_cover(book_id: BookId, covers: CoverServiceDep) -> Response:
    """Remove the cover image of a book."""
    await covers.remove_cover(book_id=book_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
