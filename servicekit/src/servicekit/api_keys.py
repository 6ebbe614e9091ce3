"""API keys: who may write. A key is a random token with a role; each service keeps the
keys it accepts in its own `api_keys` table (same shape everywhere, one row per key per
database), and `python -m servicekit.api_keys` creates, lists and revokes them in every
database at once, so one admin key works on books and on orders.

A token reads `bsk_<prefix>_<secret>`. The prefix is public: it names the key in the CLI's
listing and in logs, and finds its row through a unique index. Only the SHA-256 digest of
the whole token is stored. A slow password hash (argon2, bcrypt) exists to make guessing a
low-entropy password expensive; these tokens carry 256 random bits, so guessing is
hopeless whatever the hash, and a slow hash would only add ~50 ms to every write.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import re
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg

from servicekit.database import ReadPool
from servicekit.problems import ProblemError

TOKEN_PREFIX = "bsk"  # noqa: S105 (the public start of every token, not a secret)
_TOKEN = re.compile(rf"^{TOKEN_PREFIX}_(?P<prefix>[0-9a-f]{{12}})_[A-Za-z0-9_-]{{43}}$")
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="bookstore"'}


class Role(StrEnum):
    ADMIN = "admin"  # everything: the catalog, orders, the library
    DESK = "desk"  # library staff: members, loans, holds
    CLIENT = "client"  # a shop frontend: orders, and borrows/holds for its members


# Who may do what; an endpoint names one of these. Adding a role is adding it here.
CATALOG_WRITE = frozenset({Role.ADMIN})
SHOPPING = frozenset({Role.ADMIN, Role.CLIENT})
LIBRARY_STAFF = frozenset({Role.ADMIN, Role.DESK})
BORROWING = frozenset({Role.ADMIN, Role.DESK, Role.CLIENT})


@dataclass(frozen=True)
class ApiKey:
    """An authenticated caller: the key's row in this service's database."""

    id: int
    prefix: str
    role: Role


class ApiKeyRequired(ProblemError):
    status, title, type = 401, "API key required", "/problems/api-key-required"
    code = "API_KEY_REQUIRED"

    def __init__(self) -> None:
        super().__init__(
            "This request needs an API key: send it as `Authorization: Bearer <key>`.",
            headers=BEARER_CHALLENGE,
        )


class ApiKeyInvalid(ProblemError):
    status, title, type = 401, "API key invalid", "/problems/api-key-invalid"
    code = "API_KEY_INVALID"

    def __init__(self) -> None:
        super().__init__(
            "The API key is unknown or revoked (or the Authorization header is not "
            "`Bearer <key>`).",
            headers={
                "WWW-Authenticate": BEARER_CHALLENGE["WWW-Authenticate"] + ', error="invalid_token"'
            },
        )


class ApiKeyForbidden(ProblemError):
    status, title, type = 403, "API key not allowed", "/problems/api-key-forbidden"
    code = "API_KEY_FORBIDDEN"

    def __init__(self, role: Role, allowed: frozenset[Role]) -> None:
        roles = ", ".join(sorted(allowed))
        super().__init__(f"A {role} key may not do this; it needs a key of role: {roles}.")


def new_token() -> str:
    return f"{TOKEN_PREFIX}_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def token_prefix(token: str) -> str | None:
    """The public part of a well-formed token, else None."""
    match = _TOKEN.match(token)
    return match["prefix"] if match else None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(token: str) -> dict[str, str]:
    """The `Authorization` header that presents `token`."""
    return {"Authorization": f"Bearer {token}"}


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authorize(key: ApiKey | None, allowed: frozenset[Role]) -> ApiKey:
    """The caller, if its key may do what needs one of `allowed`; else 401/403."""
    if key is None:
        raise ApiKeyRequired()
    if key.role not in allowed:
        raise ApiKeyForbidden(key.role, allowed)
    return key


_FIND = "SELECT id, role, digest FROM api_keys WHERE prefix = %s AND revoked_at IS NULL"


async def find_key(reads: ReadPool, authorization: str) -> ApiKey | None:
    """The live key an `Authorization` header presents, or None: one indexed query on the
    read pool, in autocommit (no BEGIN, COMMIT or pre-ping around it: a keyed request
    through the engine paid four round trips for it), so a revoked key is refused by the
    very next request."""
    token = bearer_token(authorization)
    prefix = token_prefix(token) if token else None
    if token is None or prefix is None:
        return None

    async def read(conn: psycopg.AsyncConnection[Any]) -> tuple[int, str, str] | None:
        cursor = await conn.execute(_FIND, (prefix,))
        return await cursor.fetchone()

    row = await reads.run(read)
    # Constant time, so response timing does not reveal how much of a guess was right.
    if row is None or not hmac.compare_digest(row[2], digest(token)):
        return None
    key_id, role, _ = row
    return ApiKey(id=key_id, prefix=prefix, role=Role(role))


# The table, as each service's migration creates it (books 0010, orders 0009). Changing
# it means a new migration in both services, not an edit here.
CREATE_TABLE = """
CREATE TABLE api_keys (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prefix text NOT NULL CONSTRAINT api_keys_prefix_unique UNIQUE
        CONSTRAINT api_keys_prefix_form CHECK (prefix ~ '^[0-9a-f]{12}$'),
    digest text NOT NULL CONSTRAINT api_keys_digest_form CHECK (digest ~ '^[0-9a-f]{64}$'),
    role text NOT NULL CONSTRAINT api_keys_role CHECK (role IN ('admin', 'desk', 'client')),
    name text NOT NULL CONSTRAINT api_keys_name_not_blank CHECK (btrim(name) <> ''),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz NULL
)
"""


# The command line, and what `make run` uses to register its development keys.

_REGISTER = """
INSERT INTO api_keys (prefix, digest, role, name) VALUES (%s, %s, %s, %s)
ON CONFLICT (prefix) DO NOTHING
"""


def register_key(database_urls: Sequence[str], *, token: str, role: Role, name: str) -> None:
    """Accept `token` with `role` in every database (a key already there is left alone)."""
    prefix = token_prefix(token)
    if prefix is None:
        raise ValueError("not a token made by new_token()")
    for url in database_urls:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(_REGISTER, [prefix, digest(token), role.value, name])


def revoke_key(database_urls: Sequence[str], *, prefix: str) -> int:
    """Revoke the key in every database; how many of them held it live."""
    revoked = 0
    for url in database_urls:
        with psycopg.connect(url, autocommit=True) as conn:
            cursor = conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE prefix = %s AND revoked_at IS NULL",
                [prefix],
            )
            revoked += cursor.rowcount
    return revoked


def list_keys(database_url: str) -> list[tuple[str, str, str, datetime, datetime | None]]:
    """(prefix, role, name, created_at, revoked_at) of every key, oldest first."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT prefix, role, name, created_at, revoked_at FROM api_keys ORDER BY id"
        ).fetchall()
    return [(row[0], row[1], row[2], row[3], row[4]) for row in rows]


