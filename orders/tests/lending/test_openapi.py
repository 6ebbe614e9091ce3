from __future__ import annotations

from typing import Any

import pytest

LENDING_PREFIXES = ("/v1/members", "/v1/borrows", "/v1/holds", "/v1/library", "/v1/notices")


@pytest.fixture
async def spec(client) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = await client.get("/docs/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def lending_operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in spec["paths"].items()
        if path.startswith(LENDING_PREFIXES)
        for method, operation in item.items()
    ]


class TestLendingDocs:
    async def test_every_operation_has_a_summary_and_documented_problems(self, spec):
        operations = lending_operations(spec)
        assert len(operations) == 30
        for method, path, operation in operations:
            assert operation.get("summary"), (method, path)
            assert {"500", "503"} <= operation["responses"].keys(), (method, path)
            for status, response in operation["responses"].items():
                if status >= "400":
                    assert "application/problem+json" in response["content"], (method, path)

    async def test_every_field_is_described(self, spec):
        lending = (
            "Member",
            "Borrow",
            "Hold",
            "LibrarySummary",
            "PopularBook",
            "TopMember",
            "Ledger",
            "Credit",
            "Notice",
            "Override",
            "PolicyPreview",
            "PreviewExample",
            "Difference",
            "Problem",
            "FieldError",
        )
        for name, schema in spec["components"]["schemas"].items():
            if name.startswith(lending):
                for field, prop in schema.get("properties", {}).items():
                    assert prop.get("description"), f"{name}.{field} has no description"

    async def test_the_internal_api_is_not_published(self, spec):
        assert not [path for path in spec["paths"] if path.startswith("/internal")]
