"""Probes: `/livez` (liveness), `/ready` (readiness) and the predecessor's `/health`; and
`/metrics` for Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from books.config import Settings
from books.http import BooksRoute
from servicekit.database import database_answers
from servicekit.metrics import service_registry

# A probe answers within this, whatever the database does.
PROBE_TIMEOUT_S = 1.0

router = APIRouter(tags=["system"], route_class=BooksRoute)


class Health(BaseModel):
    """The predecessor's health body, unchanged for the checks written against it."""

    status: str = Field(examples=["healthy"], description="healthy, or unhealthy (with 503).")
    service: str = Field(examples=["books"])
    cloudinary_configured: bool = Field(description="A Cloudinary account is configured.")
    cloudinary_ready: bool = Field(description="Cover uploads are enabled.")


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """The service's metrics, of every process when there are several (a plain `def`:
    reading the sample files blocks, so FastAPI runs it in its thread pool)."""
    return Response(generate_latest(service_registry()), media_type=CONTENT_TYPE_LATEST)


# Left out of the OpenAPI document like /metrics: it is for the orchestrator, not clients.
@router.get("/livez", include_in_schema=False)
async def livez() -> dict[str, str]:
    """Liveness: the process answers (no dependency is asked; probe this to restart)."""
    return {"status": "ok"}


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "The database is unreachable."}},
)
async def health(request: Request) -> JSONResponse:
    """Health as the predecessor reported it: 200 when the database answers, else 503."""
    settings: Settings = request.app.state.settings
    healthy = await database_answers(request.app.state.engine, timeout_s=PROBE_TIMEOUT_S)
    covers = settings.cloudinary_account() is not None
    body = Health(
        status="healthy" if healthy else "unhealthy",
        service="books",
        cloudinary_configured=covers,
        cloudinary_ready=covers,
    )
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)


@router.get("/ready", responses={503: {"description": "The database is unreachable."}})
async def ready(request: Request) -> JSONResponse:
    """Readiness: the database answers within a second."""
    if not await database_answers(request.app.state.engine, timeout_s=PROBE_TIMEOUT_S):
        return JSONResponse({"status": "unavailable", "database": "down"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "up"})
