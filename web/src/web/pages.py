"""Rendering: the Jinja environment (autoescaped), static files by content hash, the
session's helpers, and the error pages."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.types import Scope

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")


@cache
def _digest(name: str) -> str:
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    """`/static/NAME?v=HASH`: a new file is a new URL, so browsers may keep each for a year."""
    return f"/static/{name}?v={_digest(name)}"


class HashedStaticFiles(StaticFiles):
    """Static files; those asked for by content hash are cacheable for a year."""

    async def get_response(self, path: str, scope: Scope) -> Any:
        response = await super().get_response(path, scope)
        if b"v=" in scope.get("query_string", b"") and response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


def csrf_token(request: Request) -> str:
    return str(request.scope["csrftoken"]())


templates.env.globals |= {"static_url": static_url, "csrf_token": csrf_token}


def render(
    request: Request, template: str, context: Mapping[str, Any] | None = None, status: int = 200
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        template,
        {"staff": request.session.get("staff"), **(context or {})},
        status_code=status,
    )


def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return render(request, "error.html", {"title": title, "message": message}, status)


def new_key() -> str:
    """An idempotency key for one attempt at a write (a checkout, a loan)."""
    return secrets.token_urlsafe(16)
