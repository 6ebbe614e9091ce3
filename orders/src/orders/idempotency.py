"""Idempotency keys: the first request with a key does the work, retries get its response.

A key belongs to the API key that sent it: two clients choosing the same Idempotency-Key
each get their own order (the table's primary key is (api_key_id, key)).

A key is claimed with one atomic `INSERT … ON CONFLICT` (never check-then-insert). The
claim commits on its own, so a concurrent retry sees it at once and is told the first
request is still running (409) instead of queueing behind an uncommitted row: it runs
on the read pool's autocommit connections, one round trip, where a session of the
engine paid four (pre-ping, BEGIN, the statement, COMMIT) and the ORM's work around
them (together ~8% of the CPU of placing an order, by py-spy). The
response is stored by the request's own transaction, beside the order it describes, so
a stored response exists exactly when its order does.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    LargeBinary,
    SmallInteger,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP, UUID
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from orders.db import Base
from orders.errors import IdempotencyKeyInFlight, IdempotencyKeyReused
from servicekit.database import ReadPool

logger = logging.getLogger(__name__)
# Expired keys deleted per transaction.
PURGE_BATCH = 1000


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"

    api_key_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(Text)
    lock_token: Mapped[uuid.UUID] = mapped_column(UUID)
    locked_at: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True))
    response_status: Mapped[int | None] = mapped_column(SmallInteger)
    response_headers: Mapped[dict[str, str] | None] = mapped_column(JSONB)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    order_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(TIMESTAMP(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(TIMESTAMP(timezone=True))


_RECORDS = cast("Table", IdempotencyRecord.__table__)


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Claimed:
    api_key_id: int
    key: str
    token: uuid.UUID

    def params(self) -> dict[str, object]:
        """The parameters of `_OWNED`."""
        return {
            "claim_api_key_id": self.api_key_id,
            "claim_key": self.key,
            "claim_token": self.token,
        }


# The claimed row, while its claim still holds it. Built once with parameters, as are
# the statements using it: building the clause per request took as long as running it.
_OWNED = and_(
    IdempotencyRecord.api_key_id == bindparam("claim_api_key_id"),
    IdempotencyRecord.key == bindparam("claim_key"),
    IdempotencyRecord.lock_token == bindparam("claim_token"),
    IdempotencyRecord.completed_at.is_(None),
)
# SKIP LOCKED: if the claiming request's own transaction still holds the row, waiting for
# it would wait forever; the claim then simply goes stale instead.
_RELEASE = delete(IdempotencyRecord).where(
    tuple_(IdempotencyRecord.api_key_id, IdempotencyRecord.key).in_(
        select(IdempotencyRecord.api_key_id, IdempotencyRecord.key)
        .where(_OWNED)
        .with_for_update(skip_locked=True)
    )
)
# The table's update, not the entity's: the ORM's bulk update machinery was half the
# cost of this statement (by py-spy) and has no objects to synchronize here.
_COMPLETE = (
    update(_RECORDS)
    .where(_OWNED)
    .values(
        response_status=bindparam("status"),
        response_headers=bindparam("headers", type_=JSONB),
        response_body=bindparam("body"),
        order_id=bindparam("order_id"),
        completed_at=func.now(),
    )
    .returning(IdempotencyRecord.key)
)


@dataclass(frozen=True)
class Replay:
    response: StoredResponse


@dataclass(frozen=True)
class InFlight:
    pass


@dataclass(frozen=True)
class Mismatch:
    pass


ClaimOutcome = Claimed | Replay | InFlight | Mismatch


def fingerprint(*parts: bytes) -> str:
    """Digest of what makes two requests "the same": method, path and canonical body."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


# Takes the key when it is new, expired, or held by a request that died mid-way
# (claimed long ago, never completed); otherwise leaves the row alone and returns nothing.
# psycopg's placeholders (api_key_id, key, fingerprint, token, ttl, stale): it runs on the
# read pool, see the module's docstring.
_CLAIM = """
    INSERT INTO idempotency_keys AS k
        (api_key_id, key, fingerprint, lock_token, locked_at, created_at, expires_at)
    VALUES (%s, %s, %s, %s, now(), now(), now() + make_interval(secs => %s))
    ON CONFLICT (api_key_id, key) DO UPDATE SET
        fingerprint = excluded.fingerprint,
        lock_token = excluded.lock_token,
        locked_at = excluded.locked_at,
        created_at = excluded.created_at,
        expires_at = excluded.expires_at,
        response_status = NULL,
        response_headers = NULL,
        response_body = NULL,
        order_id = NULL,
        completed_at = NULL
    WHERE k.expires_at <= now()
       OR (k.completed_at IS NULL AND k.locked_at <= now() - make_interval(secs => %s))
    RETURNING k.lock_token
"""
# The key's record, when the claim found it held.
_HELD = """
    SELECT fingerprint, response_status, response_headers, response_body
    FROM idempotency_keys WHERE api_key_id = %s AND key = %s
"""


