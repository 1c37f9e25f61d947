"""All of the worker's queue SQL: register and heartbeat, reap, claim, write metrics and
checkpoints, finish, requeue.

A claimed run is held under a lease: (experiment id, worker id, attempt). Every write a worker
makes for the run checks that lease in the same transaction, so a worker that was presumed
dead and comes back (a long pause, a partition) cannot write over the worker that took over.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import (
    Connection,
    Engine,
    String,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.orm import aliased
from sqlalchemy.sql.expression import ColumnElement

from core import metric_store
from core.db import IMMEDIATE, upsert
from core.models import Checkpoint, Claim, Experiment, WorkerRow, db_now, utcnow

RUNNING, CANCEL, LOST = "running", "cancel", "lost"
"""What a progress write tells the worker: go on, stop because the user canceled, or stop
because the lease is gone (another worker owns the run now)."""


@dataclass(frozen=True)
class Lease:
    experiment_id: int
    worker_id: str
    attempt: int


@dataclass
class Claimed:
    lease: Lease
    spec: dict
    resume: bytes | None
    """The checkpoint to resume from, or None to start at step 0."""
    resume_step: int
    sweep_id: int | None = None
    batch_key: str | None = None
    """Queued members of the same sweep with the same batch key can train with this run."""

    @property
    def id(self) -> int:
        return self.lease.experiment_id


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    device: str


def _write(engine: Engine) -> Connection:
    """A connection whose next transaction takes SQLite's write lock at BEGIN."""
    return engine.connect().execution_options(**IMMEDIATE)


def register_worker(engine: Engine, info: WorkerInfo, forget_after_seconds: float) -> None:
    """Add `info` to the registry, and drop rows of workers silent for `forget_after_seconds`
    (their jobs are the reaper's business, which does not need the rows)."""
    with _write(engine) as connection, connection.begin():
        connection.execute(
            delete(WorkerRow).where(WorkerRow.last_heartbeat < db_now(forget_after_seconds))
        )
        connection.execute(insert(WorkerRow).values(**_registry_values(info)))


def _registry_values(info: WorkerInfo) -> dict:
    now = db_now()
    return {**vars(info), "started_at": now, "last_heartbeat": now}


def heartbeat(engine: Engine, info: WorkerInfo) -> None:
    """Mark the worker alive now; re-register it if its row was dropped as dead."""
    with _write(engine) as connection, connection.begin():
        beat = update(WorkerRow).where(WorkerRow.id == info.id).values(last_heartbeat=db_now())
        if not connection.execute(beat).rowcount:
            connection.execute(insert(WorkerRow).values(**_registry_values(info)))


def unregister_worker(engine: Engine, worker_id: str) -> None:
    with _write(engine) as connection, connection.begin():
        connection.execute(delete(WorkerRow).where(WorkerRow.id == worker_id))


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
        select(stale.id).where(stale.status == "running", ~alive).with_for_update(skip_locked=True)
    )
    canceled = Experiment.cancel_requested.is_(True)
    gave_up = Experiment.attempts >= max_attempts
    why = (
        literal(f"gave up after {max_attempts} attempts (DIRCONV_MAX_ATTEMPTS): the run killed ")
        + literal(f"its worker {max_attempts} times; each time the worker sent no heartbeat ")
        + literal(f"for {lease_seconds:g} s (DIRCONV_LEASE_SECONDS) while running it, as when ")
        + literal("the OS kills a worker that runs out of memory; the run may need more memory ")
        + literal("than a worker has. The last worker was ")
        + func.coalesce(Experiment.worker_id, "unknown")
        + literal(" on attempt ")
        + cast(Experiment.attempts, String)
    )
    hand_back = (
        update(Experiment)
        .where(Experiment.id.in_(orphans), Experiment.status == "running")
        .values(
            status=case((canceled, "canceled"), (gave_up, "failed"), else_="queued"),
            error=case((canceled, Experiment.error), (gave_up, why), else_=Experiment.error),
            finished_at=case((canceled, db_now()), (gave_up, db_now()), else_=None),
            worker_id=None,
        )
        .execution_options(synchronize_session=False)
    )
    with _write(engine) as connection, connection.begin():
        return connection.execute(hand_back).rowcount


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
        .where(Experiment.status == "queued")
        .order_by(Experiment.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    claim = (
        update(Experiment)
        .where(Experiment.id == oldest_queued, Experiment.status == "queued")
        .values(**_claimed_by(worker_id))
        .returning(*CLAIMED_COLUMNS)
    )
    with _write(engine) as connection, connection.begin():
        row = connection.execute(claim).first()
        return None if row is None else _resume(connection, worker_id, row)


CLAIMED_COLUMNS = (
    Experiment.id,
    Experiment.spec,
    Experiment.attempts,
    Experiment.sweep_id,
    Experiment.batch_key,
)


def _claimed_by(worker_id: str) -> dict:
    """Column values of a run that `worker_id` claims: running, one more attempt used."""
    return {
        "status": "running",
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
            Experiment.status == "queued",
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
        .where(Experiment.id.in_(siblings), Experiment.status == "queued")
        .values(**_claimed_by(worker_id))
        .returning(*CLAIMED_COLUMNS)
    )
    with _write(engine) as connection, connection.begin():
        rows = sorted(connection.execute(claim).all(), key=lambda row: row.id)
        return [_resume(connection, worker_id, row) for row in rows]


def _resume(connection: Connection, worker_id: str, row) -> Claimed:  # noqa: ANN001
    """Log the claim of `row` and load the checkpoint it resumes from."""
    lease = Lease(row.id, worker_id, row.attempts)
    spec = row.spec
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
        spec=spec,
        resume=saved.state if saved else None,
        resume_step=step,
        sweep_id=row.sweep_id,
        batch_key=row.batch_key,
    )


