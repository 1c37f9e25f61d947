"""All of the worker's queue SQL: claim, write metrics and progress, finish, requeue."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, select, update

from service import metric_store
from service.db import IMMEDIATE
from service.models import Experiment, utcnow


@dataclass
class Claimed:
    id: int
    spec: dict


def _write(engine: Engine) -> Connection:
    """A connection whose next transaction takes SQLite's write lock at BEGIN."""
    return engine.connect().execution_options(**IMMEDIATE)


def claim_next(engine: Engine, worker_id: str) -> Claimed | None:
    """Atomically move the oldest queued experiment to running for `worker_id`.

    One statement: PostgreSQL locks the chosen row with SKIP LOCKED so racing workers pick
    different rows; SQLite serialises writers at BEGIN IMMEDIATE.
    """
    oldest_queued = (
        select(Experiment.id)
        .where(Experiment.status == "queued")
        .order_by(Experiment.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    claim = (
        update(Experiment)
        .where(Experiment.id == oldest_queued, Experiment.status == "queued")
        .values(
            status="running",
            worker_id=worker_id,
            started_at=utcnow(),
            attempts=Experiment.attempts + 1,
        )
        .returning(Experiment.id, Experiment.spec)
    )
    with _write(engine) as connection, connection.begin():
        row = connection.execute(claim).first()
    return Claimed(id=row.id, spec=row.spec) if row else None


def record_progress(
    engine: Engine, experiment_id: int, points: metric_store.Points, step: int
) -> bool:
    """Store metric points ({name: (steps, values)} arrays or (name, step, value) tuples;
    idempotent per step) and the step reached; True if the user asked to cancel the run."""
    with _write(engine) as connection, connection.begin():
        metric_store.write_points(connection, experiment_id, points)
        connection.execute(
            update(Experiment).where(Experiment.id == experiment_id).values(progress_step=step)
        )
        return bool(
            connection.scalar(
                select(Experiment.cancel_requested).where(Experiment.id == experiment_id)
            )
        )


def finish(
    engine: Engine,
    experiment_id: int,
    status: str,
    *,
    summary: dict | None = None,
    error: str | None = None,
) -> None:
    """Mark a run succeeded, failed or canceled."""
    with _write(engine) as connection, connection.begin():
        connection.execute(
            update(Experiment)
            .where(Experiment.id == experiment_id)
            .values(status=status, summary=summary, error=error, finished_at=utcnow())
        )


def requeue(engine: Engine, experiment_id: int) -> None:
    """Put an interrupted run back in the queue from scratch (its partial metrics go),
    unless its cancellation was asked for meanwhile."""
    running = (Experiment.id == experiment_id, Experiment.status == "running")
    with _write(engine) as connection, connection.begin():
        canceled = connection.execute(
            update(Experiment)
            .where(*running, Experiment.cancel_requested)
            .values(status="canceled", finished_at=utcnow())
        )
        if canceled.rowcount:
            return
        metric_store.delete_points(connection, experiment_id)
        connection.execute(
            update(Experiment)
            .where(*running)
            .values(
                status="queued",
                worker_id=None,
                started_at=None,
                progress_step=0,
                attempts=Experiment.attempts - 1,
            )
        )