# The databases the CLI writes to when no --database is given: the stack's.
DATABASE_ENV = ("BOOKS_DATABASE_URL", "ORDERS_DATABASE_URL")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m servicekit.api_keys",
        description="Create, list and revoke the API keys of the bookstore's services. "
        "Each command acts on every database given (--database, repeatable; default: "
        f"{' and '.join(f'${name}' for name in DATABASE_ENV)}).",
    )
    parser.add_argument("--database", action="append", default=[], metavar="URL")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print its token (only once)")
    create.add_argument("--role", required=True, choices=[role.value for role in Role])
    create.add_argument("--name", required=True, help="who holds it, e.g. shop-frontend")
    commands.add_parser("list", help="list the keys (prefix, role, name, created, revoked)")
    revoke = commands.add_parser("revoke", help="revoke a key by its prefix")
    revoke.add_argument("prefix")
    args = parser.parse_args(argv)
    urls = args.database or [os.environ[name] for name in DATABASE_ENV if os.environ.get(name)]
    if not urls:
        parser.error(f"give --database, or set {' / '.join(DATABASE_ENV)}")
    if args.command == "create":
        if not args.name.strip():
            parser.error("--name must not be blank")
        token = new_token()
        register_key(urls, token=token, role=Role(args.role), name=args.name)
        print(token)
    elif args.command == "list":
        for prefix, role, name, created, revoked_at in list_keys(urls[0]):
            state = f"revoked {revoked_at:%Y-%m-%d %H:%M}" if revoked_at else "live"
            print(f"{prefix}  {role:<6}  {created:%Y-%m-%d %H:%M}  {state:<22}  {name}")
    else:
        if not re.fullmatch(r"[0-9a-f]{12}", args.prefix):
            parser.error("a prefix is the 12 hex digits after bsk_")
        revoked_in = revoke_key(urls, prefix=args.prefix)
        print(f"revoked {args.prefix} in {revoked_in} of {len(urls)} database(s)")
        return 0 if revoked_in else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
