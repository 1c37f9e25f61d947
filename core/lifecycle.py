"""Every change of a run's status: the allowed moves in one table (TRANSITIONS), and the
functions that make them (create, claim, cancel, finish, requeue, reap).

A claimed run is held under a lease: (experiment id, worker id, attempt). Every write a worker
makes for the run checks that lease in the same transaction, so a worker that was presumed
dead and comes back (a long pause, a partition) cannot write over the worker that took over.
The lease check is `holds(lease)` (`HOLDS_ANY` for many leases); worker/queue.py uses it for
progress writes too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    Engine,
    String,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.expression import ColumnElement

from core import metric_store
from core.db import write_connection
from core.models import (
    Checkpoint,
    Claim,
    Experiment,
    ExperimentTag,
    MetricChunk,
    WorkerRow,
    db_now,
    utcnow,
)
from core.spec import ExperimentSpec
from core.status import Status


class Event(StrEnum):
    CREATE = "create"
    CLAIM = "claim"
    CANCEL = "cancel"
    FINISH = "finish"
    REQUEUE = "requeue"
    REAP = "reap"


class Move(NamedTuple):
    sources: frozenset[Status]
    """The statuses a run may be in for the event to move it (none: the event makes the run)."""
    targets: frozenset[Status]
    """The statuses the event may leave it in."""


def _move(sources: set[Status], targets: set[Status]) -> Move:
    return Move(frozenset(sources), frozenset(targets))


TRANSITIONS: dict[Event, Move] = {
    Event.CREATE: _move(set(), {Status.QUEUED}),
    Event.CLAIM: _move({Status.QUEUED}, {Status.RUNNING}),
    # A running run is only flagged (cancel_requested): its worker, or the reaper, ends it.
    Event.CANCEL: _move({Status.QUEUED}, {Status.CANCELED}),
    Event.FINISH: _move({Status.RUNNING}, {Status.SUCCEEDED, Status.FAILED, Status.CANCELED}),
    Event.REQUEUE: _move({Status.RUNNING}, {Status.QUEUED, Status.CANCELED}),
    Event.REAP: _move({Status.RUNNING}, {Status.QUEUED, Status.CANCELED, Status.FAILED}),
}


@dataclass(frozen=True)
class Lease:
    experiment_id: int
    worker_id: str
    attempt: int


@dataclass
class Claimed:
    lease: Lease
    spec: dict[str, Any]
    resume: bytes | None
    """The checkpoint to resume from, or None to start at step 0."""
    resume_step: int
    sweep_id: int | None = None
    batch_key: str | None = None
    """Queued members of the same sweep with the same batch key can train with this run."""

    @property
    def id(self) -> int:
        return self.lease.experiment_id


def holds(lease: Lease) -> tuple[ColumnElement[bool], ...]:
    """The run is still `lease`'s: running, under this worker, in this attempt."""
    return (
        Experiment.id == lease.experiment_id,
        Experiment.worker_id == lease.worker_id,
        Experiment.attempts == lease.attempt,
        Experiment.status == Status.RUNNING,
    )


HOLDS_ANY = (
    tuple_(Experiment.id, Experiment.worker_id, Experiment.attempts).in_(
        bindparam("held", expanding=True)
    ),
    Experiment.status == Status.RUNNING,
)
"""`holds` for many leases at once, in a statement built once: its parameter "held" is
`held_values(leases)`."""


def held_values(leases: Iterable[Lease]) -> list[tuple[int, str, int]]:
    """The value of HOLDS_ANY's parameter for `leases`."""
    return [(lease.experiment_id, lease.worker_id, lease.attempt) for lease in leases]


def create_experiment(
    session: Session, spec: ExperimentSpec, owner: str | None = None
) -> Experiment:
    """Store a validated spec as a queued experiment of `owner` (the caller commits)."""
    experiment = Experiment(
        owner=owner,
        name=spec.name or "",
        status=Status.QUEUED,
        spec=spec.model_dump(mode="json"),
        total_steps=spec.steps,
        progress_step=0,
    )
    experiment.tag_rows = [ExperimentTag(position=i, tag=t) for i, t in enumerate(spec.tags)]
    session.add(experiment)
    session.flush()
    if not spec.name:
        experiment.name = f"experiment-{experiment.id}"
    return experiment


