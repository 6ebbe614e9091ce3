"""Job arguments arrive as JSON; each job checks its payload against a model first."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from workers.errors import PermanentJobError

PayloadT = TypeVar("PayloadT", bound=BaseModel)


def parse_payload(model: type[PayloadT], payload: dict[str, Any]) -> PayloadT:
    """The payload as `model`; a malformed one can never succeed, so it is not retried."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise PermanentJobError(f"malformed {model.__name__} payload: {exc}") from exc
