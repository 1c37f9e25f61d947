"""Queue SQL and crash recovery in this process, on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select, update

from core import lifecycle, metric_store
from core.models import Checkpoint, Claim, Experiment, WorkerRow, db_now
from core.settings import Settings
from core.spec import ExperimentSpec
from core.status import Status
from tests.waiting import wait_for
from worker import engine as training
from worker import queue
from worker.loop import Worker

INFO = queue.WorkerInfo(id="host:1:test", host="host", pid=1, device="cpu")


class Crash(BaseException):
    """Stands in for SIGKILL: nothing after it runs, the job stays `running`."""


def _settings(**overrides) -> Settings:
    values = {
        "flush_seconds": 0.01,
        "poll_seconds": 0.01,
        "checkpoint_seconds": 0.0,
        "heartbeat_seconds": 0.01,
        "lease_seconds": 0.2,
        "writer_share": 1.0,  # writes back to back, as the crash counts below assume
    }
    return Settings(**{**values, **overrides})


def _experiment(db, experiment_id: int) -> Experiment:
    with db.connect() as connection:
        return connection.execute(select(Experiment).where(Experiment.id == experiment_id)).one()


def _holder_silent(db, experiment_id: int, seconds: float) -> bool:
    """No heartbeat from the run's worker for `seconds`, on the database's clock (as `reap`
    judges it)."""
    holder = select(Experiment.worker_id).where(Experiment.id == experiment_id).scalar_subquery()
    recent = WorkerRow.last_heartbeat >= db_now(seconds)
    alive = select(func.count()).select_from(WorkerRow).where(WorkerRow.id == holder, recent)
    with db.connect() as connection:
        return connection.scalar(alive) == 0


def _series(db, experiment_id: int, name: str) -> tuple[list[int], list[float]]:
    with db.connect() as connection:
        series = metric_store.read_series(connection, experiment_id, name)
    return series.steps.tolist(), series.values.tolist()


def _record(db, lease: lifecycle.Lease, points, step: int) -> str:
    progress = queue.Progress(lease, points, step)
    return queue.record_progress(db, [progress])[lease.experiment_id]


def _crash_after(worker: Worker, flushes: int) -> None:
    """Make `worker` die, as if killed, on its `flushes`-th metric write."""
    original, count = queue.record_progress, [0]

    def dying(*args, **kwargs):
        count[0] += 1
        if count[0] == flushes:
            raise Crash
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch, pytest.raises(Crash):
        patch.setattr(queue, "record_progress", dying)
        worker.run_one()


def _uninterrupted(spec: dict) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}

    def on_block(block):
        for name, series in block.values.items():
            values.setdefault(name, []).extend(series.tolist())
        return True

    training.run(ExperimentSpec(**spec), on_block)
    return values


def test_crashed_runs_resume_from_their_checkpoint_exactly(client, db):
    spec = {"depth": 3, "steps": 60_000, "log_every": 3, "seed": 7}
    experiment_id = client.post("/experiments", json=spec).json()["id"]
    # The second attempt never checkpoints: the third resumes from the first's checkpoint and
    # must drop the points the second wrote past it.
    for checkpoint_seconds, flushes in ((0.0, 3), (1e9, 3), (0.0, 4)):
        settings = _settings(max_attempts=10, checkpoint_seconds=checkpoint_seconds)
        _crash_after(Worker(db, settings), flushes)
        assert _experiment(db, experiment_id).status == "running"
        wait_for(
            lambda: _holder_silent(db, experiment_id, 0.2), "the crashed worker's lease to lapse"
        )
    assert Worker(db, _settings(max_attempts=10)).run_one()
    experiment = _experiment(db, experiment_id)
    assert experiment.status == "succeeded", experiment.error
    expected = _uninterrupted(spec)
    for name, values in expected.items():
        steps, stored = _series(db, experiment_id, name)
        assert steps == list(range(0, 60_001, 3))
        assert np.array_equal(np.array(stored, dtype=float), np.array(values)), name
    assert experiment.summary["min_directional_error"] == min(expected["directional_error"])
    with db.connect() as connection:
        claims = connection.execute(select(Claim).order_by(Claim.id)).all()
        assert connection.scalar(select(func.count()).select_from(Checkpoint)) == 0
    assert [claim.attempt for claim in claims] == [1, 2, 3, 4]
    resumed = [claim.resumed_from_step for claim in claims]
    assert 0 == resumed[0] < resumed[1] == resumed[2] < resumed[3]


def test_a_run_that_keeps_losing_its_worker_fails_saying_why(client, db):
    experiment_id = client.post("/experiments", json={"steps": 100_000}).json()["id"]
    for _ in range(2):
        _crash_after(Worker(db, _settings(max_attempts=2)), 2)
        wait_for(
            lambda: _holder_silent(db, experiment_id, 0.2), "the crashed worker's lease to lapse"
        )
    assert not Worker(db, _settings(max_attempts=2)).run_one()
    experiment = _experiment(db, experiment_id)
    assert experiment.status == "failed"
    assert "gave up after 2 attempts" in experiment.error
    assert "the run killed its worker 2 times" in experiment.error
    assert "no heartbeat for 0.2 s (DIRCONV_LEASE_SECONDS)" in experiment.error
    assert experiment.finished_at is not None


def test_reaper_spares_workers_that_send_heartbeats(client, db):
    experiment_id = client.post("/experiments", json={}).json()["id"]
    queue.register_worker(db, INFO, forget_after_seconds=60)
    assert lifecycle.claim_next(db, INFO.id).id == experiment_id
    queue.heartbeat(db, INFO)
    assert lifecycle.reap(db, lease_seconds=30, max_attempts=3) == 0
    wait_for(lambda: _holder_silent(db, experiment_id, 0.2), "the worker's lease to lapse")
    assert lifecycle.reap(db, lease_seconds=0.2, max_attempts=3) == 1
    experiment = _experiment(db, experiment_id)
    assert (experiment.status, experiment.worker_id, experiment.attempts) == ("queued", None, 1)


def test_a_canceled_run_whose_worker_died_is_canceled_not_retried(client, db):
    experiment_id = client.post("/experiments", json={}).json()["id"]
    lifecycle.claim_next(db, INFO.id)
    assert client.post(f"/experiments/{experiment_id}/cancel").status_code == 202
    assert lifecycle.reap(db, lease_seconds=0.0, max_attempts=3) == 1
    assert _experiment(db, experiment_id).status == "canceled"


def test_a_worker_that_lost_its_lease_writes_nothing(client, db):
    experiment_id = client.post("/experiments", json={}).json()["id"]
    stale = lifecycle.claim_next(db, "old-worker")
    lifecycle.reap(db, lease_seconds=0.0, max_attempts=3)
    fresh = lifecycle.claim_next(db, "new-worker")
    assert fresh.lease.attempt == 2
    assert _record(db, stale.lease, [("norm", 0, 9.0)], 1) == queue.LOST
    assert not lifecycle.finish(db, stale.lease, Status.SUCCEEDED)
    assert _series(db, experiment_id, "norm") == ([], [])
    assert _record(db, fresh.lease, [("norm", 0, 1.0)], 1) == queue.RUNNING
    assert _experiment(db, experiment_id).worker_id == "new-worker"


def test_one_group_write_tells_each_run_its_verdict_and_records_its_own_step(client, db):
    ids = [client.post("/experiments", json={}).json()["id"] for _ in range(4)]
    running, canceled, ahead, stale = (lifecycle.claim_next(db, INFO.id) for _ in ids)
    assert client.post(f"/experiments/{canceled.id}/cancel").status_code == 202
    lost = lifecycle.Lease(stale.id, INFO.id, stale.lease.attempt + 1)
    steps = {running.id: 5, canceled.id: 5, ahead.id: 9, lost.experiment_id: 5}
    leases = [running.lease, canceled.lease, ahead.lease, lost]
    progress = [
        queue.Progress(
            lease, {"norm": (np.array([1]), np.array([1.0]))}, steps[lease.experiment_id]
        )
        for lease in leases
    ]
    verdicts = queue.record_progress(db, progress)
    assert verdicts == {
        running.id: queue.RUNNING,
        canceled.id: queue.CANCEL,
        ahead.id: queue.RUNNING,
        stale.id: queue.LOST,
    }
    recorded = {i: _experiment(db, i).progress_step for i in ids}
    assert recorded == {running.id: 5, canceled.id: 5, ahead.id: 9, stale.id: 0}
    assert _series(db, stale.id, "norm") == ([], [])


def test_metric_writes_are_idempotent_per_step(client, db):
    experiment_id = client.post("/experiments", json={}).json()["id"]
    claimed = lifecycle.claim_next(db, INFO.id)
    points = [("loss", 0, 1.0), ("loss", 1, float("nan"))]
    for _ in range(2):
        assert _record(db, claimed.lease, points, 2) == queue.RUNNING
    _record(db, claimed.lease, [("loss", 1, 0.5)], 2)
    assert _series(db, experiment_id, "loss") == ([0, 1], [1.0, 0.5])
    with db.connect() as connection:
        assert metric_store.count_points(connection, experiment_id) == 2


def test_claims_go_oldest_first_and_are_logged(client, db):
    ids = [client.post("/experiments", json={"steps": 5}).json()["id"] for _ in range(3)]
    claimed = [lifecycle.claim_next(db, f"w{i}") for i in range(4)]
    assert [c.id for c in claimed[:3]] == ids and claimed[3] is None
    with db.connect() as connection:
        log = connection.execute(select(Claim.experiment_id, Claim.worker_id, Claim.attempt)).all()
    assert sorted(log) == [(ids[0], "w0", 1), (ids[1], "w1", 1), (ids[2], "w2", 1)]


def test_workers_endpoint_lists_live_workers_only(client, db):
    experiment_id = client.post("/experiments", json={}).json()["id"]
    queue.register_worker(db, INFO, forget_after_seconds=60)
    lifecycle.claim_next(db, INFO.id)
    body = client.get("/workers").json()
    assert body["count"] == 1
    assert body["data"][0]["id"] == INFO.id and body["data"][0]["pid"] == 1
    assert body["data"][0]["experiment_id"] == experiment_id
    silent = {"last_heartbeat": db_now(3600)}
    with db.begin() as connection:
        connection.execute(update(WorkerRow).values(**silent))
    assert client.get("/workers").json() == {"data": [], "count": 0}
    queue.unregister_worker(db, INFO.id)
    with db.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(WorkerRow)) == 0
