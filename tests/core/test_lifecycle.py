"""Every lifecycle function moves runs only along the edges of lifecycle.TRANSITIONS, and every
edge of the table is one some function takes; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, create_engine, delete, insert, select

from core import lifecycle
from core.db import session_scope
from core.lifecycle import TRANSITIONS, Event, Lease
from core.models import Checkpoint, Experiment, Sweep, utcnow
from core.spec import ExperimentSpec
from core.status import FINISHED, Status

WORKER = "w"
BATCH_KEY = "k"
MAX_ATTEMPTS = 3

Drive = Callable[[Engine, int, int], object]
"""Make one event happen to run `run_id` of sweep `sweep_id`."""


def _claim_next(db: Engine, run_id: int, sweep_id: int) -> object:
    return lifecycle.claim_next(db, "claimer")


def _claim_sibling(db: Engine, run_id: int, sweep_id: int) -> object:
    first = lifecycle.Claimed(Lease(0, "claimer", 1), {}, None, 0, sweep_id, BATCH_KEY)
    return lifecycle.claim_siblings(db, "claimer", first, limit=4)


def _cancel(db: Engine, run_id: int, sweep_id: int) -> object:
    with session_scope(db, write=True) as session:
        return lifecycle.request_cancel(session, run_id)


def _finish_as(status: Status) -> Drive:
    return lambda db, run_id, _: lifecycle.finish(db, Lease(run_id, WORKER, 1), status)


def _requeue(db: Engine, run_id: int, sweep_id: int) -> object:
    return lifecycle.requeue(db, Lease(run_id, WORKER, 1))


def _reap(db: Engine, run_id: int, sweep_id: int) -> object:
    return lifecycle.reap(db, lease_seconds=60, max_attempts=MAX_ATTEMPTS)


DRIVERS: dict[Event, list[tuple[dict, Drive]]] = {
    Event.CLAIM: [({}, _claim_next), ({}, _claim_sibling)],
    Event.CANCEL: [({}, _cancel)],
    Event.FINISH: [({}, _finish_as(status)) for status in sorted(FINISHED)],
    Event.REQUEUE: [({}, _requeue), ({"cancel_requested": True}, _requeue)],
    Event.REAP: [
        ({}, _reap),
        ({"cancel_requested": True}, _reap),
        ({"attempts": MAX_ATTEMPTS}, _reap),
    ],
}
"""Per event: the columns of the run before it (besides its status), and how to make it happen.
Runs are held by WORKER in attempt 1, which has no heartbeat row: the reaper takes them."""


def _sweep(db: Engine) -> int:
    with db.begin() as connection:
        row = {"name": "s", "base": {}, "grid": {}}
        return connection.execute(insert(Sweep).returning(Sweep.id), row).scalar_one()


def _run(db: Engine, sweep_id: int, status: Status, columns: dict) -> int:
    row = {
        "name": "run",
        "status": status,
        "spec": {},
        "total_steps": 10,
        "worker_id": WORKER,
        "attempts": 1,
        "sweep_id": sweep_id,
        "batch_key": BATCH_KEY,
        **columns,
    }
    with db.begin() as connection:
        return connection.execute(insert(Experiment).returning(Experiment.id), row).scalar_one()


def _status_then_delete(db: Engine, run_id: int) -> Status:
    with db.begin() as connection:
        status = connection.scalar(select(Experiment.status).where(Experiment.id == run_id))
        connection.execute(delete(Experiment).where(Experiment.id == run_id))
    return Status(status)


@pytest.mark.parametrize("event", list(DRIVERS))
def test_each_transition_moves_runs_only_along_the_table(db, event: Event) -> None:
    sweep_id, move = _sweep(db), TRANSITIONS[event]
    taken = set()
    for columns, drive in DRIVERS[event]:
        for before in Status:
            run_id = _run(db, sweep_id, before, columns)
            drive(db, run_id, sweep_id)
            after = _status_then_delete(db, run_id)
            if before in move.sources:
                assert after in move.targets, (event, columns, before, after)
                taken.add((before, after))
            else:
                assert after == before, (event, columns, before, after)
    assert taken == {(source, target) for source in move.sources for target in move.targets}


def test_create_makes_a_queued_run(db) -> None:
    with session_scope(db, write=True) as session:
        run_id = lifecycle.create_experiment(session, ExperimentSpec()).id
    assert _status_then_delete(db, run_id) in TRANSITIONS[Event.CREATE].targets
    assert not TRANSITIONS[Event.CREATE].sources


def test_every_event_has_a_driver_and_no_event_leaves_a_finished_status() -> None:
    assert set(DRIVERS) | {Event.CREATE} == set(Event) == set(TRANSITIONS)
    assert all(not move.sources & FINISHED for move in TRANSITIONS.values())


def test_a_run_cannot_finish_as_a_status_outside_the_table() -> None:
    with pytest.raises(ValueError, match="cannot finish as 'queued'"):
        lifecycle.finish(create_engine("sqlite://"), Lease(1, WORKER, 1), Status.QUEUED)


def test_finish_many_ends_the_runs_still_held_and_tells_which(db) -> None:
    """One batch: held runs take their own status, summary and error, and lose their
    checkpoints; a run held in another attempt or already finished is left as it was."""
    sweep_id = _sweep(db)
    held, failing, other_attempt, done = (
        _run(db, sweep_id, status, {})
        for status in (Status.RUNNING, Status.RUNNING, Status.RUNNING, Status.SUCCEEDED)
    )
    with db.begin() as connection:
        saved = {"step": 5, "state": b"s", "saved_at": utcnow()}
        rows = [{"experiment_id": i, **saved} for i in (held, other_attempt)]
        connection.execute(insert(Checkpoint), rows)
    endings = [
        lifecycle.Ending(Lease(held, WORKER, 1), Status.SUCCEEDED, {"steps": 10, "rate": None}),
        lifecycle.Ending(Lease(failing, WORKER, 1), Status.FAILED, error="boom"),
        lifecycle.Ending(Lease(other_attempt, WORKER, 2), Status.CANCELED),
        lifecycle.Ending(Lease(done, WORKER, 1), Status.FAILED, error="late"),
    ]
    assert lifecycle.finish_many(db, endings) == [True, True, False, False]
    columns = (Experiment.id, Experiment.status, Experiment.summary, Experiment.error)
    with db.connect() as connection:
        runs = {row[0]: tuple(row[1:]) for row in connection.execute(select(*columns))}
        finished = dict(connection.execute(select(Experiment.id, Experiment.finished_at)).all())
        kept = connection.scalars(select(Checkpoint.experiment_id)).all()
    assert runs == {
        held: ("succeeded", {"steps": 10, "rate": None}, None),
        failing: ("failed", None, "boom"),
        other_attempt: ("running", None, None),
        done: ("succeeded", None, None),
    }
    assert finished[held] is not None and finished[other_attempt] is None
    assert kept == [other_attempt]
