"""Queries the API makes about experiments (metrics live in core/metric_store/; creating and
canceling runs, like every status change, in core/lifecycle.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from core.models import Experiment, ExperimentTag, WorkerRow, db_now, utcnow
from core.status import Status
from service.schemas import ExperimentRead, Progress, WorkerRead


@dataclass
class RunQuery:
    """What `GET /experiments` filters and sorts by."""

    status: str | None = None
    tag: str | None = None
    owner: str | None = None
    sweep_id: int | None = None
    archived: bool = False
    """Whether archived runs are listed too (they are hidden otherwise)."""
    conditions: list[ColumnElement[bool]] = field(default_factory=list)
    order: list[Any] = field(default_factory=list)


def list_experiments(
    session: Session, wanted: RunQuery, *, limit: int, offset: int
) -> tuple[Sequence[Experiment], int]:
    """A page of experiments in `wanted.order` (default newest first), and the total count
    matching the filters."""
    query = select(Experiment).where(*wanted.conditions)
    if not wanted.archived:
        query = query.where(Experiment.archived.is_(False))
    if wanted.owner is not None:
        query = query.where(Experiment.owner == wanted.owner)
    if wanted.status is not None:
        query = query.where(Experiment.status == wanted.status)
    if wanted.tag is not None:
        tagged = select(ExperimentTag.experiment_id).where(ExperimentTag.tag == wanted.tag)
        query = query.where(Experiment.id.in_(tagged))
    if wanted.sweep_id is not None:
        query = query.where(Experiment.sweep_id == wanted.sweep_id)
    count = session.scalar(select(func.count()).select_from(query.subquery()))
    page = query.order_by(*(wanted.order or [Experiment.created_at.desc(), Experiment.id.desc()]))
    rows = session.scalars(page.limit(limit).offset(offset)).all()
    return rows, count or 0


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
        duration_seconds=duration_seconds(experiment),
        archived=experiment.archived,
        notes=experiment.notes,
        sweep_id=experiment.sweep_id,
        owner=experiment.owner,
    )


def duration_seconds(experiment: Experiment) -> float | None:
    """From start to finish, or to now while the run has not finished; None before a start."""
    if experiment.started_at is None:
        return None
    end = experiment.finished_at or utcnow()
    return max((end - experiment.started_at).total_seconds(), 0.0)


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
