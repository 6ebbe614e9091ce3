"""Structured JSON logs carrying the request id of the request (or job) being served."""

from __future__ import annotations

import logging
import re
import sys

from asgi_correlation_id import CorrelationIdFilter, correlation_id
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID_HEADER = "X-Request-ID"

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def is_acceptable_request_id(value: str) -> bool:
    """Ids from clients are kept when they are short and safe to log verbatim."""
    return _REQUEST_ID.fullmatch(value) is not None


def current_request_id() -> str | None:
    return correlation_id.get()


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record, uvicorn's included, to stdout as one JSON object per line."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(CorrelationIdFilter(default_value=None))
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={
                "asctime": "time",
                "levelname": "level",
                "name": "logger",
                "correlation_id": "request_id",
            },
            static_fields={"service": service},
            datefmt="%Y-%m-%dT%H:%M:%S%z",
            # uvicorn duplicates its messages with ANSI colours in `color_message`.
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # httpx logs every request it sends at INFO. Ours go to our own services, whose access
    # logs have each one under the same request id: a second line per call, for nothing.
    logging.getLogger("httpx").setLevel(logging.WARNING)
