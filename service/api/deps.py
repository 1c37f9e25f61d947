"""Request dependencies: database sessions and id lookup."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, Header, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Engine, event
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from core import metric_store
from core.cost import Overrun
from core.db import IMMEDIATE
from core.models import Base, key_range
from core.settings import get_settings
from core.spec import METRIC_NAMES
from service import exports
from service.idempotency import KeyReused

RETRY_AFTER_SECONDS = "1"
Row = TypeVar("Row", bound=Base)
T = TypeVar("T")


def busy(what: str) -> HTTPException:
    """A 503 with Retry-After: the database is busy (`what` says how)."""
    return HTTPException(
        status_code=503,
        detail=f"database busy ({what}), retry shortly",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


async def _database_turn(request: Request) -> AsyncIterator[None]:
    """Admit at most DIRCONV_DB_CONCURRENCY requests to the database at once; the rest wait
    here, in the event loop and without a thread, for up to DIRCONV_DB_WAIT_SECONDS."""
    async with brief_turn(request) as admitted:
        if not admitted:
            raise busy("no free slot")
        yield


async def brief_read(request: Request, read: Callable[[Engine], T]) -> T:
    """`read(engine)` in a worker thread during a turn at the database; 503 if none came."""
    async with brief_turn(request) as admitted:
        if not admitted:
            raise busy("no free slot")
        return await anyio.to_thread.run_sync(read, request.app.state.engine)


@asynccontextmanager
async def brief_turn(request: Request) -> AsyncIterator[bool]:
    """A turn at the database (one of DIRCONV_DB_CONCURRENCY): True once admitted, False if
    no slot came free within DIRCONV_DB_WAIT_SECONDS. A long-lived response (an event
    stream) takes one for each short read, so that it holds none between reads."""
    gate = _gate(request)
    admitted = False
    with anyio.move_on_after(get_settings().db_wait_seconds):
        await gate.acquire()
        admitted = True
    try:
        yield admitted
    finally:
        if admitted:
            gate.release()


def _gate(request: Request) -> anyio.Semaphore:
    state = request.app.state
    if getattr(state, "database_gate", None) is None:
        state.database_gate = anyio.Semaphore(get_settings().db_concurrency)
    return state.database_gate


def _read_session(request: Request, _turn: DatabaseTurn) -> Iterator[Session]:
    with Session(bind=request.app.state.engine) as session:
        yield from _pool_timeouts_as_busy(session)


def _write_session(request: Request, _turn: DatabaseTurn) -> Iterator[Session]:
    """A session whose first transaction takes SQLite's write lock up front; handlers commit.
    Reads after that commit (a refresh for the response) run without the lock."""
    engine = request.app.state.engine
    immediate = engine.execution_options(**IMMEDIATE)
    with Session(bind=immediate, expire_on_commit=False) as session:
        event.listen(session, "after_commit", lambda done: setattr(done, "bind", engine))
        yield from _pool_timeouts_as_busy(session)


def _pool_timeouts_as_busy(session: Session) -> Iterator[Session]:
    try:
        yield session
    except PoolTimeout as exc:
        raise busy("no free connection") from exc


# "function" scope: the turn and the session end when the handler returns, before the
# response is sent, so slow clients hold neither a connection nor SQLite's write lock.
DatabaseTurn = Annotated[None, Depends(_database_turn, scope="function")]
ReadSession = Annotated[Session, Depends(_read_session, scope="function")]
WriteSession = Annotated[Session, Depends(_write_session, scope="function")]


def get_or_404(session: Session, model: type[Row], ident: int, *, lock: bool = False) -> Row:
    """The `model` row whose primary key is `ident`, or a 404 ("experiment 7 not found") if
    there is none or `ident` lies outside the key column's range; `lock` holds it for update
    until the transaction ends."""
    in_range = ident in key_range(model)
    row = session.get(model, ident, with_for_update=lock) if in_range else None
    if row is None:
        raise HTTPException(status_code=404, detail=f"{model.__name__.lower()} {ident} not found")
    return row


def refuse_overruns(overruns: list[Overrun]) -> None:
    """A 422 naming each body field whose value makes the run cost more than a limit."""
    if overruns:
        raise RequestValidationError(
            [
                {"loc": ("body", o.field), "msg": o.message, "type": "value_error", "input": None}
                for o in overruns
            ]
        )


@contextmanager
def reused_key_refused() -> Iterator[None]:
    """Turn a reused Idempotency-Key into a 422 naming the header."""
    try:
        yield
    except KeyReused as exc:
        raise invalid(("header", "Idempotency-Key"), str(exc)) from None


def check_answer_size(
    session: Session,
    experiment_ids: list[int],
    names: list[str],
    bounds: dict,
    max_points: int | None,
    arrow: bool = False,
) -> None:
    """Refuse (422 naming `max_points`) a JSON answer that would hold more than
    DIRCONV_MAX_READ_POINTS points (an Arrow one, DIRCONV_MAX_ARROW_READ_POINTS), before
    reading any of them."""
    counts = metric_store.count_in_range(session, experiment_ids, names, **bounds)
    total = sum(
        count if max_points is None else min(count, max_points) for count in counts.values()
    )
    settings = get_settings()
    limit = settings.max_arrow_read_points if arrow else settings.max_read_points
    if total > limit:
        setting = "DIRCONV_MAX_ARROW_READ_POINTS" if arrow else "DIRCONV_MAX_READ_POINTS"
        raise invalid(
            ("query", "max_points"),
            f"the answer would hold {total:,} points; at most {limit:,} "
            f"({setting}): pass max_points, narrow start_step/end_step, or "
            "export all points as CSV or Parquet (/experiments/{id}/metrics.csv, .parquet)",
        )


def invalid(location: tuple[str, ...], message: str) -> RequestValidationError:
    """A 422 in FastAPI's own error shape, naming the field at `location`."""
    return RequestValidationError(
        [{"loc": location, "msg": message, "type": "value_error", "input": None}]
    )


