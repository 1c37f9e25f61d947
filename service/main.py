"""The FastAPI app factory."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from itertools import islice
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from core.db import make_engine
from core.settings import get_settings
from service.api import api_router
from service.api.auth import resolve_mode
from service.api.paging import document_page_size
from service.body_limit import BodyLimit
from service.cross_site import CrossSiteGuard, document_refusals
from service.quotas import OverLimit, make_limiter

log = logging.getLogger("dirconv.service")

ECHO_ITEMS = 100
"""Most characters of a string, or items of a list or object, a 422 echoes back."""
ECHO_DEPTH = 4
"""Deepest nesting of an echoed input; below it a value reads "..."."""
MESSAGE_CHARS = 300
"""Longest `msg` in a 422 (some quote the input)."""
MISSING_BODY = "a JSON body is required (send {} to take every default a field has)"
"""The 422 message for a request without the body its endpoint reads."""


def create_app(database_url: str | None = None, listen_host: str | None = None) -> FastAPI:
    """The API bound to `database_url` (default: DATABASE_URL); the schema must be at head.
    `listen_host` is the address it will listen on (None: loopback); with DIRCONV_AUTH unset
    it decides whether tokens are needed."""
    engine = make_engine(database_url)
    settings = get_settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    # /docs is served by service/api/docs.py from local assets; /redoc would load a CDN.
    app = FastAPI(
        title="dirconv", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.engine = engine
    app.state.auth_mode = resolve_mode(listen_host)
    app.state.rate_limiter = make_limiter(settings)
    app.include_router(api_router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )
    app.add_middleware(
        CrossSiteGuard,
        check_host=app.state.auth_mode == "off" or bool(settings.allowed_hosts),
        allowed_hosts=settings.allowed_hosts,
        cors_origins=settings.cors_origins,
    )
    document_refusals(app)
    document_page_size(app)
    app.add_exception_handler(OverLimit, _over_limit)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _unparsable_body)
    return app


async def _over_limit(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OverLimit)
    return JSONResponse(
        status_code=429,
        content={"detail": exc.detail, "limit": exc.limit},
        headers={"Retry-After": str(exc.retry_after)},
    )


async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.warning("event=database_unavailable error=%r", str(exc)[:200])
    return JSONResponse(
        status_code=503,
        content={"detail": "database unavailable, retry shortly"},
        headers={"Retry-After": "1"},
    )


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 body, made JSON-safe (an echoed input may hold NaN, infinity or a lone
    surrogate) and short (only a prefix of the input comes back)."""
    assert isinstance(exc, RequestValidationError)
    errors = [_short_error(error) for error in islice(exc.errors(), ECHO_ITEMS)]
    return JSONResponse(status_code=422, content={"detail": errors})


async def _unparsable_body(request: Request, exc: Exception) -> Response:
    """FastAPI answers 400 to a JSON body it cannot decode (bad UTF-8, nesting too deep for
    the parser); that is invalid JSON like any other, so 422 in the same shape."""
    assert isinstance(exc, HTTPException)
    cause = exc.__cause__
    if exc.status_code != 400 or not isinstance(cause, ValueError | RecursionError):
        return await http_exception_handler(request, exc)
    reason = "nested too deeply" if isinstance(cause, RecursionError) else str(cause)
    error = {"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error", "input": {}}
    error["ctx"] = {"error": _text(reason, ECHO_ITEMS)}
    return JSONResponse(status_code=422, content={"detail": [error]})


def _short_error(error: dict) -> dict:
    short = {
        "type": _text(str(error.get("type", "value_error")), ECHO_ITEMS),
        "loc": [
            item if isinstance(item, int) else _text(str(item), ECHO_ITEMS)
            for item in islice(error.get("loc", ()), ECHO_ITEMS)
        ],  # fmt: skip
        "msg": _text(_message(error), MESSAGE_CHARS),
    }
    for key in ("input", "ctx"):
        if key in error:
            short[key] = _json_safe(error[key])
    return short


def _message(error: dict) -> str:
    if error.get("type") == "missing" and tuple(error.get("loc", ())) == ("body",):
        return MISSING_BODY
    return str(error.get("msg", ""))


def _json_safe(value: Any, depth: int = 0) -> Any:
    if depth > ECHO_DEPTH:
        return "..."
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str | bytes):
        return _text(value, ECHO_ITEMS)
    if isinstance(value, dict):
        items = islice(value.items(), ECHO_ITEMS)
        return {_text(str(key), ECHO_ITEMS): _json_safe(item, depth + 1) for key, item in items}
    if isinstance(value, list | tuple):
        return [_json_safe(item, depth + 1) for item in islice(value, ECHO_ITEMS)]
    return jsonable_encoder(value, custom_encoder={Exception: lambda e: _text(str(e), 200)})


def _text(value: str | bytes, limit: int) -> str:
    """At most `limit` characters of `value` as valid UTF-8 (lone surrogates become '?')."""
    if isinstance(value, bytes):
        return value[:limit].decode("utf-8", "replace")
    return value[:limit].encode("utf-8", "replace").decode("utf-8")
