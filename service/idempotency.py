"""``Idempotency-Key``: the same key with the same request returns the first answer, once made.

The record is written in the same transaction as the work it protects: a concurrent duplicate
waits on the unique key until the first commits, then reads its answer; if the first fails, its
record rolls back with it and a retry runs afresh. The same key with another body is a 409.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgspec

from service.db.tables import IdempotencyRecord
from service.errors import BillingError, IdempotencyConflict, InvalidInput

MAX_KEY_LENGTH = 200


class IdempotencyKeyRequired(BillingError):
    slug = "idempotency-key-required"
    status = 400
    title = "Idempotency-Key header required"


@dataclass(frozen=True, slots=True)
class Replay:
    status_code: int
    body: Any


def request_hash(body: Any) -> str:
    return hashlib.sha256(msgspec.json.encode(body, order="sorted")).hexdigest()


def check_key(key: str | None) -> str | None:
    if key is not None and (not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable()):
        raise InvalidInput(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters",
            field="Idempotency-Key",
        )
    return key


def require_key(key: str | None) -> str:
    """Requests that make something (a signup) need a key: a client's retry of a request that
    timed out must find the first answer instead of making a second merchant."""
    if key is None:
        raise IdempotencyKeyRequired(
            "send an 'Idempotency-Key' header (a new UUID per signup, the same one on every "
            "retry of it): without it a retried signup would create a second merchant",
            field="Idempotency-Key",
        )
    checked = check_key(key)
    assert checked is not None
    return checked


async def claim(scope: str, key: str, fingerprint: str) -> Replay | None:
    """Claim ``key`` inside the current transaction; a stored answer if it was used before."""
    inserted = await IdempotencyRecord.raw(
        "INSERT INTO idempotency_records (scope, idempotency_key, request_hash, status_code,"
        " response_body) VALUES ({}, {}, {}, 0, 'null'::jsonb)"
        " ON CONFLICT (scope, idempotency_key) DO NOTHING RETURNING id",
        scope,
        key,
        fingerprint,
    )
    if inserted:
        return None
    stored = (
        await IdempotencyRecord.select()
        .where(IdempotencyRecord.scope == scope)
        .where(IdempotencyRecord.idempotency_key == key)
        .first()
        .output(load_json=True)
    )
    assert stored is not None
    if stored["request_hash"] != fingerprint:
        raise IdempotencyConflict(
            "this Idempotency-Key was used with a different request body", field="Idempotency-Key"
        )
    return Replay(status_code=int(stored["status_code"]), body=stored["response_body"])


async def remember(scope: str, key: str, status_code: int, body: Any) -> None:
    await (
        IdempotencyRecord.update(
            {
                IdempotencyRecord.status_code: status_code,
                IdempotencyRecord.response_body: msgspec.json.encode(body).decode(),
            }
        )
        .where(IdempotencyRecord.scope == scope)
        .where(IdempotencyRecord.idempotency_key == key)
    )
