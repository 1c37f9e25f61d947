"""Reads that cannot blow up: JSON answers are capped, exports stream in bounded memory, theory
curves are computed once per flow problem in a bounded number of slots."""

from __future__ import annotations

import csv
import io
import sys
import threading
import tracemalloc

import numpy as np
import pyarrow.parquet as pq
import pytest

from core import metric_store, theory
from core.db import make_engine, upgrade_schema
from service import exports
from service.api import theory as theory_api
from service.main import create_app
from tests.conftest import api_client

METRICS = ["directional_error", "angle", "loss", "norm", "balancedness"]


def _store(db, experiment_id: int, steps: np.ndarray) -> None:  # noqa: ANN001
    series = {name: (steps, np.cos(steps * 1e-3) + i) for i, name in enumerate(METRICS)}
    with db.begin() as connection:
        metric_store.write_points(connection, experiment_id, series)


def test_a_json_answer_past_the_read_limit_is_refused_naming_max_points(client, db, settings_env):
    settings_env(MAX_READ_POINTS=1000)
    run = client.post("/experiments", json={"steps": 600}).json()["id"]
    _store(db, run, np.arange(601))
    response = client.get(f"/experiments/{run}/metrics")
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", "max_points"]
    assert "3,005 points" in error["msg"] and "DIRCONV_MAX_READ_POINTS" in error["msg"]
    assert "metrics.csv" in error["msg"]
    assert client.get(f"/experiments/{run}/metrics?names=loss").status_code == 200
    assert client.get(f"/experiments/{run}/metrics?max_points=100").status_code == 200
    ranged = client.get(f"/experiments/{run}/metrics?start_step=0&end_step=100")
    assert ranged.status_code == 200


def test_compare_and_sweep_reads_count_every_run(client, db, settings_env):
    settings_env(MAX_READ_POINTS=1000)
    sweep = client.post("/sweeps", json={"base": {"steps": 600}, "grid": {"seed": [0, 1]}})
    ids = sweep.json()["experiment_ids"]
    for run in ids:
        _store(db, run, np.arange(601))
    joined = ",".join(map(str, ids))
    assert client.get(f"/metrics/compare?ids={joined}").status_code == 422
    assert client.get(f"/metrics/compare?ids={joined}&max_points=400").status_code == 200
    sweep_id = sweep.json()["id"]
    assert client.get(f"/sweeps/{sweep_id}/metrics").status_code == 422
    assert client.get(f"/sweeps/{sweep_id}/metrics?max_points=400").status_code == 200


@pytest.fixture
def long_run(tmp_path):  # noqa: ANN001, ANN201
    """A 1M-step run with five metrics stored, on SQLite."""
    url = f"sqlite:///{tmp_path / 'long.db'}"
    upgrade_schema(url)
    db = make_engine(url)
    with api_client(create_app(url)) as client:
        run = client.post("/experiments", json={"steps": 1_000_000}).json()["id"]
        _store(db, run, np.arange(1_000_001))
        yield client, run, db
    db.dispose()


