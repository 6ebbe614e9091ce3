"""The librarian's desk (staff only): members, lending, returns, renewals, the holds
shelf, overdue loans and the library's figures. Every refusal of the API is shown next
to the form that caused it, with what was typed kept."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from web import charts
from web.clients import (
    Api,
    ApiProblem,
    Borrow,
    BorrowPage,
    DailyLoans,
    HoldPage,
    LibrarySummary,
    Member,
    MemberPage,
    PopularBook,
)
from web.pages import new_key, render
from web.staff import StaffStore

PAGE_SIZE = 20
EXPIRING_SOON = timedelta(days=1)


def signed_in(request: Request) -> str:
    """The staff member of the session; anyone else is sent to sign in."""
    if name := request.session.get("staff"):
        return str(name)
    raise HTTPException(
        303, "Sign in first.", headers={"Location": f"/desk/sign-in?next={request.url.path}"}
    )


router = APIRouter(prefix="/desk")
staff_only = [Depends(signed_in)]


def api(request: Request) -> Api:
    return request.app.state.desk_orders  # type: ignore[no-any-return]


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_form(request: Request, next: str = "/desk") -> HTMLResponse:
    return render(request, "desk/sign_in.html", {"next": _local(next)})


@router.post("/sign-in", response_model=None)
async def sign_in(
    request: Request,
    name: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str, Form()] = "/desk",
) -> Response:
    store: StaffStore = request.app.state.staff
    if not await asyncio.to_thread(store.verify, name, password):
        context = {
            "next": _local(next),
            "name": name,
            "error": "That name and password do not match.",
        }
        return render(request, "desk/sign_in.html", context, status=401)
    request.session.clear()
    request.session["staff"] = name
    return RedirectResponse(_local(next), status_code=303)


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    request.session.pop("staff", None)
    return RedirectResponse("/desk/sign-in", status_code=303)


def _local(path: str) -> str:
    """Only a path of this site is a place to go back to after signing in."""
    return path if path.startswith("/desk") and "//" not in path else "/desk"


@router.get("", response_class=HTMLResponse, dependencies=staff_only)
async def figures(request: Request) -> HTMLResponse:
    desk = api(request)
    (summary, _), (popular, _), (daily, _) = await asyncio.gather(
        desk.call("GET", "/v1/library/summary", LibrarySummary),
        desk.call(
            "GET", "/v1/library/popular", list[PopularBook], params={"days": 30, "limit": 10}
        ),
        desk.call("GET", "/v1/library/daily", list[DailyLoans], params={"days": 30}),
    )
    context = {"summary": summary, "popular": popular, "chart": charts.daily_bars(daily)}
    return render(request, "desk/figures.html", context)


@router.get("/members", response_class=HTMLResponse, dependencies=staff_only)
async def members(
    request: Request,
    q: Annotated[str | None, Query(max_length=200)] = None,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> HTMLResponse:
    page = await api(request).page(
        "/v1/members", MemberPage, {"q": q, "limit": PAGE_SIZE, "offset": offset}
    )
    return render(request, "desk/members.html", {"page": page, "q": q or "", "form": {}})


@router.post("/members", response_model=None, dependencies=staff_only)
async def register(
    request: Request,
    name: Annotated[str, Form(max_length=200)],
    email: Annotated[str, Form(max_length=320)],
) -> Response:
    try:
        member, _ = await api(request).call(
            "POST", "/v1/members", Member, body={"name": name, "email": email}
        )
    except ApiProblem as error:
        page = await api(request).page("/v1/members", MemberPage, {"limit": PAGE_SIZE})
        context = {"page": page, "q": "", "form": {"name": name, "email": email}, "error": error}
        return render(request, "desk/members.html", context, status=error.status)
    return RedirectResponse(f"/desk/members/{member.id}", status_code=303)


async def member_context(request: Request, member_id: int) -> dict[str, Any]:
    desk = api(request)
    try:
        (member, _), loans, holds = await asyncio.gather(
            desk.call("GET", f"/v1/members/{member_id}", Member),
            desk.page(f"/v1/members/{member_id}/borrows", BorrowPage, {"limit": PAGE_SIZE}),
            desk.page("/v1/holds", HoldPage, {"member_id": member_id, "limit": PAGE_SIZE}),
        )
    except ApiProblem as error:
        if error.status in (404, 422):
            raise HTTPException(404, "No member has this number.") from error
        raise
    open_holds = [h for h in holds.items if h.status in ("waiting", "suspended", "ready")]
    pending = any(b.status == "pending" for b in loans.items)
    return {
        "member": member,
        "loans": loans,
        "holds": open_holds,
        "pending": pending,
        "lend_key": new_key(),
        "form": {},
    }


@router.get("/members/{member_id}", response_class=HTMLResponse, dependencies=staff_only)
async def member_page(request: Request, member_id: int) -> HTMLResponse:
    return render(request, "desk/member.html", await member_context(request, member_id))


@router.get("/members/{member_id}/loans", response_class=HTMLResponse, dependencies=staff_only)
async def member_loans(request: Request, member_id: int) -> HTMLResponse:
    """The loans block, which the page polls (htmx) while a loan is pending. Once none is,
    the whole page is reloaded (`HX-Refresh`): a loan that became a hold shows in the holds
    block, and the loans count in the heading moves."""
    context = await member_context(request, member_id)
    response = render(request, "desk/_loans.html", context)
    if not context["pending"]:
        response.headers["HX-Refresh"] = "true"
    return response


@router.post("/members/{member_id}/lend", response_model=None, dependencies=staff_only)
async def lend(
    request: Request,
    member_id: int,
    book_id: Annotated[str, Form(max_length=20)],
    key: Annotated[str, Form(min_length=1, max_length=64)],
) -> Response:
    """Lend a book: `POST /v1/borrows` with the form's key (a double submit lends once).
    The loan is pending until a worker checks the copy out; with no copy free, it waits
    on a hold."""
    problem: ApiProblem | None = None
    if not book_id.strip().isdigit():
        problem = ApiProblem(422, "VALIDATION_ERROR", "Type the book's number (its id).", [])
    else:
        body = {"member_id": member_id, "book_id": int(book_id)}
        try:
            await api(request).call(
                "POST", "/v1/borrows", Borrow, body=body, headers={"Idempotency-Key": key}
            )
        except ApiProblem as error:
            problem = error
    if problem is None:
        return RedirectResponse(f"/desk/members/{member_id}", status_code=303)
    context = await member_context(request, member_id)
    context |= {"form": {"book_id": book_id}, "lend_error": problem}
    return render(request, "desk/member.html", context, status=problem.status)


@router.post("/borrows/{borrow_id}/{action}", response_model=None, dependencies=staff_only)
async def loan_action(
    request: Request, borrow_id: int, action: str, member_id: Annotated[int, Form()]
) -> Response:
    """Take a return or renew a loan, then back to the member."""
    if action not in ("return", "renew"):
        raise HTTPException(404, "No such action.")
    path = f"/v1/borrows/{borrow_id}/{action}"
    return await act_for_member(request, member_id, path, ("loan_error", borrow_id))


@router.post("/holds/{hold_id}/checkout", response_model=None, dependencies=staff_only)
async def checkout_hold(
    request: Request, hold_id: int, member_id: Annotated[int, Form()]
) -> Response:
    """Hand a ready hold's copy to its member: the hold becomes a loan."""
    path = f"/v1/holds/{hold_id}/checkout"
    return await act_for_member(request, member_id, path, ("hold_error", hold_id))


