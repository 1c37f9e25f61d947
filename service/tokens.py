"""API tokens: create (the secret is returned once), list, revoke, and look one up by its
secret. Only the SHA-256 of a secret is stored: secrets are 256 random bits, so a fast hash
is enough (no password stretching needed) and a lookup is one indexed query."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.models import Token, utcnow

SECRET_PREFIX = "dirconv_"
"""Marks a dirconv token in logs and secret scanners."""
SECRET_BYTES = 32
USER_PATTERN = r"^[A-Za-z0-9._@+-]{1,100}$"


class Role(StrEnum):
    READER = "reader"
    MEMBER = "member"
    ADMIN = "admin"


RANK = {Role.READER: 0, Role.MEMBER: 1, Role.ADMIN: 2}


class TokenRefused(Exception):
    """The secret names no usable token; the message says why (never the secret)."""


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def create(
    session: Session, user: str, role: Role, expires_days: int | None = None
) -> tuple[Token, str]:
    """Store a new token for `user` (the caller commits); returns it and its secret."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    now = utcnow()
    expires_at = now + timedelta(days=expires_days) if expires_days is not None else None
    token = Token(
        user=user,
        role=Role(role).value,
        secret_hash=secret_hash(secret),
        created_at=now,
        expires_at=expires_at,
    )
    session.add(token)
    session.flush()
    return token, secret


def list_tokens(session: Session) -> Sequence[Token]:
    return session.scalars(select(Token).order_by(Token.id)).all()


def revoke(session: Session, *, token_id: int | None = None, user: str | None = None) -> int:
    """Revoke one token by id, or every token of `user`; returns how many were live."""
    query = update(Token).where(Token.revoked_at.is_(None))
    query = query.where(Token.id == token_id) if token_id is not None else query
    query = query.where(Token.user == user) if user is not None else query
    result = session.execute(query.values(revoked_at=utcnow()))
    return int(result.rowcount)  # type: ignore[attr-defined]


def authenticate(session: Session, secret: str, now: datetime | None = None) -> Token:
    """The live token whose secret this is; raises TokenRefused otherwise."""
    token = session.scalars(select(Token).where(Token.secret_hash == secret_hash(secret))).first()
    if token is None:
        raise TokenRefused("unknown token")
    if token.revoked_at is not None:
        raise TokenRefused("token revoked")
    if token.expires_at is not None and token.expires_at <= (now or utcnow()):
        raise TokenRefused("token expired")
    return token
