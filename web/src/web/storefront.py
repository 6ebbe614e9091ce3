"""The storefront: catalog, book page, cart, checkout, the session's orders."""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BeforeValidator, Field

from web.clients import Api, ApiProblem, Book, BookPage, Order, OrderPage
from web.pages import new_key, render

router = APIRouter()

PAGE_SIZE = 12
Price = Annotated[Decimal, Field(ge=0, max_digits=10, decimal_places=2)]
MAX_QUANTITY = 99
CART_LINES = 20
# How long a checkout waits on a twin request (double click) holding its key.
IN_FLIGHT_RETRIES = 10
SETTLED = ("confirmed", "rejected", "cancelled")


def blank_is_none(value: object) -> object:
    """A form's empty field means "no filter" (browsers send every field of a GET form)."""
    return None if value == "" else value


def books_api(request: Request) -> Api:
    return request.app.state.books  # type: ignore[no-any-return]


def orders_api(request: Request) -> Api:
    return request.app.state.orders  # type: ignore[no-any-return]


def cart_of(request: Request) -> dict[str, int]:
    return dict(request.session.get("cart", {}))


def customer_of(request: Request) -> int:
    """The session's customer id on the orders it places (JavaScript-safe integer)."""
    if "customer" not in request.session:
        request.session["customer"] = secrets.randbelow(2**53 - 1) + 1
    return int(request.session["customer"])


def checkout_key(request: Request) -> str:
    """The key of the next checkout attempt; a new one whenever the cart changes."""
    if "checkout" not in request.session:
        request.session["checkout"] = new_key()
    return str(request.session["checkout"])


def save_cart(request: Request, cart: dict[str, int]) -> None:
    """Keep the cart; the next checkout is a new attempt. The customer id is fixed here,
    before any checkout, so that twin checkouts of one page send the same order."""
    customer_of(request)
    request.session["cart"] = cart
    request.session["checkout"] = new_key()