async def act_for_member(
    request: Request, member_id: int, path: str, error_at: tuple[str, int]
) -> Response:
    """POST one action on a loan or hold; back to the member's page, or that page with the
    refusal shown on the row (`error_at`: which list, which row)."""
    try:
        await api(request).call("POST", path, Borrow)
    except ApiProblem as error:
        context = await member_context(request, member_id)
        context[error_at[0]] = {"id": error_at[1], "message": error.message}
        return render(request, "desk/member.html", context, status=error.status)
    return RedirectResponse(f"/desk/members/{member_id}", status_code=303)


@router.get("/holds", response_class=HTMLResponse, dependencies=staff_only)
async def holds_shelf(
    request: Request, offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0
) -> HTMLResponse:
    """Holds ready for pickup: the copies on the holds shelf, those expiring soon marked."""
    page = await api(request).page(
        "/v1/holds", HoldPage, {"status": "ready", "limit": PAGE_SIZE, "offset": offset}
    )
    soon = datetime.now(UTC) + EXPIRING_SOON
    expiring = {h.id for h in page.items if h.pickup_by is not None and h.pickup_by <= soon}
    return render(request, "desk/holds.html", {"page": page, "expiring": expiring})


@router.get("/overdue", response_class=HTMLResponse, dependencies=staff_only)
async def overdue(
    request: Request, offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0
) -> HTMLResponse:
    page = await api(request).page(
        "/v1/borrows", BorrowPage, {"status": "overdue", "limit": PAGE_SIZE, "offset": offset}
    )
    return render(request, "desk/overdue.html", {"page": page, "now": datetime.now(UTC)})
