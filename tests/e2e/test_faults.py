"""Faults with real processes: a run too big for memory, steps longer than the lease, the
database's write lock held past the lease as a run ends."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy import func, select

from core.db import make_engine, upgrade_schema
from core.models import Claim, WorkerRow, db_now
from tests.e2e.stack import Stack, stopped_at_end
from tests.e2e.test_recovery import FAST_LEASES
from tests.waiting import wait_for

UNBOUNDED = {"DIRCONV_MAX_RUN_BYTES": "1000000000000000", "DIRCONV_MAX_RUN_POINTS": "1000000000000"}
"""Lets the API accept a run that no worker can hold, to see what the workers make of it."""
DONE = ("succeeded", "failed", "canceled")


def _read(stack: Stack, experiment_id: int) -> dict:
    return httpx.get(f"{stack.url}/experiments/{experiment_id}").json()


def _submit(stack: Stack, spec: dict) -> int:
    response = httpx.post(f"{stack.url}/experiments", json=spec)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _ended(stack: Stack, experiment_id: int, timeout: float = 120) -> dict:
    wait_for(lambda: _read(stack, experiment_id)["status"] in DONE, "the run to end", timeout)
    return _read(stack, experiment_id)


def _start_workers(stack: Stack, count: int) -> list:
    workers = [stack.start("worker") for _ in range(count)]
    wait_for(
        lambda: httpx.get(f"{stack.url}/workers").json()["count"] == count,
        f"{count} workers to register",
    )
    return workers


def _claims(db, experiment_id: int) -> int:
    query = select(func.count()).select_from(Claim).where(Claim.experiment_id == experiment_id)
    with db.connect() as connection:
        return connection.scalar(query)


def test_a_run_too_big_for_memory_fails_and_both_workers_go_on(stack):
    stack.env.update(UNBOUNDED)
    stack.start_api()
    workers = _start_workers(stack, 2)
    # x alone would take 10,000 x 10,000,000 float32 = 373 GiB: numpy refuses it at once.
    huge = _ended(stack, _submit(stack, {"dim": 10_000, "batch_size": 10_000_000, "steps": 1}))
    assert huge["status"] == "failed"
    assert huge["error"].startswith("out of memory: the run needs more memory than this worker")
    assert huge["attempts"] == 1
    normal = _ended(stack, _submit(stack, {"steps": 200}))
    assert normal["status"] == "succeeded", normal["error"]
    assert [worker.poll() for worker in workers] == [None, None]
    assert httpx.get(f"{stack.url}/workers").json()["count"] == 2
    assert "Traceback" not in stack.logs()


def test_steps_longer_than_the_lease_finish_on_the_first_attempt(stack, db):
    stack.env.update(FAST_LEASES)  # a 1 s lease
    stack.start_api()
    workers = _start_workers(stack, 2)  # the idle one reaps the busy one if it falls silent
    # About 2 s a step on a 2-core machine: the logged balancedness of 1000 x 1000 layers.
    spec = {"dim": 1000, "width": 1000, "depth": 3, "steps": 1}
    experiment_id = _submit(stack, spec)
    experiment = _ended(stack, experiment_id, timeout=300)
    assert experiment["status"] == "succeeded", experiment["error"]
    assert experiment["attempts"] == 1 and _claims(db, experiment_id) == 1
    span = [datetime.fromisoformat(experiment[key]) for key in ("started_at", "finished_at")]
    assert (span[1] - span[0]).total_seconds() > 1.0  # else the run proved nothing
    assert [worker.poll() for worker in workers] == [None, None]
    print(f"long steps: 2 steps took {(span[1] - span[0]).total_seconds():.1f} s, 1 attempt")


def _silent_workers(db, seconds: float) -> int:
    query = select(func.count()).select_from(WorkerRow)
    with db.connect() as connection:
        return connection.scalar(query.where(WorkerRow.last_heartbeat < db_now(seconds)))


def test_a_write_lock_held_past_the_lease_as_a_run_ends_does_not_fail_it(tmp_path: Path):
    path = tmp_path / "dirconv.db"
    url = f"sqlite:///{path}"
    upgrade_schema(url)
    db = make_engine(url)
    with stopped_at_end(Stack(tmp_path, url)) as stack:
        stack.env.update({**FAST_LEASES, "DIRCONV_SQLITE_BUSY_TIMEOUT_MS": "50"})
        stack.start_api()
        (worker,) = _start_workers(stack, 1)
        spec = {"depth": 3, "steps": 10_000, "batch_size": 20_000, "log_every": 10}
        experiment_id = _submit(stack, spec)
        wait_for(lambda: _read(stack, experiment_id)["progress"]["step"] > 0, "first progress")
        lock = sqlite3.connect(path, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # every write of the worker now fails after 50 ms
        try:
            wait_for(lambda: "event=drain_waiting" in stack.logs(), "drain_waiting", timeout=120)
            wait_for(lambda: _silent_workers(db, seconds=1.0) == 1, "the worker's lease to run out")
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        experiment = _ended(stack, experiment_id)
        assert experiment["status"] == "succeeded", experiment["error"]
        assert experiment["attempts"] == 1 and _claims(db, experiment_id) == 1
        series = httpx.get(f"{stack.url}/experiments/{experiment_id}/metrics").json()["series"]
        assert series["norm"]["steps"] == list(range(0, 10_001, 10))
        assert worker.poll() is None
        assert "Traceback" not in stack.logs()
    db.dispose()
