"""Metric reads, exports and compare over the API, on a temporary SQLite file."""

import csv
import io
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import insert

from core import metric_store
from core.models import Experiment
from core.spec import LOGGED_METRICS, METRIC_NAMES


def store_points(db, experiment_id: int, steps: int, seed: int = 0) -> None:  # noqa: ANN001
    """Random points of every metric at each of `steps` steps, `loss` with NaN and ±inf at
    steps 1 to 3, `norm` at every 7th step only."""
    rng = np.random.default_rng(seed)
    all_steps = np.arange(steps)
    points = {name: (all_steps, rng.normal(size=steps)) for name in METRIC_NAMES}
    points["loss"][1][[1, 2, 3]] = [math.nan, math.inf, -math.inf]
    points["norm"] = (all_steps[::7], points["norm"][1][::7])  # a sparser metric
    with db.begin() as connection:
        metric_store.write_points(connection, experiment_id, points)


def _run_with_metrics(client, db, steps: int = 5000) -> int:
    experiment_id = client.post("/experiments", json={"optimizer": "gd"}).json()["id"]
    store_points(db, experiment_id, steps, seed=experiment_id)
    return experiment_id


def _number(value) -> float:
    """A JSON value or CSV field as a float; "NaN", "Infinity", "-Infinity" spell non-finite."""
    return float(value)


def _json_table(client, experiment_id) -> dict[str, dict[int, float]]:
    series = client.get(f"/experiments/{experiment_id}/metrics").json()["series"]
    return {
        name: dict(zip(data["steps"], map(_number, data["values"]), strict=True))
        for name, data in series.items()
    }


def _same_numbers(left: dict, right: dict) -> None:
    assert left.keys() == right.keys()
    for name in left:
        assert left[name].keys() == right[name].keys()
        for step, value in left[name].items():
            other = right[name][step]
            assert value == other or (math.isnan(value) and math.isnan(other))


