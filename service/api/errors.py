"""The error bodies the API answers with, for the OpenAPI schema (`responses=`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorMessage(BaseModel):
    """The body of every 4xx but 422, and of 503."""

    detail: str


WHEN = {
    401: "No valid bearer token (when DIRCONV auth is on)",
    403: "The token's role may not do this",
    404: "No such resource",
    409: "The resource is not in a state that allows this",
    413: "Request body over DIRCONV_MAX_BODY_BYTES",
    429: "Too many requests from this token; retry after Retry-After seconds",
    503: "Database unavailable; retry after Retry-After seconds",
}
GUARDED = (401, 403, 429)
"""What auth (issue #11) answers on every route but /healthz."""


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
    response: dict[str, Any] = {"model": ErrorMessage, "description": WHEN[status]}
    if status in (429, 503):
        response["headers"] = RETRY_AFTER
    return response
