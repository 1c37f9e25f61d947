import pytest


def _count(client) -> int:
    return client.get("/experiments").json()["count"]


def test_sweep_is_the_cartesian_product_of_its_grid(client):
    body = {"name": "depths", "base": {"steps": 100, "tags": ["s"]},
            "grid": {"depth": [1, 2, 3], "seed": [0, 1]}}  # fmt: skip
    created = client.post("/sweeps", json=body)
    assert created.status_code == 201
    ids = created.json()["experiment_ids"]
    assert len(ids) == 6
    sweep = client.get(f"/sweeps/{created.json()['id']}").json()
    assert sweep["name"] == "depths" and sweep["experiment_ids"] == ids
    assert sweep["counts"]["queued"] == 6 and sweep["grid"] == body["grid"]
    specs = [client.get(f"/experiments/{i}").json()["spec"] for i in ids]
    assert {(s["depth"], s["seed"]) for s in specs} == {(d, s) for d in (1, 2, 3) for s in (0, 1)}
    assert all(s["steps"] == 100 and s["tags"] == ["s"] for s in specs)
    assert client.get("/sweeps").json()["count"] == 1


def test_listed_sweeps_each_carry_their_own_members_and_counts(client):
    first = client.post("/sweeps", json={"base": {"steps": 10}, "grid": {"seed": [0, 1, 2]}})
    second = client.post("/sweeps", json={"base": {"steps": 10}, "grid": {"seed": [0, 1]}})
    client.post(f"/experiments/{second.json()['experiment_ids'][0]}/cancel")
    listed = {sweep["id"]: sweep for sweep in client.get("/sweeps").json()["data"]}
    for created in (first.json(), second.json()):
        assert listed[created["id"]]["experiment_ids"] == created["experiment_ids"]
    assert listed[first.json()["id"]]["counts"]["queued"] == 3
    counts = listed[second.json()["id"]]["counts"]
    assert counts["queued"] == 1 and counts["canceled"] == 1
    assert listed[second.json()["id"]]["total"] == 2


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"grid": {}}, ["body", "grid"]),
        ({"grid": {"depth": []}}, ["body", "grid", "depth"]),
        ({"grid": {"colour": [1]}}, ["body", "grid", "colour"]),
        ({"grid": {"name": ["a"]}}, ["body", "grid", "name"]),
        ({"grid": {"depth": [1, 0]}}, ["body", "grid", "depth"]),
        ({"grid": {"optimizer": ["sgd", "flow"]}, "base": {"batch_size": 10}},
         ["body", "base", "batch_size"]),
        ({"base": {"lr": -1}, "grid": {"depth": [1]}}, ["body", "base", "lr"]),
        ({"base": {"bogus": 1}, "grid": {"depth": [1]}}, ["body", "base", "bogus"]),
        ({"grid": {"seed": list(range(5000))}}, ["body", "grid"]),
        ({"grid": {"depth": [1]}, "extra": 1}, ["body", "extra"]),
        ({"grid": {"depth": 3}}, ["body", "grid", "depth"]),
    ],
)  # fmt: skip
def test_bad_sweep_is_rejected_naming_the_field_and_nothing_is_stored(client, body, loc):
    response = client.post("/sweeps", json=body)
    assert response.status_code == 422
    assert loc in [error["loc"] for error in response.json()["detail"]]
    assert _count(client) == 0 and client.get("/sweeps").json()["count"] == 0


def test_unknown_sweep_is_a_404(client):
    assert client.get("/sweeps/42").status_code == 404
    assert client.get("/sweeps/42/metrics").status_code == 404


def test_sweep_metrics_reject_unknown_metric(client):
    sweep_id = client.post("/sweeps", json={"grid": {"depth": [1]}}).json()["id"]
    response = client.get(f"/sweeps/{sweep_id}/metrics", params={"name": "accuracy"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "name"]