def test_csv_export_streams_the_same_numbers_as_json(client, db):
    experiment_id = _run_with_metrics(client, db)
    response = client.get(f"/experiments/{experiment_id}/metrics.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == ["step", *METRIC_NAMES]
    assert len(rows) == 5000 and rows[1]["loss"] == "NaN" and rows[2]["loss"] == "Infinity"
    assert rows[1]["norm"] == ""  # norm was not logged at step 1
    from_csv = {
        name: {int(row["step"]): _number(row[name]) for row in rows if row[name] != ""}
        for name in METRIC_NAMES
    }
    _same_numbers(from_csv, _json_table(client, experiment_id))


def test_parquet_export_holds_the_same_numbers_as_json(client, db):
    experiment_id = _run_with_metrics(client, db)
    response = client.get(f"/experiments/{experiment_id}/metrics.parquet")
    assert response.status_code == 200
    table = pq.read_table(io.BytesIO(response.content)).to_pydict()
    assert list(table) == ["step", *METRIC_NAMES]
    from_parquet = {
        name: {
            step: value
            for step, value in zip(table["step"], table[name], strict=True)
            if value is not None
        }
        for name in METRIC_NAMES
    }
    _same_numbers(from_parquet, _json_table(client, experiment_id))


def test_export_takes_names_and_a_step_range(client, db):
    experiment_id = _run_with_metrics(client, db)
    params = {"names": "norm", "start_step": 7, "end_step": 21}
    text = client.get(f"/experiments/{experiment_id}/metrics.csv", params=params).text
    assert text.splitlines()[0] == "step,norm"
    assert [line.split(",")[0] for line in text.splitlines()[1:]] == ["7", "14", "21"]
    assert client.get("/experiments/999/metrics.parquet").status_code == 404


def test_downsampled_read_keeps_extremes_and_the_budget(client, db):
    experiment_id = _run_with_metrics(client, db, steps=20_000)
    url = f"/experiments/{experiment_id}/metrics"
    full = client.get(url, params={"names": "angle"}).json()["series"]["angle"]
    for spacing in ("linear", "log"):
        params = {"names": "angle", "max_points": 100, "spacing": spacing}
        thin = client.get(url, params=params).json()["series"]["angle"]
        assert len(thin["steps"]) <= 100
        assert thin["steps"][0] == 0 and thin["steps"][-1] == 19_999
        assert max(thin["values"]) == max(full["values"])
        assert min(thin["values"]) == min(full["values"])


def _bulk_experiments(db, count: int) -> list[int]:
    rows = [
        {"name": f"r{i}", "status": "succeeded", "spec": {}, "total_steps": 1} for i in range(count)
    ]
    with db.begin() as connection:
        return list(connection.scalars(insert(Experiment).returning(Experiment.id), rows))


def test_compare_returns_500_runs_in_one_call(client, db):
    ids = _bulk_experiments(db, 500)
    with db.begin() as connection:
        for experiment_id in ids:
            steps = np.arange(0, 2000, 2)
            values = np.exp(-steps / (experiment_id + 100.0))
            metric_store.write_points(
                connection, experiment_id, {"directional_error": (steps, values)}
            )
    asked = [*ids, 10**9, ids[0]]
    response = client.get(
        "/metrics/compare",
        params={"ids": ",".join(map(str, asked)), "name": "directional_error", "max_points": 50},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "directional_error" and body["missing"] == [10**9]
    assert [run["experiment_id"] for run in body["runs"]] == ids
    for run in body["runs"]:
        assert 0 < len(run["steps"]) <= 50 and run["steps"][0] == 0 and run["values"][0] == 1.0


def test_compare_lists_a_run_without_points_with_empty_series(client):
    experiment_id = client.post("/experiments", json={}).json()["id"]
    body = client.get("/metrics/compare", params={"ids": str(experiment_id)}).json()
    assert body == {
        "name": "directional_error",
        "runs": [{"experiment_id": experiment_id, "steps": [], "values": []}],
        "missing": [],
    }


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "ids"),
        ({"ids": ""}, "ids"),
        ({"ids": "1,x"}, "ids"),
        ({"ids": "0"}, "ids"),
        ({"ids": "-3"}, "ids"),
        ({"ids": str(2**64)}, "ids"),
        ({"ids": ",".join(map(str, range(1, 1100)))}, "ids"),
        ({"ids": "1", "name": "accuracy"}, "name"),
        ({"ids": "1", "max_points": 1}, "max_points"),
        ({"ids": "1", "spacing": "cubic"}, "spacing"),
        ({"ids": "1", "start_step": 5, "end_step": 1}, "end_step"),
    ],
)
def test_bad_compare_query_is_a_422_naming_the_field(client, params, field):
    response = client.get("/metrics/compare", params=params)
    assert response.status_code == 422
    assert field in [error["loc"][-1] for error in response.json()["detail"]]


@pytest.mark.parametrize("suffix", ["metrics", "metrics.csv", "metrics.parquet"])
def test_bad_read_and_export_queries_are_422s(client, suffix):
    experiment_id = client.post("/experiments", json={}).json()["id"]
    for params, field in [({"names": "x"}, "names"), ({"end_step": -1}, "end_step")]:
        response = client.get(f"/experiments/{experiment_id}/{suffix}", params=params)
        assert response.status_code == 422
        assert field in [error["loc"][-1] for error in response.json()["detail"]]


def test_metric_definitions_are_the_table_in_order(client):
    response = client.get("/metrics/definitions")
    assert response.status_code == 200
    data = response.json()["data"]
    assert [d["name"] for d in data] == list(METRIC_NAMES)
    assert all(set(d) == {"name", "description", "scale", "optimizers"} for d in data)
    assert {d["name"]: d["scale"] for d in data}["balancedness"] == "linear"
    for optimizer, names in LOGGED_METRICS.items():
        assert [d["name"] for d in data if optimizer in d["optimizers"]] == list(names)
