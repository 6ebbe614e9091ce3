"""The wording both services give to errors that are not their own."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from servicekit.problems import http_error_detail, validation_detail


@pytest.mark.parametrize(
    ("status", "detail", "expected"),
    [
        (HTTPStatus.NOT_FOUND, "Not Found", "There is nothing at /v1/nope."),
        (HTTPStatus.NOT_FOUND, "No route for that book.", "No route for that book."),
        (HTTPStatus.METHOD_NOT_ALLOWED, "Method Not Allowed", "POST is not allowed on /v1/nope."),
        (HTTPStatus.BAD_GATEWAY, HTTPStatus.BAD_GATEWAY.phrase, HTTPStatus.BAD_GATEWAY.description),
    ],
)
def test_framework_errors_say_what_went_wrong(
    status: HTTPStatus, detail: str, expected: str
) -> None:
    assert http_error_detail(status, detail, method="POST", path="/v1/nope") == expected


def test_validation_detail_names_every_field() -> None:
    errors = [{"field": "items[0].quantity"}, {"field": "coupon"}]
    assert validation_detail(errors) == "2 field(s) are invalid: items[0].quantity, coupon"
