"""Builds the web app: storefront and desk routers, sessions, CSRF, static files, metrics.

It is a backend-for-frontend: the keys it holds for the APIs stay on the server; the
browser gets a signed session cookie (HttpOnly, SameSite=Lax, Secure behind HTTPS) with
its cart, its orders' customer id and, at the desk, the staff name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from asgi_correlation_id import CorrelationIdMiddleware
from asgi_csrf import asgi_csrf
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from prometheus_fastapi_instrumentator import Instrumentator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp

from servicekit.logs import REQUEST_ID_HEADER, configure_logging, is_acceptable_request_id
from web import desk, storefront
from web.clients import Api, ApiProblem, ApiUnavailable
from web.config import Settings, get_settings
from web.pages import STATIC, HashedStaticFiles, error_page
from web.staff import StaffStore

SESSION_COOKIE = "bookstore_session"
SESSION_MAX_AGE_S = 14 * 24 * 3600
SERVICE_NAMES = {"books": "The catalog", "orders": "Ordering and lending"}


def create_app(settings: Settings | None = None) -> ASGIApp:
    settings = settings or get_settings()
    configure_logging("web", settings.log_level)
    if settings.secret_key is None:
        raise RuntimeError("set WEB_SECRET_KEY (32 characters or more) to sign the cookies")
    secret = settings.secret_key.get_secret_value()
    # The site only reads the catalog, which is public: no key, so no key lookup per read.
    books = Api("books", settings.books_url, timeout_s=settings.api_timeout_s, key=None)
    orders = Api(
        "orders", settings.orders_url, timeout_s=settings.api_timeout_s, key=settings.client_key
    )
    desk_orders = Api(
        "orders", settings.orders_url, timeout_s=settings.api_timeout_s, key=settings.staff_key
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for api in (books, orders, desk_orders):
            await api.close()

    app = FastAPI(
        title="Bookstore web", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.books = books
    app.state.orders = orders
    app.state.desk_orders = desk_orders
    app.state.staff = StaffStore(settings.staff_file)

    @app.exception_handler(ApiUnavailable)
    async def unavailable(request: Request, error: ApiUnavailable) -> HTMLResponse:
        name = SERVICE_NAMES[error.service]
        response = error_page(
            request, 503, f"{name} is unavailable", "Please try again in a minute."
        )
        response.headers["Retry-After"] = "30"
        return response

    @app.exception_handler(ApiProblem)
    async def refused(request: Request, error: ApiProblem) -> HTMLResponse:
        status = error.status if error.status in (403, 404, 409, 422) else 400
        return error_page(request, status, "That did not work", error.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> HTMLResponse:
        fields = ", ".join(
            f"{e['loc'][-1]}: {e['msg'].lower()}" for e in error.errors() if e.get("loc")
        )
        return error_page(request, 422, "Please check what you typed", fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 303:  # signing in first (web.desk.signed_in)
            return RedirectResponse((error.headers or {})["Location"], status_code=303)
        titles = {404: "Page not found", 405: "Not allowed here"}
        title = titles.get(error.status_code, "Something went wrong")
        response = error_page(request, error.status_code, title, str(error.detail))
        for name, value in (error.headers or {}).items():
            response.headers[name] = value
        return response

    @app.get("/livez", include_in_schema=False)
    async def livez() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app.include_router(storefront.router)
    app.include_router(desk.router)
    app.mount("/static", HashedStaticFiles(directory=STATIC), name="static")
    Instrumentator(excluded_handlers=["/metrics", "/livez", "/static"]).instrument(app).expose(
        app, include_in_schema=False
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE_S,
        same_site="lax",
        https_only=settings.cookie_secure,
    )
    app.add_middleware(
        CorrelationIdMiddleware,
        header_name=REQUEST_ID_HEADER,
        validator=is_acceptable_request_id,
    )
    # Every form carries the token of a signed cookie (double submit); a POST from
    # another site cannot read it. asgi-csrf is the one datasette uses.
    protected: ASGIApp = asgi_csrf(
        app,
        signing_secret=secret,
        cookie_secure=settings.cookie_secure,
    )
    return protected
