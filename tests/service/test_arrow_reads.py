"""Metric reads as Arrow IPC streams: the same points as the JSON answers, on both databases,
chosen by the Accept header."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.ipc
import pytest

from dirconv.client import arrow_series
from service import exports
from tests.service.test_metrics_api import store_points

ARROW = exports.ARROW_STREAM


def _arrow(client, url: str, params: dict | None = None) -> pa.Table:  # noqa: ANN001
    response = client.get(url, params=params, headers={"Accept": ARROW})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == ARROW
    assert "accept" in response.headers["vary"].lower()
    return pyarrow.ipc.open_stream(response.content).read_all()


def _json_points(values: list) -> np.ndarray:
    return np.array([float(value) for value in values])


def _same(left: np.ndarray, right: np.ndarray) -> None:
    assert left.dtype == right.dtype and len(left) == len(right)
    assert np.array_equal(left, right, equal_nan=True)


def test_an_experiment_read_in_arrow_equals_the_json_answer(client, db):
    run = client.post("/experiments", json={"optimizer": "gd"}).json()["id"]
    store_points(db, run, 5000)
    for params in ({}, {"names": "loss,norm", "start_step": 2, "end_step": 3000},
                   {"max_points": 100}, {"max_points": 100, "spacing": "log"}):  # fmt: skip
        url = f"/experiments/{run}/metrics"
        table = _arrow(client, url, params)
        assert table.schema == exports.ARROW_SCHEMA
        assert set(table.column("experiment_id").to_pylist()) == {run}
        series = arrow_series(_arrow_bytes(client, url, params))
        answer = client.get(url, params=params).json()["series"]
        assert [name for _, name in series] == list(answer)
        for name, points in answer.items():
            steps, values = series[run, name]
            _same(steps, np.array(points["steps"], np.int64))
            _same(values, _json_points(points["values"]))


def _arrow_bytes(client, url: str, params: dict) -> bytes:  # noqa: ANN001
    return client.get(url, params=params, headers={"Accept": ARROW}).content


def test_compare_and_sweep_reads_in_arrow_equal_their_json_answers(client, db):
    sweep = client.post("/sweeps", json={"base": {"steps": 600}, "grid": {"seed": [0, 1, 2]}})
    ids = sweep.json()["experiment_ids"]
    for seed, run in enumerate(ids[:2]):
        store_points(db, run, 600, seed)  # the third member has no points yet
    for url, params, runs_key in (
        ("/metrics/compare", {"ids": ",".join(map(str, ids)), "name": "loss"}, "runs"),
        (f"/sweeps/{sweep.json()['id']}/metrics", {"name": "loss"}, "members"),
        ("/metrics/compare", {"ids": ",".join(map(str, ids)), "max_points": 50}, "runs"),
    ):
        series = arrow_series(_arrow_bytes(client, url, params))
        runs = client.get(url, params=params).json()[runs_key]
        assert [run["experiment_id"] for run in runs] == ids
        assert sorted(series) == sorted((run, params.get("name", "directional_error"))
                                        for run in ids[:2])  # fmt: skip
        for run in runs:
            if not run["steps"]:
                continue
            steps, values = series[run["experiment_id"], params.get("name", "directional_error")]
            _same(steps, np.array(run["steps"], np.int64))
            _same(values, _json_points(run["values"]))


@pytest.mark.parametrize(
    ("accept", "arrow"),
    [
        (None, False),
        ("*/*", False),
        ("application/json", False),
        (ARROW, True),
        (f"{ARROW}, application/json;q=0.5", True),
        (f"application/json, {ARROW};q=0.5", False),
        (f"{ARROW};q=0", False),
        (f"text/html, {ARROW};q=0.9", True),
        (f"{ARROW};q=nonsense, application/json;q=0.1", False),
        (";;,,q=1", False),
    ],
)
def test_accept_header_chooses_arrow_or_json(client, db, accept, arrow):
    run = client.post("/experiments", json={}).json()["id"]
    store_points(db, run, 10)
    headers = {"Accept": accept} if accept is not None else {}
    response = client.get(f"/experiments/{run}/metrics", headers=headers)
    assert response.status_code == 200
    wanted = ARROW if arrow else "application/json"
    assert response.headers["content-type"] == wanted


def test_an_arrow_answer_past_its_limit_is_a_422_naming_max_points(client, db, settings_env):
    settings_env(MAX_ARROW_READ_POINTS=1000)
    run = client.post("/experiments", json={"optimizer": "gd"}).json()["id"]
    store_points(db, run, 600)
    headers = {"Accept": ARROW}
    response = client.get(f"/experiments/{run}/metrics", headers=headers)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", "max_points"]
    assert "DIRCONV_MAX_ARROW_READ_POINTS" in error["msg"]
    ok = client.get(f"/experiments/{run}/metrics?max_points=100", headers=headers)
    assert ok.status_code == 200


def test_errors_stay_json_when_arrow_is_asked_for(client):
    response = client.get("/experiments/999/metrics", headers={"Accept": ARROW})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
