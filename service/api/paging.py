"""The `limit` query parameter of the list reads (GET /experiments, GET /sweeps), held to
DIRCONV_MAX_PAGE_SIZE, and that bound declared in the OpenAPI schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request

from core.settings import get_settings
from service.api.deps import invalid

DEFAULT_PAGE_SIZE = 100
"""Rows a list read returns when `limit` is not given (fewer if DIRCONV_MAX_PAGE_SIZE is)."""
PAGE_PARAMETER = "limit"


def _page_size(
    request: Request,
    limit: Annotated[
        int, Query(ge=1, description="rows per page, at most DIRCONV_MAX_PAGE_SIZE")
    ] = DEFAULT_PAGE_SIZE,
) -> int:
    cap = get_settings().max_page_size
    # The default must not be refused when an operator sets the cap below it: as DEFAULT_STEPS
    # with DIRCONV_MAX_STEPS, an absent `limit` means the smaller of the two.
    if PAGE_PARAMETER not in request.query_params:
        return min(limit, cap)
    if limit > cap:
        message = f"at most {cap:,} rows per page (DIRCONV_MAX_PAGE_SIZE)"
        raise invalid(("query", PAGE_PARAMETER), message)
    return limit


PageSize = Annotated[int, Depends(_page_size)]
"""A list read's `limit`: 1 to DIRCONV_MAX_PAGE_SIZE, a 422 naming `limit` past it."""


def document_page_size(app: FastAPI) -> None:
    """Declare DIRCONV_MAX_PAGE_SIZE as the `maximum` of every `limit` query parameter in the
    OpenAPI schema (read when the schema is first built)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for parameter in _page_parameters(schema):
            parameter.setdefault("schema", {})["maximum"] = get_settings().max_page_size
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _page_parameters(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query" and parameter.get("name") == PAGE_PARAMETER:
                    yield parameter
