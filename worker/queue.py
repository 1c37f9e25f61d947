"""All of the worker's queue SQL: claim, write metrics and progress, finish, requeue."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, bindparam, select, update

from service import metric_store
from service.db import IMMEDIATE
from service.models import Experiment, utcnow


@dataclass
class Claimed:
    id: int
    spec: dict
    sweep_id: int | None = None
    batch_key: str | None = None


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
        .returning(Experiment.id, Experiment.spec, Experiment.sweep_id, Experiment.batch_key)
    )
    with _write(engine) as connection, connection.begin():
        row = connection.execute(claim).first()
    return Claimed(*row) if row else None


def claim_siblings(engine: Engine, worker_id: str, first: Claimed, limit: int) -> list[Claimed]:
    """Claim up to `limit` more queued members of `first`'s sweep that share its batch key,
    so they train together with it."""
    if first.sweep_id is None or first.batch_key is None or limit <= 0:
        return []
    siblings = (
        select(Experiment.id)
        .where(
            Experiment.status == "queued",
            Experiment.sweep_id == first.sweep_id,
            Experiment.batch_key == first.batch_key,
        )
        .order_by(Experiment.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claim = (
        update(Experiment)
        .where(Experiment.id.in_(siblings), Experiment.status == "queued")
        .values(
            status="running",
            worker_id=worker_id,
            started_at=utcnow(),
            attempts=Experiment.attempts + 1,
        )
        .returning(Experiment.id, Experiment.spec, Experiment.sweep_id, Experiment.batch_key)
    )
    with _write(engine) as connection, connection.begin():
        rows = connection.execute(claim).all()
    return sorted((Claimed(*row) for row in rows), key=lambda claimed: claimed.id)


def record_progress(
    engine: Engine, progress: Iterable[tuple[int, metric_store.Points, int]]
) -> set[int]:
    """For each (experiment, metric points, step reached): store the points (idempotent per
    step) and the step, in one transaction. Returns the ids whose cancellation the user asked
    for."""
    progress = list(progress)
    ids = [experiment_id for experiment_id, _points, _step in progress]
    with _write(engine) as connection, connection.begin():
        for experiment_id, points, _step in progress:
            metric_store.write_points(connection, experiment_id, points)
        connection.execute(
            update(Experiment)
            .where(Experiment.id == bindparam("experiment_id"))
            .values(progress_step=bindparam("reached")),
            [{"experiment_id": i, "reached": step} for i, _points, step in progress],
        )
        canceled = select(Experiment.id).where(Experiment.id.in_(ids), Experiment.cancel_requested)
        return set(connection.scalars(canceled).all())


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