class IdempotencyStore:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        reads: ReadPool,
        *,
        ttl_s: int,
        lock_timeout_s: float,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.reads = reads
        self.ttl_s = ttl_s
        self.lock_timeout_s = lock_timeout_s

    async def claim(self, *, api_key_id: int, key: str, fingerprint: str) -> ClaimOutcome:
        token = uuid.uuid4()
        params = (api_key_id, key, fingerprint, token, self.ttl_s, self.lock_timeout_s)
        # A record released between our INSERT and SELECT is simply claimed again.
        for _ in range(3):
            if await self.reads.rows(_CLAIM, params):
                return Claimed(api_key_id=api_key_id, key=key, token=token)
            held = await self.reads.rows(_HELD, (api_key_id, key))
            if not held:
                continue
            record = held[0]
            if record["fingerprint"] != fingerprint:
                return Mismatch()
            if record["response_status"] is None:
                return InFlight()
            return Replay(
                StoredResponse(
                    status=record["response_status"],
                    headers=record["response_headers"] or {},
                    body=record["response_body"] or b"",
                )
            )
        return InFlight()

    async def release(self, claim: Claimed) -> None:
        """Give the key back after a failure, so the client's retry runs afresh."""
        async with self.sessionmaker.begin() as session:
            await session.execute(_RELEASE, claim.params())

    async def purge_expired(self, *, batch: int = PURGE_BATCH) -> int:
        """Delete the expired keys, `batch` at a time, each batch its own short transaction
        (a backlog of a million keys never becomes one huge delete holding its locks)."""
        purged = 0
        while (deleted := await self._purge_batch(batch)) > 0:
            purged += deleted
            if deleted < batch:
                break
        return purged

    async def _purge_batch(self, batch: int) -> int:
        expired = (
            select(IdempotencyRecord.api_key_id, IdempotencyRecord.key)
            .where(IdempotencyRecord.expires_at <= func.now())
            .order_by(IdempotencyRecord.expires_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        async with self.sessionmaker.begin() as session:
            result = await session.execute(
                delete(IdempotencyRecord)
                .where(tuple_(IdempotencyRecord.api_key_id, IdempotencyRecord.key).in_(expired))
                .returning(IdempotencyRecord.key)
            )
            return len(result.all())


async def complete(
    session: AsyncSession, claim: Claimed, *, response: StoredResponse, order_id: int | None = None
) -> bool:
    """Store the response in the caller's transaction; False when the claim was lost."""
    result = await session.execute(
        _COMPLETE,
        {
            **claim.params(),
            "status": response.status,
            "headers": response.headers,
            "body": response.body,
            "order_id": order_id,
        },
    )
    return result.scalar_one_or_none() is not None


@dataclass(frozen=True)
class Answer:
    response: StoredResponse
    replayed: bool


async def respond_once(
    store: IdempotencyStore | None,
    session: AsyncSession,
    *,
    api_key_id: int,
    key: str | None,
    fingerprint: str,
    respond: Callable[[Claimed | None], Awaitable[StoredResponse]],
    count: Callable[[str], object],
) -> Answer:
    """Answer a request once per key: a retry with the same key gets the first response.

    `respond` does the work in `session` and stores its response with `complete` when
    given a claim. The session is committed here, not after the handler, so that a
    failed commit still gives the key back and the client's retry runs at once
    (`release` leaves a claim whose commit did land alone). `count` hears what became
    of a repeat: `replayed`, `idempotency_key_reused` or `idempotency_key_in_flight`.
    """
    if key is None or store is None:
        return Answer(await respond(None), replayed=False)
    outcome = await store.claim(api_key_id=api_key_id, key=key, fingerprint=fingerprint)
    if isinstance(outcome, Replay):
        count("replayed")
        return Answer(outcome.response, replayed=True)
    if isinstance(outcome, Mismatch):
        count("idempotency_key_reused")
        raise IdempotencyKeyReused()
    if isinstance(outcome, InFlight):
        count("idempotency_key_in_flight")
        raise IdempotencyKeyInFlight()
    try:
        response = await respond(outcome)
        await session.commit()
    except BaseException:
        await store.release(outcome)
        raise
    return Answer(response, replayed=False)


async def purge_forever(store: IdempotencyStore, *, interval_s: float) -> None:
    """Delete expired keys now and then (a claim ignores them anyway; this frees the space)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            if purged := await store.purge_expired():
                logger.info("purged %d expired idempotency keys", purged)
        except Exception:
            logger.exception("purging expired idempotency keys failed")
