"""`dirconv.Client` against real `python -m service` and `python -m worker` processes."""

from __future__ import annotations

import numpy as np
import pytest

from dirconv import ApiError, Client, NotSupported
from dirconv.client import to_array


@pytest.fixture
def client(api) -> Client:
    with Client(api.url) as connected:
        yield connected


def test_submit_wait_and_read_metrics_as_arrays(client):
    run = client.submit(depth=2, steps=400, log_every=10, tags=["client"])
    assert run["status"] == "queued"
    finished = client.wait(run["id"], timeout=60)
    assert finished["status"] == "succeeded"
    series = client.metrics(run["id"], ["directional_error", "norm"])
    steps, errors = series["directional_error"]
    assert isinstance(steps, np.ndarray) and steps.dtype == np.int64
    assert steps.tolist() == list(range(0, 401, 10))
    assert errors[0] == pytest.approx(0.6325, abs=1e-4)
    assert errors[-1] < errors[0]
    assert set(series) == {"directional_error", "norm"}


def test_metrics_thins_to_max_points(client):
    run = client.submit(steps=300)
    client.wait(run["id"], timeout=60)
    steps, _ = client.metrics(run["id"], "loss", max_points=20)["loss"]
    assert len(steps) == 20 and steps[0] == 0 and steps[-1] == 300


def test_invalid_spec_raises_api_error_naming_the_field(client):
    with pytest.raises(ApiError) as raised:
        client.submit(depth=0, loss="hinge")
    assert raised.value.status_code == 422
    fields = dict(raised.value.errors)
    assert "greater than or equal to 1" in fields["depth"]
    assert "loss" in fields


def test_unknown_experiment_is_an_api_error_not_a_missing_route(client):
    with pytest.raises(ApiError) as raised:
        client.get(999_999)
    assert raised.value.status_code == 404
    assert not isinstance(raised.value, NotSupported)


def test_wait_all_with_progress_bar_returns_every_run(client, capsys):
    ids = [client.submit(steps=200, depth=d)["id"] for d in (1, 3)]
    runs = client.wait_all(ids, progress=True, timeout=60)
    assert [run["status"] for run in runs] == ["succeeded", "succeeded"]
    assert "400/400" in capsys.readouterr().err


def test_sweep_is_queued_or_reported_unsupported(client):
    try:
        sweep = client.sweep({"steps": 100}, {"depth": [1, 2]}, name="client-sweep")
    except NotSupported:
        return
    assert len(sweep["experiment_ids"]) == 2


def test_theory_is_a_series_or_none(client):
    run = client.submit(steps=100, depth=2)
    theory = client.theory(run["id"], max_points=50)
    assert theory is None or len(theory[0]) == len(theory[1]) > 0


def test_non_finite_spellings_become_floats():
    values = to_array([1.5, "NaN", "Infinity", "-Infinity"])
    assert values[0] == 1.5 and np.isnan(values[1]) and values[2] == np.inf and values[3] < 0


def test_arrow_and_json_reads_give_the_same_arrays(api):
    arrow, plain = Client(api.url, arrow=True), Client(api.url, arrow=False)
    with arrow, plain:
        sweep = arrow.sweep(base={"steps": 300, "log_every": 3}, grid={"seed": [0, 1]})
        ids = sweep["experiment_ids"]
        arrow.wait_all(ids, timeout=60)
        for a, b in (
            (arrow.metrics(ids[0]), plain.metrics(ids[0])),
            (
                arrow.metrics(ids[0], "loss", max_points=20),
                plain.metrics(ids[0], "loss", max_points=20),
            ),
            (arrow.compare(ids, "norm"), plain.compare(ids, "norm")),
        ):
            assert a.keys() == b.keys() and a
            for key in a:
                assert a[key][0].dtype == np.int64 and a[key][1].dtype == np.float64
                assert np.array_equal(a[key][0], b[key][0])
                assert np.array_equal(a[key][1], b[key][1], equal_nan=True)
        by_arrow, by_json = arrow.sweep_metrics(sweep["id"]), plain.sweep_metrics(sweep["id"])
        assert [m["grid_values"] for m in by_arrow] == [m["grid_values"] for m in by_json]
        for a, b in zip(by_arrow, by_json, strict=True):
            assert np.array_equal(a["series"][1], b["series"][1])