def test_a_csv_export_of_a_million_steps_streams_in_bounded_memory(long_run):
    client, run, db = long_run
    tracemalloc.start()
    try:
        size = sum(len(piece) for piece in exports.csv_stream(METRICS, _windows(db, run)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size > 90_000_000
    assert peak < 32 * 2**20, f"peak {peak / 2**20:.1f} MiB while exporting {size / 2**20:.0f} MiB"
    rows = list(csv.reader(io.StringIO(client.get(f"/experiments/{run}/metrics.csv").text)))
    assert rows[0] == ["step", *METRICS]
    assert len(rows) == 1_000_002
    assert [float(x) for x in rows[500_001][1:]] == [np.cos(500.0) + i for i in range(5)]


def _windows(db, run: int):  # noqa: ANN001, ANN202
    return metric_store.windows(db, run, METRICS)


def test_a_parquet_export_streams_row_groups_that_read_back_exactly(long_run):
    client, run, _ = long_run
    response = client.get(f"/experiments/{run}/metrics.parquet?start_step=5&end_step=70000")
    table = pq.read_table(io.BytesIO(response.content))
    assert table.column_names == ["step", *METRICS]
    steps = np.arange(5, 70001)
    assert np.array_equal(table.column("step").to_numpy(), steps)
    assert np.array_equal(table.column("loss").to_numpy(), np.cos(steps * 1e-3) + 2)
    assert pq.ParquetFile(io.BytesIO(response.content)).num_row_groups > 1


def test_an_export_of_a_run_without_points_is_a_header(client):
    run = client.post("/experiments", json={"steps": 10}).json()["id"]
    assert client.get(f"/experiments/{run}/metrics.csv").text.splitlines() == [
        "step,directional_error,angle,loss,norm,balancedness"
    ]
    parquet = client.get(f"/experiments/{run}/metrics.parquet").content
    assert pq.read_table(io.BytesIO(parquet)).num_rows == 0


def test_runs_that_differ_outside_the_flow_share_one_theory_problem(client):
    first = client.post("/experiments", json={"depth": 3, "steps": 500}).json()["spec"]
    other = {"depth": 3, "steps": 500, "name": "x", "batch_size": 7, "log_every": 5}
    second = client.post("/experiments", json=other).json()["spec"]
    deeper = client.post("/experiments", json={"depth": 4, "steps": 500}).json()["spec"]
    assert theory.FlowProblem.of(first) == theory.FlowProblem.of(second)
    assert theory.FlowProblem.of(first) != theory.FlowProblem.of(deeper)


def test_a_theory_curve_past_the_free_slots_answers_503_then_succeeds(client, settings_env):
    settings_env(MAX_THEORY_JOBS=1)
    theory_api._semaphore.cache_clear()
    theory_api._curves.clear()
    run = client.post("/experiments", json={"depth": 2, "steps": 777}).json()["id"]
    busy = theory_api._slots()
    assert busy.acquire(blocking=False)  # another request holds the only slot
    try:
        refused = client.get(f"/experiments/{run}/theory?max_points=321")
    finally:
        busy.release()
    assert refused.status_code == 503
    assert refused.headers["Retry-After"]
    assert "DIRCONV_MAX_THEORY_JOBS" in refused.json()["detail"]
    answered = client.get(f"/experiments/{run}/theory?max_points=321")
    assert answered.status_code == 200
    # Cached now: answered again while every slot is taken.
    assert busy.acquire(blocking=False)
    try:
        again = client.get(f"/experiments/{run}/theory?max_points=321")
    finally:
        busy.release()
        theory_api._semaphore.cache_clear()
    assert again.json() == answered.json()


def test_theory_slots_are_released_when_many_ask_at_once(client):
    runs = [client.post("/experiments", json={"depth": 2, "steps": 300 + i}).json()["id"]
            for i in range(6)]  # fmt: skip
    statuses = []

    def ask(run: int) -> None:
        statuses.append(client.get(f"/experiments/{run}/theory").status_code)

    threads = [threading.Thread(target=ask, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(statuses) <= {200, 503}
    assert all(client.get(f"/experiments/{run}/theory").status_code == 200 for run in runs)


def _slots_seen_by_racing_threads(count: int) -> list[threading.BoundedSemaphore]:
    start = threading.Barrier(count)
    seen = []

    def take() -> None:
        start.wait()
        seen.append(theory_api._slots())

    threads = [threading.Thread(target=take) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seen


def test_requests_racing_for_the_first_theory_slot_share_one_semaphore():
    # A short switch interval (the worker sets one too) makes the threads interleave often.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(200):
            theory_api._semaphore.cache_clear()
            seen = _slots_seen_by_racing_threads(8)
            assert len({id(slots) for slots in seen}) == 1
    finally:
        sys.setswitchinterval(previous)
        theory_api._semaphore.cache_clear()