def comma_list(text: str) -> list[str]:
    """The comma-separated items of `text`, stripped, blanks and repeats left out, in order."""
    return list(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))


def check_metric_name(name: str) -> None:
    """422 naming the `name` query unless it is a metric's."""
    if name not in METRIC_NAMES:
        raise invalid(("query", "name"), f"unknown metric {name!r}; known: {_known_metrics()}")


def check_step_range(start_step: int | None, end_step: int | None) -> None:
    """422 naming `end_step` if it lies below `start_step`."""
    if start_step is not None and end_step is not None and end_step < start_step:
        raise invalid(("query", "end_step"), "end_step must not be below start_step")


def _known_metrics() -> str:
    return ", ".join(METRIC_NAMES)


def metric_names(names: str | None) -> list[str] | None:
    """The metric names asked for in the `names` query; None means those the run logs."""
    if names is None:
        return None
    chosen = comma_list(names)
    unknown = [n for n in chosen if n not in METRIC_NAMES]
    if unknown or not chosen:
        message = f"unknown metric name(s) {unknown}; known: {_known_metrics()}"
        raise invalid(("query", "names"), message)
    return chosen


AcceptHeader = Annotated[
    str | None,
    Header(description=f"{exports.ARROW_STREAM} for an Arrow IPC stream; JSON otherwise"),
]
ARROW_OR_JSON = {200: {"content": {"application/json": {}, exports.ARROW_STREAM: {}}}}
"""The answers of the reads that also speak Arrow, for the OpenAPI schema."""


def arrow_response(series: list[tuple[int, str, metric_store.SeriesArrays]]) -> Response:
    """An Arrow IPC stream of `series` (experiment id, metric, points), one row per point."""
    return Response(exports.arrow_stream(series), media_type=exports.ARROW_STREAM,
                    headers={"Vary": "Accept"})  # fmt: skip


def json_response(content: dict) -> Response:
    return Response(exports.dumps(content), media_type="application/json",
                    headers={"Vary": "Accept"})  # fmt: skip
