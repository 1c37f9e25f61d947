"""The error bodies the API answers with, for the OpenAPI schema (`responses=`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorMessage(BaseModel):
    """The body of every 4xx but 422, and of 503."""

    detail: str


WHEN = {
    404: "No such resource",
    409: "The resource is not in a state that allows this",
    413: "Request body over DIRCONV_MAX_BODY_BYTES",
    503: "Database unavailable; retry after Retry-After seconds",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for these statuses (422 FastAPI documents by itself)."""
    return {status: {"model": ErrorMessage, "description": WHEN[status]} for status in statuses}
