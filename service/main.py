"""The FastAPI app factory."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from service.api import api_router
from service.db import make_engine

log = logging.getLogger("dirconv.service")


def create_app(database_url: str | None = None) -> FastAPI:
    """The API bound to `database_url` (default: DATABASE_URL); the schema must be at head."""
    engine = make_engine(database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(title="dirconv", version="0.1.0", lifespan=lifespan)
    app.state.engine = engine
    app.include_router(api_router)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    return app


async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.warning("event=database_unavailable error=%r", str(exc)[:200])
    return JSONResponse(
        status_code=503,
        content={"detail": "database unavailable, retry shortly"},
        headers={"Retry-After": "1"},
    )


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 body, made JSON-safe: an echoed input may hold NaN or infinity."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(status_code=422, content={"detail": _json_safe(exc.errors())})


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return jsonable_encoder(value, custom_encoder={Exception: str})
