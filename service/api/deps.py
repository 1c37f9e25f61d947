"""Request dependencies: database sessions and id lookup."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from service.db import IMMEDIATE
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


def invalid(location: tuple[str, ...], message: str) -> RequestValidationError:
    """A 422 in FastAPI's own error shape, naming the field at `location`."""
    return RequestValidationError(
        [{"loc": location, "msg": message, "type": "value_error", "input": None}]
    )
