"""Queries the API makes about experiments (metrics live in core/metric_store/; creating and
canceling runs, like every status change, in core/lifecycle.py)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Experiment, ExperimentTag, WorkerRow, db_now, key_range
from core.status import Status
from service.schemas import ExperimentRead, Progress, WorkerRead


def list_experiments(
    session: Session,
    *,
    status: str | None,
    tag: str | None,
    limit: int,
    offset: int,
    owner: str | None = None,
) -> tuple[Sequence[Experiment], int]:
    """A page of experiments, newest first, and the total count matching the filters."""
    query = select(Experiment)
    if owner is not None:
        query = query.where(Experiment.owner == owner)
    if status is not None:
        query = query.where(Experiment.status == status)
    if tag is not None:
        tagged = select(ExperimentTag.experiment_id).where(ExperimentTag.tag == tag)
        query = query.where(Experiment.id.in_(tagged))
    count = session.scalar(select(func.count()).select_from(query.subquery()))
    page = query.order_by(Experiment.created_at.desc(), Experiment.id.desc())
    rows = session.scalars(page.limit(limit).offset(offset)).all()
    return rows, count or 0


def existing_ids(session: Session, experiment_ids: Sequence[int]) -> set[int]:
    """Those of `experiment_ids` that name an experiment."""
    storable = [i for i in experiment_ids if i in key_range(Experiment)]
    query = select(Experiment.id).where(Experiment.id.in_(storable))
    return set(session.scalars(query))


def to_read(experiment: Experiment) -> ExperimentRead:
    return ExperimentRead(
        id=experiment.id,
        name=experiment.name,
        tags=experiment.tags,
        status=experiment.status,
        spec=experiment.spec,
        progress=Progress(step=experiment.progress_step, total_steps=experiment.total_steps),
        created_at=experiment.created_at,
        started_at=experiment.started_at,
        finished_at=experiment.finished_at,
        error=experiment.error,
        summary=experiment.summary,
        attempts=experiment.attempts,
        owner=experiment.owner,
    )


WORKER_FIELDS = ("id", "host", "pid", "device", "started_at", "last_heartbeat")


def list_live_workers(session: Session, lease_seconds: float) -> list[WorkerRead]:
    """Workers heard from within `lease_seconds`, oldest first, with the run each one holds."""
    current = (
        select(Experiment.id)
        .where(Experiment.worker_id == WorkerRow.id, Experiment.status == Status.RUNNING)
        .limit(1)
        .scalar_subquery()
    )
    rows = session.execute(
        select(WorkerRow, current.label("experiment_id"))
        .where(WorkerRow.last_heartbeat >= db_now(lease_seconds))
        .order_by(WorkerRow.started_at, WorkerRow.id)
    ).all()
    return [
        WorkerRead.model_validate(
            {**{key: getattr(row, key) for key in WORKER_FIELDS}, "experiment_id": experiment_id}
        )
        for row, experiment_id in rows
    ]
