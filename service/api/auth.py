"""Who is asking and what they may do.

`DIRCONV_AUTH=tokens`: every route under the protected router needs `Authorization: Bearer
<token>` (401 with `WWW-Authenticate: Bearer` otherwise); GET needs `reader`, anything else
`member`, and the token routes `admin`. Changing a run or sweep also needs `may_change`:
members change their own, admins everyone's. `off`: one anonymous admin, no owners.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.models import Token
from core.settings import get_settings
from service import quotas, tokens
from service.api.deps import brief_read
from service.tokens import RANK, Role

log = logging.getLogger("dirconv.auth")

AuthMode = Literal["tokens", "off"]
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
CHALLENGE = {"WWW-Authenticate": "Bearer"}
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BEARER_SCHEME = HTTPBearer(
    auto_error=False, description="A token from `python -m service tokens create` or POST /tokens"
)
"""Declares the scheme in the OpenAPI schema; the header is read (and refused) below."""
DeclaredBearer = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER_SCHEME)]


@dataclass(frozen=True)
class Principal:
    user: str | None
    """None with auth off (runs then have no owner)."""
    role: Role


ANONYMOUS = Principal(user=None, role=Role.ADMIN)


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or address, IPv6 with or without brackets) is this machine."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def resolve_mode(listen_host: str | None) -> AuthMode:
    """DIRCONV_AUTH, or by default `tokens` unless the API listens on loopback only."""
    configured = get_settings().auth
    loopback = listen_host is None or is_loopback(listen_host)
    if configured is None:
        return "off" if loopback else "tokens"
    if configured == "off" and not loopback:
        log.warning(
            "event=auth_off_on_network host=%s: DIRCONV_AUTH=off on a non-loopback address; "
            "anyone who can reach it can queue, cancel and read every run",
            listen_host,
        )
    return configured


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(status_code=401, detail=reason, headers=CHALLENGE)


def _bearer_secret(request: Request) -> str:
    header = request.headers.get("authorization")
    if header is None:
        raise _unauthorized("missing bearer token (Authorization: Bearer <token>)")
    scheme, _, secret = header.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or " " in secret:
        raise _unauthorized("malformed Authorization header; expected 'Bearer <token>'")
    return secret


async def current_principal(request: Request, _declared: DeclaredBearer = None) -> Principal:
    """The caller: from its bearer token with auth on (401 if none is usable), else anonymous.
    Also counts the request against the token's rate limit (429 past it). The token lookup
    takes a database slot only while it reads, so that a long response (an event stream)
    holds none."""
    if request.app.state.auth_mode == "off":
        return ANONYMOUS
    secret = _bearer_secret(request)
    token = await brief_read(request, lambda engine: _authenticate(engine, secret))
    quotas.count_request(request.app.state.rate_limiter, str(token.id))
    return Principal(user=token.user, role=Role(token.role))


def _authenticate(engine: Engine, secret: str) -> Token:
    with Session(bind=engine) as session:
        try:
            return tokens.authenticate(session, secret)
        except tokens.TokenRefused as exc:
            raise _unauthorized(str(exc)) from None


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def _forbidden(detail: str) -> HTTPException:
    return HTTPException(status_code=403, detail=detail)


def require_role(principal: Principal, role: Role) -> None:
    if RANK[principal.role] < RANK[role]:
        raise _forbidden(f"this needs the {role.value} role; your token has {principal.role}")


def authorize(request: Request, principal: CurrentPrincipal) -> Principal:
    """Router-wide: reads need `reader`, every other method `member`."""
    require_role(principal, Role.READER if request.method in READ_METHODS else Role.MEMBER)
    return principal


def require_admin(principal: CurrentPrincipal) -> Principal:
    require_role(principal, Role.ADMIN)
    return principal


def may_change(principal: Principal, owner: str | None) -> bool:
    """Whether `principal` may change (cancel, edit, archive, rerun) an object of `owner`:
    admins anything, members what they own, readers nothing."""
    if principal.role == Role.ADMIN:
        return True
    return principal.role == Role.MEMBER and principal.user is not None and owner == principal.user


def check_may_change(principal: Principal, owner: str | None, what: str) -> None:
    """403 (nothing changes) unless `principal` may change `what`, owned by `owner`."""
    if not may_change(principal, owner):
        raise _forbidden(
            f"{what} belongs to {owner or 'nobody'}; only its owner or an admin may change it"
        )
