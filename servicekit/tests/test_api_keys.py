"""API keys against real PostgreSQL: the CLI writes a key to every database, stores only
its digest, lists and revokes it; the lookup is an exact, constant-time match."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest

from devstack.pytest_plugin import create_database, drop_database
from servicekit import api_keys
from servicekit.api_keys import (
    CREATE_TABLE,
    ApiKeyForbidden,
    ApiKeyRequired,
    Role,
    authorize,
    find_key,
    main,
    new_token,
    register_key,
    token_prefix,
)
from servicekit.database import ReadPool


def key_database(server_url: str, prefix: str) -> str:
    url = create_database(server_url, prefix)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(CREATE_TABLE)
    return url


@pytest.fixture(scope="module")
def two_databases(postgres_server_url: str) -> Iterator[list[str]]:
    """Two databases with an api_keys table each, as books and orders have."""
    urls = [key_database(postgres_server_url, name) for name in ("keys_books", "keys_orders")]
    yield urls
    for url in urls:
        drop_database(postgres_server_url, url)


@pytest.fixture
async def reads(two_databases: list[str]) -> AsyncIterator[ReadPool]:
    pool = ReadPool(
        two_databases[0],
        size=1,
        timeout_s=5,
        statement_timeout_s=5,
        idle_in_transaction_timeout_s=5,
        name="api-keys-test",
    )
    yield pool
    await pool.close()


def rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT * FROM api_keys ORDER BY id").fetchall()


def create(urls: list[str], capsys: pytest.CaptureFixture[str], role: str = "client") -> str:
    args = [arg for url in urls for arg in ("--database", url)]
    assert main([*args, "create", "--role", role, "--name", "shop-frontend"]) == 0
    token = capsys.readouterr().out.strip()
    assert token_prefix(token) is not None
    return token


class TestCli:
    def test_create_registers_the_key_in_every_database_hashed(
        self, two_databases: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        token = create(two_databases, capsys)
        secret = token.split("_", 2)[2]
        for url in two_databases:
            [row] = [r for r in rows(url) if r[1] == token_prefix(token)]
            # Nowhere in the row: not the token, not its secret part; only the digest.
            assert not any(secret in str(value) for value in row)
            assert api_keys.digest(token) in row

    def test_list_shows_prefix_role_name_and_state(
        self, two_databases: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        token = create(two_databases, capsys, role="desk")
        assert main(["--database", two_databases[0], "list"]) == 0
        listing = capsys.readouterr().out
        [line] = [line for line in listing.splitlines() if str(token_prefix(token)) in line]
        assert "desk" in line
        assert "live" in line
        assert "shop-frontend" in line
        assert token not in listing

    async def test_revoke_ends_the_key_in_every_database(
        self, two_databases: list[str], reads: ReadPool, capsys: pytest.CaptureFixture[str]
    ) -> None:
        token = create(two_databases, capsys)
        assert await find_key(reads, f"Bearer {token}") is not None
        args = [arg for url in two_databases for arg in ("--database", url)]
        assert main([*args, "revoke", str(token_prefix(token))]) == 0
        assert "revoked" in capsys.readouterr().out
        assert await find_key(reads, f"Bearer {token}") is None
        assert main([*args, "revoke", str(token_prefix(token))]) == 1  # nothing left to revoke

    def test_databases_come_from_the_stacks_variables(
        self,
        two_databases: list[str],
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("BOOKS_DATABASE_URL", two_databases[0])
        monkeypatch.setenv("ORDERS_DATABASE_URL", two_databases[1])
        assert main(["create", "--role", "admin", "--name", "ops"]) == 0
        token = capsys.readouterr().out.strip()
        for url in two_databases:
            assert [r for r in rows(url) if r[1] == token_prefix(token)]

    def test_without_a_database_it_says_what_to_set(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("BOOKS_DATABASE_URL", raising=False)
        monkeypatch.delenv("ORDERS_DATABASE_URL", raising=False)
        with pytest.raises(SystemExit):
            main(["list"])
        assert "BOOKS_DATABASE_URL" in capsys.readouterr().err


class TestFindKey:
    async def test_a_registered_key_is_found_with_its_role(
        self, two_databases: list[str], reads: ReadPool
    ) -> None:
        token = new_token()
        register_key(two_databases, token=token, role=Role.DESK, name="desk")
        key = await find_key(reads, f"Bearer {token}")
        assert key is not None
        assert (key.prefix, key.role) == (token_prefix(token), Role.DESK)
        assert await find_key(reads, f"bearer {token}") == key  # the scheme is case-blind

    async def test_the_digests_are_compared_in_constant_time(
        self, two_databases: list[str], reads: ReadPool, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        token = new_token()
        register_key(two_databases, token=token, role=Role.CLIENT, name="shop")
        compared: list[tuple[str, str]] = []
        compare_digest = hmac.compare_digest

        def spy(a: str, b: str) -> bool:
            compared.append((a, b))
            return compare_digest(a, b)

        monkeypatch.setattr(api_keys.hmac, "compare_digest", spy)
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        assert await find_key(reads, f"Bearer {forged}") is None
        assert await find_key(reads, f"Bearer {token}") is not None
        stored = api_keys.digest(token)
        assert compared == [(stored, api_keys.digest(forged)), (stored, stored)]

    @pytest.mark.parametrize(
        "authorization",
        ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer bsk_nothex______", "Bearer x" * 3],
    )
    async def test_malformed_headers_find_nothing(
        self, reads: ReadPool, authorization: str
    ) -> None:
        assert await find_key(reads, authorization) is None

    async def test_an_unknown_key_finds_nothing(self, reads: ReadPool) -> None:
        assert await find_key(reads, f"Bearer {new_token()}") is None


class TestAuthorize:
    def test_roles(self) -> None:
        key = api_keys.ApiKey(id=1, prefix="0" * 12, role=Role.CLIENT)
        assert authorize(key, api_keys.SHOPPING) is key
        with pytest.raises(ApiKeyForbidden):
            authorize(key, api_keys.CATALOG_WRITE)
        with pytest.raises(ApiKeyRequired):
            authorize(None, api_keys.SHOPPING)
        assert {role for role in Role if role in api_keys.CATALOG_WRITE} == {Role.ADMIN}
