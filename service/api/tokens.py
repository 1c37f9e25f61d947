"""Tokens over HTTP (admins only) and `GET /me` (anyone signed in)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from core.models import Token
from service import tokens
from service.api.auth import CurrentPrincipal, require_admin
from service.api.deps import ReadSession, WriteSession, get_or_404
from service.api.errors import documented
from service.schemas import Me, TokenCreate, TokenCreated, TokenList, TokenRead
from service.tokens import Role

router = APIRouter(prefix="/tokens", tags=["tokens"], dependencies=[Depends(require_admin)])
me_router = APIRouter(tags=["tokens"])


@router.post("", status_code=201, response_model=TokenCreated)
def create_token(session: WriteSession, request: TokenCreate) -> TokenCreated:
    """Create a token; its secret is in this answer and nowhere else."""
    token, secret = tokens.create(session, request.user, Role(request.role), request.expires_days)
    session.commit()
    return TokenCreated(**TokenRead.model_validate(token, from_attributes=True).model_dump(),
                        token=secret)  # fmt: skip


@router.get("", response_model=TokenList)
def list_tokens(session: ReadSession) -> TokenList:
    """List every token (never a secret), oldest first."""
    rows = tokens.list_tokens(session)
    return TokenList(data=[TokenRead.model_validate(r, from_attributes=True) for r in rows],
                     count=len(rows))  # fmt: skip


@router.delete("/{token_id}", status_code=204, responses=documented(404))
def revoke_token(session: WriteSession, token_id: int) -> Response:
    """Revoke a token: requests with it get 401 from now on (revoking twice is no error)."""
    get_or_404(session, Token, token_id)
    tokens.revoke(session, token_id=token_id)
    session.commit()
    return Response(status_code=204)


@me_router.get("/me", response_model=Me)
def read_me(principal: CurrentPrincipal) -> Me:
    """Who this token belongs to and its role (user null with auth off)."""
    return Me(user=principal.user, role=principal.role.value)
