"""The error bodies the API answers with, for the OpenAPI schema (`responses=`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorMessage(BaseModel):
    """The body of every 4xx but 422, and of 503."""

    detail: str


class LimitMessage(BaseModel):
    """The body of a 429: which limit (its setting's name) and what to do."""

    detail: str
    limit: str


WHEN = {
    400: "Host not allowed (DIRCONV_ALLOWED_HOSTS)",
    401: "Missing, malformed, unknown, revoked or expired bearer token",
    403: "The token's role may not do this, or the Origin is another site's",
    404: "No such resource",
    409: "The resource is not in a state that allows this",
    413: "Request body over DIRCONV_MAX_BODY_BYTES",
    429: "Over a quota or the rate limit; retry after Retry-After seconds",
    503: "Database unavailable; retry after Retry-After seconds",
}

RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer"},
    }
}
"""The header a 429 or 503 comes with."""


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for these statuses (422 FastAPI documents by itself)."""
    return {status: _response(status) for status in statuses}


def _response(status: int) -> dict[str, Any]:
    model = LimitMessage if status == 429 else ErrorMessage
    response: dict[str, Any] = {"model": model, "description": WHEN[status]}
    if status in (429, 503):
        response["headers"] = RETRY_AFTER
    return response