def request_cancel(session: Session, experiment_id: int) -> bool:
    """Cancel a queued run now, or flag a running one for its worker. False if already over."""
    return request_cancel_where(session, Experiment.id == experiment_id) > 0


def request_cancel_where(session: Session, which: ColumnElement[bool]) -> int:
    """Cancel the queued runs `which` selects now and flag its running ones for their
    workers, in two statements; how many of them were not over yet."""
    queued = (
        update(Experiment)
        .where(which, Experiment.status == Status.QUEUED)
        .values(status=Status.CANCELED, finished_at=utcnow(), cancel_requested=True)
    )
    running = (
        update(Experiment)
        .where(which, Experiment.status == Status.RUNNING)
        .values(cancel_requested=True)
    )
    connection = session.connection()  # its execute() answers with a rowcount
    return int(connection.execute(queued).rowcount + connection.execute(running).rowcount)


def claim_next(engine: Engine, worker_id: str) -> Claimed | None:
    """Atomically move the oldest queued experiment to running for `worker_id`, log the claim
    and load the checkpoint it resumes from.

    The claim is one statement: PostgreSQL locks the chosen row with SKIP LOCKED so racing
    workers pick different rows; SQLite serialises writers at BEGIN IMMEDIATE. Metrics a
    previous attempt wrote past its last checkpoint are dropped in the same transaction: the
    resumed run writes them again, bit for bit.
    """
    oldest_queued = (
        select(Experiment.id)
        .where(Experiment.status == Status.QUEUED)
        .order_by(Experiment.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    claim = (
        update(Experiment)
        .where(Experiment.id == oldest_queued, Experiment.status == Status.QUEUED)
        .values(**_claimed_by(worker_id))
        .returning(*CLAIMED_COLUMNS)
    )
    with write_connection(engine) as connection, connection.begin():
        row = connection.execute(claim).first()
        return None if row is None else _resume(connection, worker_id, row)


CLAIMED_COLUMNS = (
    Experiment.id,
    Experiment.spec,
    Experiment.attempts,
    Experiment.sweep_id,
    Experiment.batch_key,
)


def _claimed_by(worker_id: str) -> dict[str, Any]:
    """Column values of a run that `worker_id` claims: running, one more attempt used."""
    return {
        "status": Status.RUNNING,
        "worker_id": worker_id,
        "started_at": func.coalesce(Experiment.started_at, utcnow()),
        "attempts": Experiment.attempts + 1,
    }


def claim_siblings(engine: Engine, worker_id: str, first: Claimed, limit: int) -> list[Claimed]:
    """Claim up to `limit` more queued members of `first`'s sweep that share its batch key
    and, like it, start from step 0, so that all of them train together as one group."""
    if first.sweep_id is None or first.batch_key is None or first.resume_step or limit <= 0:
        return []
    checkpointed = select(Checkpoint.experiment_id).where(Checkpoint.experiment_id == Experiment.id)
    siblings = (
        select(Experiment.id)
        .where(
            Experiment.status == Status.QUEUED,
            Experiment.sweep_id == first.sweep_id,
            Experiment.batch_key == first.batch_key,
            ~checkpointed.exists(),
        )
        .order_by(Experiment.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claim = (
        update(Experiment)
        .where(Experiment.id.in_(siblings), Experiment.status == Status.QUEUED)
        .values(**_claimed_by(worker_id))
        .returning(*CLAIMED_COLUMNS)
    )
    with write_connection(engine) as connection, connection.begin():
        rows = sorted(connection.execute(claim).all(), key=lambda row: row.id)
        return _start_afresh(connection, worker_id, rows) if rows else []


def _start_afresh(connection: Connection, worker_id: str, rows: list[Any]) -> list[Claimed]:
    """`_resume` for claimed runs without a checkpoint, in three statements for all of them:
    they start at step 0, so any points an earlier attempt wrote go."""
    ids = [row.id for row in rows]
    connection.execute(delete(MetricChunk).where(MetricChunk.experiment_id.in_(ids)))
    connection.execute(update(Experiment).where(Experiment.id.in_(ids)).values(progress_step=0))
    claims = [
        {"experiment_id": row.id, "worker_id": worker_id, "attempt": row.attempts} for row in rows
    ]
    connection.execute(insert(Claim).values(resumed_from_step=0, claimed_at=db_now()), claims)
    return [
        Claimed(Lease(row.id, worker_id, row.attempts), row.spec, None, 0, row.sweep_id,
                row.batch_key)
        for row in rows
    ]  # fmt: skip


def _resume(connection: Connection, worker_id: str, row: Any) -> Claimed:
    """Log the claim of `row` and load the checkpoint it resumes from."""
    lease = Lease(row.id, worker_id, row.attempts)
    saved = connection.execute(
        select(Checkpoint).where(Checkpoint.experiment_id == lease.experiment_id)
    ).first()
    step = saved.step if saved else 0
    metric_store.delete_points_from(connection, lease.experiment_id, step)
    connection.execute(
        update(Experiment).where(Experiment.id == lease.experiment_id).values(progress_step=step)
    )
    connection.execute(
        insert(Claim).values(
            experiment_id=lease.experiment_id,
            worker_id=lease.worker_id,
            attempt=lease.attempt,
            resumed_from_step=step,
            claimed_at=db_now(),
        )
    )
    return Claimed(
        lease=lease,
        spec=row.spec,
        resume=saved.state if saved else None,
        resume_step=step,
        sweep_id=row.sweep_id,
        batch_key=row.batch_key,
    )


def finish(
    engine: Engine,
    lease: Lease,
    status: Status,
    *,
    summary: dict[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    """Mark a run succeeded, failed or canceled and drop its checkpoint; False if the lease
    was lost (the run is someone else's now and stays as it is)."""
    return finish_many(engine, [Ending(lease, status, summary, error)])[0]


@dataclass(frozen=True)
class Ending:
    """How one run ended, for `finish_many`."""

    lease: Lease
    status: Status
    summary: dict[str, Any] | None = None
    error: str | None = None


def finish_many(engine: Engine, endings: list[Ending]) -> list[bool]:
    """`finish` for several runs in one transaction (a group's members that end together)."""
    for ending in endings:
        if ending.status not in TRANSITIONS[Event.FINISH].targets:
            raise ValueError(f"a run cannot finish as {str(ending.status)!r}")
    leases = held_values(ending.lease for ending in endings)
    with write_connection(engine) as connection, connection.begin():
        # Read under lock (PostgreSQL: FOR UPDATE; SQLite: the write lock), then one batch.
        held = set(connection.scalars(_HELD_FOR_UPDATE, {"held": leases}))
        mine = [ending for ending in endings if ending.lease.experiment_id in held]
        if mine:
            connection.execute(_FINISH, [_finished_row(ending) for ending in mine])
            done = sorted(held)
            connection.execute(delete(Checkpoint).where(Checkpoint.experiment_id.in_(done)))
    return [ending.lease.experiment_id in held for ending in endings]


_HELD_FOR_UPDATE = select(Experiment.id).where(*HOLDS_ANY).with_for_update()

_FINISH = (
    update(Experiment)
    .where(Experiment.id == bindparam("finished_id"), Experiment.status == Status.RUNNING)
    .values(
        status=bindparam("new_status"),
        summary=bindparam("new_summary", type_=Experiment.__table__.c.summary.type),
        error=bindparam("new_error"),
        finished_at=bindparam("new_finished_at", type_=Experiment.__table__.c.finished_at.type),
    )
)
"""Finish one held run (`finish_many` sends a batch of them); built once."""


def _finished_row(ending: Ending) -> dict[str, Any]:
    return {
        "finished_id": ending.lease.experiment_id,
        "new_status": ending.status.value,
        "new_summary": ending.summary,
        "new_error": ending.error,
        "new_finished_at": utcnow(),
    }


def requeue(engine: Engine, lease: Lease) -> None:
    """Put an interrupted run back in the queue without using up its attempt; it resumes from
    its checkpoint. A run whose cancellation was asked for meanwhile is canceled instead."""
    with write_connection(engine) as connection, connection.begin():
        canceled = connection.execute(
            update(Experiment)
            .where(*holds(lease), Experiment.cancel_requested.is_(True))
            .values(status=Status.CANCELED, finished_at=utcnow())
        )
        if canceled.rowcount:
            return
        connection.execute(
            update(Experiment)
            .where(*holds(lease))
            .values(status=Status.QUEUED, worker_id=None, attempts=Experiment.attempts - 1)
        )


def reap(engine: Engine, lease_seconds: float, max_attempts: int) -> int:
    """Hand back the running jobs of workers silent for `lease_seconds`, in one statement:
    to the queue, or to `canceled` if that was asked for, or to `failed` once they have used
    `max_attempts` claims. Returns how many jobs it moved.

    Any number of workers may reap at once: rows another transaction holds are skipped
    (PostgreSQL) or the write lock serialises the reapers (SQLite).
    """
    stale = aliased(Experiment)
    alive = (
        select(WorkerRow.id)
        .where(WorkerRow.id == stale.worker_id, WorkerRow.last_heartbeat >= db_now(lease_seconds))
        .exists()
    )
    orphans = (
        select(stale.id)
        .where(stale.status == Status.RUNNING, ~alive)
        .with_for_update(skip_locked=True)
    )
    canceled = Experiment.cancel_requested.is_(True)
    gave_up = Experiment.attempts >= max_attempts
    hand_back = (
        update(Experiment)
        .where(Experiment.id.in_(orphans), Experiment.status == Status.RUNNING)
        .values(
            status=case(
                (canceled, Status.CANCELED.value),
                (gave_up, Status.FAILED.value),
                else_=Status.QUEUED.value,
            ),
            error=case(
                (canceled, Experiment.error),
                (gave_up, _gave_up_message(lease_seconds, max_attempts)),
                else_=Experiment.error,
            ),
            finished_at=case((canceled, db_now()), (gave_up, db_now()), else_=None),
            worker_id=None,
        )
        .execution_options(synchronize_session=False)
    )
    with write_connection(engine) as connection, connection.begin():
        return connection.execute(hand_back).rowcount


def _gave_up_message(lease_seconds: float, max_attempts: int) -> ColumnElement[str]:
    """Why the reaper failed a run, as SQL: it names the run's last worker and attempt."""
    return (
        literal(f"gave up after {max_attempts} attempts (DIRCONV_MAX_ATTEMPTS): the run killed ")
        + literal(f"its worker {max_attempts} times; each time the worker sent no heartbeat ")
        + literal(f"for {lease_seconds:g} s (DIRCONV_LEASE_SECONDS) while running it, as when ")
        + literal("the OS kills a worker that runs out of memory; the run may need more memory ")
        + literal("than a worker has. The last worker was ")
        + func.coalesce(Experiment.worker_id, "unknown")
        + literal(" on attempt ")
        + cast(Experiment.attempts, String)
    )


def archive(session: Session, experiment: Experiment) -> None:
    """Hide a run from lists; a queued run is canceled and a running one asked to stop
    first (the caller commits)."""
    request_cancel(session, experiment.id)
    experiment.archived = True


def restore(experiment: Experiment) -> None:
    """Bring an archived run back into lists (the caller commits)."""
    experiment.archived = False


def retag(session: Session, experiment: Experiment, tags: list[str]) -> None:
    """Replace a run's tags (the caller commits)."""
    experiment.tag_rows = []
    session.flush()  # the old rows go before new ones take their positions
    experiment.tag_rows = [ExperimentTag(position=i, tag=t) for i, t in enumerate(tags)]