def _holds(lease: Lease) -> tuple[ColumnElement[bool], ...]:
    """The run is still `lease`'s: running, under this worker, in this attempt."""
    return (
        Experiment.id == lease.experiment_id,
        Experiment.worker_id == lease.worker_id,
        Experiment.attempts == lease.attempt,
        Experiment.status == "running",
    )


@dataclass
class Progress:
    """What one run's flush writes: metric points, the step reached, maybe a checkpoint."""

    lease: Lease
    points: metric_store.Points
    step: int
    checkpoint: bytes | None = None
    """The run's state at `step`, to resume from."""


def record_progress(engine: Engine, progress: Iterable[Progress]) -> dict[int, str]:
    """Store each run's metric points (idempotent per step), step reached and checkpoint, all
    in one transaction. Returns each experiment's verdict: RUNNING, CANCEL (the user asked to
    cancel) or LOST (the lease is gone; nothing was written for it)."""
    verdicts = {}
    with _write(engine) as connection, connection.begin():
        for item in progress:
            verdicts[item.lease.experiment_id] = _record(connection, item)
    return verdicts


def _record(connection: Connection, item: Progress) -> str:
    # The lease check comes first: on PostgreSQL it locks the row against the reaper.
    cancel_requested = connection.scalar(
        update(Experiment)
        .where(*_holds(item.lease))
        .values(progress_step=item.step)
        .returning(Experiment.cancel_requested)
    )
    if cancel_requested is None:
        return LOST
    metric_store.write_points(connection, item.lease.experiment_id, item.points)
    if item.checkpoint is not None:
        _save_checkpoint(connection, item.lease.experiment_id, item.step, item.checkpoint)
    return CANCEL if cancel_requested else RUNNING


def _save_checkpoint(connection: Connection, experiment_id: int, step: int, state: bytes) -> None:
    row = {"experiment_id": experiment_id, "step": step, "state": state, "saved_at": db_now()}
    upsert(connection, Checkpoint, row, ["experiment_id"], ["step", "state", "saved_at"])


def finish(
    engine: Engine,
    lease: Lease,
    status: str,
    *,
    summary: dict | None = None,
    error: str | None = None,
) -> bool:
    """Mark a run succeeded, failed or canceled and drop its checkpoint; False if the lease
    was lost (the run is someone else's now and stays as it is)."""
    with _write(engine) as connection, connection.begin():
        ended = connection.execute(
            update(Experiment)
            .where(*_holds(lease))
            .values(status=status, summary=summary, error=error, finished_at=utcnow())
        )
        if not ended.rowcount:
            return False
        connection.execute(
            delete(Checkpoint).where(Checkpoint.experiment_id == lease.experiment_id)
        )
        return True


def requeue(engine: Engine, lease: Lease) -> None:
    """Put an interrupted run back in the queue without using up its attempt; it resumes from
    its checkpoint. A run whose cancellation was asked for meanwhile is canceled instead."""
    with _write(engine) as connection, connection.begin():
        canceled = connection.execute(
            update(Experiment)
            .where(*_holds(lease), Experiment.cancel_requested.is_(True))
            .values(status="canceled", finished_at=utcnow())
        )
        if canceled.rowcount:
            return
        connection.execute(
            update(Experiment)
            .where(*_holds(lease))
            .values(status="queued", worker_id=None, attempts=Experiment.attempts - 1)
        )
