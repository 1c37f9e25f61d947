"""Request dependencies: database sessions and id lookup."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from service.cost import Overrun
from service.db import IMMEDIATE
from service.idempotency import KeyReused
from service.models import Experiment
from service.store import MAX_ID


def _read_session(request: Request) -> Iterator[Session]:
    with Session(bind=request.app.state.engine) as session:
        yield session


def _write_session(request: Request) -> Iterator[Session]:
    """A session whose transaction takes SQLite's write lock up front; handlers commit."""
    with Session(bind=request.app.state.engine.execution_options(**IMMEDIATE)) as session:
        yield session


ReadSession = Annotated[Session, Depends(_read_session)]
WriteSession = Annotated[Session, Depends(_write_session)]


def get_experiment_or_404(session: Session, experiment_id: int) -> Experiment:
    experiment = None
    if 1 <= experiment_id <= MAX_ID:  # beyond the id column's range PostgreSQL would raise
        experiment = session.get(Experiment, experiment_id)
    if experiment is None:
        raise HTTPException(status_code=404, detail=f"experiment {experiment_id} not found")
    return experiment


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


def invalid(location: tuple[str, ...], message: str) -> RequestValidationError:
    """A 422 in FastAPI's own error shape, naming the field at `location`."""
    return RequestValidationError(
        [{"loc": location, "msg": message, "type": "value_error", "input": None}]
    )
