"""GET /metrics/aggregate and GET /sweeps/{id}/aggregate against numpy on the raw series,
on both databases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core import metric_store

QUANTILES = {"median": 50, "q10": 10, "q25": 25, "q75": 75, "q90": 90}
ALL_STATS = "mean,std,min,max,median,q10,q25,q75,q90,gmean"


def _run(client, db, steps: np.ndarray, values: np.ndarray, spec: dict | None = None) -> int:
    body = {"optimizer": "gd", **(spec or {})}
    experiment_id = client.post("/experiments", json=body).json()["id"]
    with db.begin() as connection:
        metric_store.write_points(connection, experiment_id, {"directional_error": (steps, values)})
    return experiment_id


def _seeded_runs(client, db) -> dict[int, dict[int, float]]:
    """Runs of different lengths and noise, one logging every 3rd step, one with a NaN."""
    raw = {}
    for seed, (length, every) in enumerate([(9000, 1), (5000, 1), (12_000, 1), (8000, 3)]):
        rng = np.random.default_rng(seed)
        steps = np.arange(0, length, every)
        values = np.exp(rng.normal(-np.arange(len(steps)) / 2000, 0.1 * (seed + 1)))
        if seed == 1:
            values[100] = math.nan
        raw[_run(client, db, steps, values)] = dict(
            zip(steps.tolist(), values.tolist(), strict=True)
        )
    return raw


def _expected(stat: str, values: np.ndarray) -> float:
    if stat in QUANTILES:
        return float(np.percentile(values, QUANTILES[stat]))
    if stat == "gmean":
        return float(np.exp(np.mean(np.log(values))))
    return float(getattr(np, stat)(values))


def _numbers(values: list) -> np.ndarray:
    return np.array([float(value) for value in values])


def _check_against_numpy(answer: dict, raw: dict[int, dict[int, float]], stats: list[str]):
    for stat in stats:
        expected = []
        for step in answer["steps"]:
            present = np.array([series[step] for series in raw.values() if step in series])
            expected.append(_expected(stat, present))
        got = _numbers(answer[stat])
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0, equal_nan=True)
    counts = [sum(step in series for series in raw.values()) for step in answer["steps"]]
    assert answer["n"] == counts


def test_every_statistic_matches_numpy_on_the_raw_series(client, db):
    raw = _seeded_runs(client, db)
    ids = ",".join(map(str, raw))
    answer = client.get(f"/metrics/aggregate?ids={ids}&name=directional_error&stats={ALL_STATS}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["name"] == "directional_error" and body["ids"] == list(raw)
    assert body["missing"] == []
    assert body["steps"] == sorted(set().union(*raw.values()))
    assert body["mean"][100] == "NaN" and body["median"][100] == "NaN"
    _check_against_numpy(body, raw, ALL_STATS.split(","))


def test_max_points_thins_the_step_grid_without_averaging(client, db):
    raw = _seeded_runs(client, db)
    ids = ",".join(map(str, raw))
    body = client.get(f"/metrics/aggregate?ids={ids}&max_points=500&stats=mean,q90").json()
    grid = sorted(set().union(*raw.values()))
    assert body["steps"] == grid[:: math.ceil(len(grid) / 500)]
    assert len(body["steps"]) <= 500
    _check_against_numpy(body, raw, ["mean", "q90"])


def test_step_range_and_default_stats(client, db):
    raw = _seeded_runs(client, db)
    ids = ",".join(map(str, raw))
    body = client.get(f"/metrics/aggregate?ids={ids}&start_step=4990&end_step=5010").json()
    assert body["steps"] == list(range(4990, 5011))
    # runs 0 and 2 everywhere, run 1 up to 4999, run 3 at steps divisible by 3
    assert body["n"] == [2 + (step <= 4999) + (step % 3 == 0) for step in body["steps"]]
    assert {"mean", "min", "max", "median"} <= body.keys() and "std" not in body
    _check_against_numpy(body, raw, ["mean", "min", "max", "median"])


def test_unknown_ids_are_missing_and_bad_stats_are_refused(client, db):
    raw = _seeded_runs(client, db)
    first = next(iter(raw))
    body = client.get(f"/metrics/aggregate?ids={first},999999&stats=max").json()
    assert body["ids"] == [first] and body["missing"] == [999999]
    refused = client.get(f"/metrics/aggregate?ids={first}&stats=mean,mode")
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "stats"]
    refused = client.get(f"/metrics/aggregate?ids={first}&name=nope")
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "name"]


def test_an_aggregate_of_no_runs_found_is_empty_not_a_server_error(client):
    answer = client.get("/metrics/aggregate?ids=999998,999999&stats=min,max,median,mean")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ids"] == [] and body["missing"] == [999998, 999999]
    assert body["steps"] == [] and body["min"] == [] and body["median"] == []


def test_reading_past_the_aggregate_bound_is_refused(client, db, settings_env):
    raw = _seeded_runs(client, db)
    settings_env(MAX_AGGREGATE_POINTS=1000)
    refused = client.get(f"/metrics/aggregate?ids={','.join(map(str, raw))}")
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["query", "ids"]
    assert "DIRCONV_MAX_AGGREGATE_POINTS" in refused.json()["detail"][0]["msg"]


def test_an_answer_past_the_read_bound_is_refused(client, db, settings_env):
    raw = _seeded_runs(client, db)
    settings_env(MAX_READ_POINTS=1000)
    refused = client.get(f"/metrics/aggregate?ids={','.join(map(str, raw))}")
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["query", "max_points"]


def _sweep(client, db) -> tuple[int, dict[int, dict]]:
    grid = {"depth": [3, 2], "lr": [0.01, 0.001], "seed": [1, 2, 3]}
    created = client.post("/sweeps", json={"base": {"optimizer": "gd", "steps": 100}, "grid": grid})
    assert created.status_code == 201, created.text
    sweep = client.get(f"/sweeps/{created.json()['id']}").json()
    members = {}
    for index, experiment_id in enumerate(sweep["experiment_ids"]):
        rng = np.random.default_rng(index)
        values = np.exp(rng.normal(size=300))
        with db.begin() as connection:
            metric_store.write_points(
                connection, experiment_id, {"directional_error": (np.arange(300), values)}
            )
        members[experiment_id] = dict(enumerate(values.tolist()))
    return sweep["id"], members


def test_sweep_groups_by_grid_fields_in_value_order(client, db):
    sweep_id, members = _sweep(client, db)
    answer = client.get(
        f"/sweeps/{sweep_id}/aggregate?name=directional_error&by=depth,lr&stats=mean,q25"
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["sweep_id"] == sweep_id and body["by"] == ["depth", "lr"]
    values = [group["values"] for group in body["groups"]]
    assert values == [
        {"depth": 2, "lr": 0.001},
        {"depth": 2, "lr": 0.01},
        {"depth": 3, "lr": 0.001},
        {"depth": 3, "lr": 0.01},
    ]
    for group in body["groups"]:
        assert len(group["ids"]) == 3 and group["n"] == [3] * 300
        _check_against_numpy(group, {i: members[i] for i in group["ids"]}, ["mean", "q25"])


def test_sweep_by_must_name_grid_fields(client, db):
    sweep_id, _ = _sweep(client, db)
    refused = client.get(f"/sweeps/{sweep_id}/aggregate?by=depth,width")
    assert refused.status_code == 422
    detail = refused.json()["detail"][0]
    assert detail["loc"] == ["query", "by"] and "width" in detail["msg"]
    assert client.get("/sweeps/999999/aggregate?by=depth").status_code == 404


@pytest.mark.parametrize("query", ["stats=", "max_points=1", "start_step=5&end_step=2"])
def test_bad_aggregate_queries_name_their_field(client, db, query):
    raw = _seeded_runs(client, db)
    refused = client.get(f"/metrics/aggregate?ids={next(iter(raw))}&{query}")
    assert refused.status_code == 422


def test_sweep_groups_leave_out_archived_members_unless_asked(client, db):
    sweep_id, members = _sweep(client, db)
    archived = next(iter(members))
    client.delete(f"/experiments/{archived}")
    query = f"/sweeps/{sweep_id}/aggregate?by=depth,lr&stats=max"
    groups = client.get(query).json()["groups"]
    assert sum(len(group["ids"]) for group in groups) == len(members) - 1
    assert all(archived not in group["ids"] for group in groups)
    groups = client.get(f"{query}&archived=true").json()["groups"]
    assert any(archived in group["ids"] and group["n"][0] == 3 for group in groups)


def test_the_read_bound_counts_every_group_of_a_sweep_answer(client, db, settings_env):
    sweep_id, _ = _sweep(client, db)
    settings_env(MAX_READ_POINTS=2000)  # one group's answer is 300 x 4 = 1200 numbers
    refused = client.get(f"/sweeps/{sweep_id}/aggregate?by=depth,lr&stats=mean,max")
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["query", "max_points"]
    allowed = client.get(f"/sweeps/{sweep_id}/aggregate?by=depth,lr&stats=mean,max&max_points=100")
    assert allowed.status_code == 200