@router.get("/", response_class=HTMLResponse)
async def catalog(
    request: Request,
    q: Annotated[str | None, Query(max_length=200)] = None,
    author: Annotated[str | None, Query(max_length=200)] = None,
    min_price: Annotated[Price | None, BeforeValidator(blank_is_none), Query()] = None,
    max_price: Annotated[Price | None, BeforeValidator(blank_is_none), Query()] = None,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> HTMLResponse:
    filters = {"q": q, "author": author, "min_price": min_price, "max_price": max_price}
    page = await books_api(request).page(
        "/v1/books", BookPage, {**filters, "limit": PAGE_SIZE, "offset": offset}
    )
    return render(request, "catalog.html", {"page": page, "filters": filters})


@router.get("/books/{book_id}", response_class=HTMLResponse)
async def book_page(request: Request, book_id: int) -> HTMLResponse:
    book = await get_book(books_api(request), book_id)
    return render(
        request, "book.html", {"book": book, "in_cart": cart_of(request).get(str(book_id), 0)}
    )


async def get_book(api: Api, book_id: int) -> Book:
    try:
        book, _ = await api.call("GET", f"/v1/books/{book_id}", Book)
    except ApiProblem as error:
        if error.status in (404, 422):
            raise HTTPException(404, "No book has this address.") from error
        raise
    return book


@router.post("/cart")
async def add_to_cart(
    request: Request,
    book_id: Annotated[int, Form(ge=1)],
    quantity: Annotated[int, Form(ge=1, le=MAX_QUANTITY)] = 1,
) -> Response:
    cart = cart_of(request)
    if str(book_id) not in cart and len(cart) >= CART_LINES:
        raise HTTPException(422, f"A cart holds at most {CART_LINES} different books.")
    await get_book(books_api(request), book_id)
    cart[str(book_id)] = min(cart.get(str(book_id), 0) + quantity, MAX_QUANTITY)
    save_cart(request, cart)
    return RedirectResponse("/cart", status_code=303)


@router.post("/cart/remove")
async def remove_from_cart(request: Request, book_id: Annotated[int, Form()]) -> Response:
    cart = cart_of(request)
    cart.pop(str(book_id), None)
    save_cart(request, cart)
    return RedirectResponse("/cart", status_code=303)


async def cart_lines(request: Request) -> tuple[list[dict[str, Any]], Decimal]:
    cart = cart_of(request)
    if not cart:
        return [], Decimal("0.00")
    page = await books_api(request).page(
        "/v1/books", BookPage, {"ids": ",".join(cart), "limit": CART_LINES}
    )
    lines = [
        {"book": book, "quantity": cart[str(book.id)], "total": book.price * cart[str(book.id)]}
        for book in page.items
        if str(book.id) in cart
    ]
    return lines, sum((line["total"] for line in lines), Decimal("0.00"))


async def cart_view(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
    """The cart page, with what went wrong with the last checkout if anything did."""
    lines, total = await cart_lines(request)
    context = {
        "lines": lines,
        "total": total,
        "checkout_key": checkout_key(request),
        "error": error,
    }
    return render(request, "cart.html", context, status)


@router.get("/cart", response_class=HTMLResponse)
async def cart_page(request: Request) -> HTMLResponse:
    return await cart_view(request)


@router.post("/checkout")
async def checkout(
    request: Request, attempt: Annotated[str, Form(min_length=1, max_length=64)]
) -> Response:
    """Place the cart as one order. The form carries its attempt's key, sent to orders as
    the `Idempotency-Key`: a double click or a reload after submit places one order."""
    placed: dict[str, int] = dict(request.session.get("placed", {}))
    if attempt in placed:
        return RedirectResponse(f"/orders/{placed[attempt]}", status_code=303)
    cart = cart_of(request)
    if attempt != checkout_key(request) or not cart:
        message = "Your cart changed since that page; check it and place the order again."
        return await cart_view(request, message, 409)
    body = {
        "customer_id": customer_of(request),
        "items": [
            {"book_id": int(b), "quantity": q}
            for b, q in sorted(cart.items(), key=lambda i: int(i[0]))
        ],
    }
    try:
        order = await place(orders_api(request), body, attempt)
    except ApiProblem as error:
        return await cart_view(request, error.message, error.status)
    request.session["placed"] = dict(list(placed.items())[-4:]) | {attempt: order.id}
    save_cart(request, {})
    return RedirectResponse(f"/orders/{order.id}", status_code=303)


async def place(api: Api, body: dict[str, Any], key: str) -> Order:
    """POST the order; while a twin request with the same key is still running, wait for
    its answer (the API replays it) rather than show an error."""
    for _ in range(IN_FLIGHT_RETRIES):
        try:
            order, _ = await api.call(
                "POST", "/v1/orders", Order, body=body, headers={"Idempotency-Key": key}
            )
        except ApiProblem as error:
            if error.code != "IDEMPOTENCY_IN_PROGRESS":
                raise
            await asyncio.sleep(0.2)
        else:
            return order
    raise ApiProblem(
        409, "IDEMPOTENCY_IN_PROGRESS", "Your order is still being placed; reload in a moment.", []
    )


async def session_order(request: Request, order_id: int) -> Order:
    """One of this session's orders (another's is not found here)."""
    try:
        order, _ = await orders_api(request).call("GET", f"/v1/orders/{order_id}", Order)
    except ApiProblem as error:
        if error.status in (404, 422):
            raise HTTPException(404, "No order of yours has this number.") from error
        raise
    if order.customer_id is None or order.customer_id != request.session.get("customer"):
        raise HTTPException(404, "No order of yours has this number.")
    return order


@router.get("/orders", response_class=HTMLResponse)
async def order_history(
    request: Request, offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0
) -> HTMLResponse:
    page = None
    if "customer" in request.session:
        page = await orders_api(request).page(
            "/v1/orders",
            OrderPage,
            {"customer_id": customer_of(request), "limit": PAGE_SIZE, "offset": offset},
        )
    return render(request, "orders.html", {"page": page})


@router.get("/orders/{order_id}", response_class=HTMLResponse)
async def order_page(request: Request, order_id: int) -> HTMLResponse:
    order = await session_order(request, order_id)
    return render(request, "order.html", {"order": order, "settled": order.status in SETTLED})


@router.get("/orders/{order_id}/status", response_class=HTMLResponse)
async def order_status(request: Request, order_id: int) -> HTMLResponse:
    """The order's status block, which the page polls (htmx) until the saga settles."""
    order = await session_order(request, order_id)
    return render(
        request, "_order_status.html", {"order": order, "settled": order.status in SETTLED}
    )


@router.post("/orders/{order_id}/cancel")
async def cancel_order(request: Request, order_id: int) -> Response:
    await session_order(request, order_id)
    try:
        await orders_api(request).call("POST", f"/v1/orders/{order_id}/cancel", Order)
    except ApiProblem as error:
        order = await session_order(request, order_id)
        context = {"order": order, "settled": order.status in SETTLED, "error": error.message}
        return render(request, "order.html", context, status=409)
    return RedirectResponse(f"/orders/{order_id}", status_code=303)
