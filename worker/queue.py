"""The worker's queue SQL that moves no run between statuses: the worker registry and its
heartbeats, and the metric points, progress and checkpoints a run writes under its lease.
Claims, finishing, requeueing and reaping are status changes: they live in core/lifecycle.py,
with the lease invariant they share with these writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, bindparam, delete, insert, select, update

from core import metric_store
from core.db import upsert, write_connection
from core.lifecycle import HOLDS_ANY, Lease, held_values
from core.models import Checkpoint, Experiment, WorkerRow, db_now

RUNNING, CANCEL, LOST = "running", "cancel", "lost"
"""What a progress write tells the worker: go on, stop because the user canceled, or stop
because the lease is gone (another worker owns the run now)."""


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    device: str


def register_worker(engine: Engine, info: WorkerInfo, forget_after_seconds: float) -> None:
    """Add `info` to the registry, and drop rows of workers silent for `forget_after_seconds`
    (their jobs are the reaper's business, which does not need the rows)."""
    with write_connection(engine) as connection, connection.begin():
        connection.execute(
            delete(WorkerRow).where(WorkerRow.last_heartbeat < db_now(forget_after_seconds))
        )
        connection.execute(insert(WorkerRow).values(**_registry_values(info)))


def _registry_values(info: WorkerInfo) -> dict:
    now = db_now()
    return {**vars(info), "started_at": now, "last_heartbeat": now}


def heartbeat(engine: Engine, info: WorkerInfo) -> None:
    """Mark the worker alive now; re-register it if its row was dropped as dead."""
    with write_connection(engine) as connection, connection.begin():
        beat = update(WorkerRow).where(WorkerRow.id == info.id).values(last_heartbeat=db_now())
        if not connection.execute(beat).rowcount:
            connection.execute(insert(WorkerRow).values(**_registry_values(info)))


def unregister_worker(engine: Engine, worker_id: str) -> None:
    with write_connection(engine) as connection, connection.begin():
        connection.execute(delete(WorkerRow).where(WorkerRow.id == worker_id))


@dataclass
class Progress:
    """What one run's flush writes: metric points, the step reached, maybe a checkpoint."""

    lease: Lease
    points: metric_store.Points
    step: int
    checkpoint: bytes | None = None
    """The run's state at `step`, to resume from."""


def record_progress(
    engine: Engine, progress: Iterable[Progress], tails: metric_store.Tails | None = None
) -> dict[int, str]:
    """Store each run's metric points (idempotent per step), step reached and checkpoint, all
    in one transaction. Returns each experiment's verdict: RUNNING, CANCEL (the user asked to
    cancel) or LOST (the lease is gone; nothing was written for it). `tails`, the writer's
    memory of the chunks it wrote last, is forgotten when the transaction fails."""
    items = list(progress)
    try:
        with write_connection(engine) as connection, connection.begin():
            verdicts = _advance(connection, items)
            held = [item for item in items if verdicts[item.lease.experiment_id] != LOST]
            points = [(item.lease.experiment_id, item.points) for item in held]
            metric_store.write_many(connection, points, tails)
            for item in held:
                _save_checkpoint(connection, item)
    except BaseException:
        if tails is not None:
            tails.clear()
        raise
    return verdicts


def check_leases(engine: Engine, leases: list[Lease]) -> dict[int, str]:
    """Each lease's verdict, RUNNING, CANCEL or LOST, read without writing anything."""
    if not leases:
        return {}
    held = held_values(leases)
    with engine.connect() as connection:
        canceled = {row[0]: row[1] for row in connection.execute(_HELD, {"held": held})}
    return _verdicts(leases, canceled)


_HELD = select(Experiment.id, Experiment.cancel_requested).where(*HOLDS_ANY)
"""The runs among `held` still held, with whether a cancel was asked for."""

_ADVANCE = (
    update(Experiment)
    .where(*HOLDS_ANY)
    .values(progress_step=bindparam("step"))
    .returning(Experiment.id, Experiment.cancel_requested)
)
"""Record the step that runs reached if their leases hold; built once (a group writes
hundreds, most at one step)."""


def _advance(connection: Connection, items: list[Progress]) -> dict[int, str]:
    """Each item's verdict, its step recorded if its lease holds: one statement per step."""
    by_step: dict[int, list[Lease]] = {}
    for item in items:
        by_step.setdefault(item.step, []).append(item.lease)
    # The lease check comes first: on PostgreSQL it locks the rows against the reaper.
    canceled = {}
    for step, leases in by_step.items():
        rows = connection.execute(_ADVANCE, {"held": held_values(leases), "step": step})
        canceled.update({row[0]: row[1] for row in rows})
    return _verdicts([item.lease for item in items], canceled)


def _verdicts(leases: list[Lease], canceled: dict[int, bool]) -> dict[int, str]:
    """RUNNING, CANCEL or LOST for each lease, from {held experiment: cancel requested}."""
    return {
        lease.experiment_id: LOST
        if lease.experiment_id not in canceled
        else (CANCEL if canceled[lease.experiment_id] else RUNNING)
        for lease in leases
    }


def _save_checkpoint(connection: Connection, item: Progress) -> None:
    if item.checkpoint is None:
        return
    row = {
        "experiment_id": item.lease.experiment_id,
        "step": item.step,
        "state": item.checkpoint,
        "saved_at": db_now(),
    }
    upsert(connection, Checkpoint, row, ["experiment_id"], ["step", "state", "saved_at"])
