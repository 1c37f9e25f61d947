"""Safe retries of POSTs: a request carrying an `Idempotency-Key` header is answered once; the
same key with the same body, within DIRCONV_IDEMPOTENCY_HOURS, gets that first answer again
and creates nothing; the same key with another body is refused.

The key's row is written in the transaction that creates the resource, so a crash leaves both
or neither. Two requests racing with one key: SQLite serialises them at BEGIN IMMEDIATE; on
PostgreSQL the second insert violates the primary key, and the caller replays the first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, Request
from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.models import IdempotencyKey, db_now
from core.settings import get_settings

KEY_PATTERN = r"^[!-~]{1,200}$"
"""Printable ASCII without spaces, 1 to 200 characters (a UUID fits)."""


class KeyReused(ValueError):
    """The key was used before with a different request body."""


async def _body_digest(request: Request) -> str:
    """SHA-256 of the JSON body in canonical form (key order and spacing do not count)."""
    body = await request.body()
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return hashlib.sha256(body).hexdigest()
    return hashlib.sha256(canonical.encode()).hexdigest()


BodyDigest = Annotated[str, Depends(_body_digest)]
KeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=KEY_PATTERN,
        description="Retry-safe submission: the same key and body within "
        "DIRCONV_IDEMPOTENCY_HOURS return the first answer and create nothing new",
    ),
]


def once(
    session: Session,
    scope: str,
    key: str | None,
    digest: str,
    create: Callable[[], BaseModel],
) -> dict:
    """The answer to a create request: `create()`'s, committed with the key's row, or the
    answer first given to this key. Raises KeyReused if the key came with another body."""
    if key is None:
        answer = create().model_dump(mode="json")
        session.commit()
        return answer
    first = _first_answer(session, scope, key, digest)
    if first is not None:
        return first
    answer = create().model_dump(mode="json")
    session.add(IdempotencyKey(scope=scope, key=key, request_digest=digest, response=answer,
                               created_at=db_now()))  # fmt: skip
    try:
        session.commit()
    except IntegrityError:
        session.rollback()  # a request with the same key committed first: answer as it did
        first = _first_answer(session, scope, key, digest)
        if first is None:
            raise
        return first
    return answer


def _first_answer(session: Session, scope: str, key: str, digest: str) -> dict | None:
    lifetime = get_settings().idempotency_hours * 3600
    expired = delete(IdempotencyKey).where(IdempotencyKey.created_at < db_now(lifetime))
    session.execute(expired.execution_options(synchronize_session=False))
    row = session.scalars(
        select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
    ).first()
    if row is None:
        return None
    if row.request_digest != digest:
        raise KeyReused(
            "this Idempotency-Key was used with a different request body; "
            "use a new key for a new request"
        )
    return row.response
