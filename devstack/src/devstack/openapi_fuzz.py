"""A service against its own OpenAPI document, as schemathesis sees it: every documented
operation with generated valid and invalid input and every check, over real HTTP to a
running server, 30 examples each as `st run` would.

Schemathesis's own pytest plugin does not run under pytest 9 (its lazy fixture loader reads
a private attribute pytest dropped), so a test parametrizes the operations of the document
the app generates (`operations`) and runs each as a Hypothesis test (`check`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import CheckFunction
from schemathesis.core.result import Err
from schemathesis.schemas import APIOperation

EXAMPLES = 30


Operation = APIOperation[Any, Any, Any, Any]


def operations(document: dict[str, Any]) -> dict[str, Operation]:
    """The document's operations by label (`GET /v1/books`); one it cannot read fails."""
    schema = schemathesis.openapi.from_dict(document)
    found = {}
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        found[result.ok().label] = result.ok()
    return found


def with_input(found: Mapping[str, Operation]) -> list[str]:
    """The operations that take parameters or a body: the others have no invalid input."""
    return sorted(
        label
        for label, operation in found.items()
        if operation.body or any(True for _ in operation.iter_parameters())
    )


@dataclass(frozen=True)
class Rules:
    """What a document cannot say, per operation label."""

    # Checks that cannot hold, with the reason in a comment where they are given.
    excluded_checks: Mapping[str, Sequence[CheckFunction]] = field(default_factory=dict)
    # Test only this media type of an operation that takes several.
    media_types: Mapping[str, str] = field(default_factory=dict)
    # Body fields given these values in valid cases (a file that must be an image).
    valid_values: Mapping[str, Callable[[], Any]] = field(default_factory=dict)


def check(
    operation: Operation,
    mode: GenerationMode,
    *,
    base_url: str,
    rules: Rules = Rules(),
    headers: Mapping[str, str] | None = None,
) -> None:
    label = operation.label
    strategy = operation.as_strategy(generation_mode=mode)
    if media_type := rules.media_types.get(label):
        strategy = strategy.filter(lambda case: case.media_type == media_type)

    @given(strategy)
    @settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck))
    def call(case: schemathesis.Case[Operation]) -> None:
        if mode is GenerationMode.POSITIVE and isinstance(case.body, dict):
            for name, value in rules.valid_values.items():
                if name in case.body:
                    case.body[name] = value()
        case.call_and_validate(
            base_url=base_url,
            headers=dict(headers or {}),
            excluded_checks=list(rules.excluded_checks.get(label, [])),
        )

    call()
