"""GET /experiments: spec filters, sweep and archived filters, sort, pagination; both
databases."""

from __future__ import annotations

from sqlalchemy import update

from core.models import Experiment


def _create(client, **spec) -> int:
    response = client.post("/experiments", json={"steps": 50, **spec})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _ids(client, query: str) -> list[int]:
    response = client.get(f"/experiments?{query}")
    assert response.status_code == 200, response.text
    return [run["id"] for run in response.json()["data"]]


def test_spec_filters_match_exactly_and_combine(client):
    deep_sgd = _create(client, depth=4, optimizer="sgd", lr=0.001)
    deep_gd = _create(client, depth=4, optimizer="gd", lr=0.001)
    shallow = _create(client, depth=2, optimizer="sgd", lr=0.01)
    assert sorted(_ids(client, "spec.depth=4")) == [deep_sgd, deep_gd]
    assert _ids(client, "spec.depth=4&spec.optimizer=sgd") == [deep_sgd]
    assert sorted(_ids(client, "spec.lr=0.001")) == [deep_sgd, deep_gd]
    assert _ids(client, "spec.lr=1e-2") == [shallow]
    assert _ids(client, "spec.depth=3") == []
    assert sorted(_ids(client, "spec.teacher=[0,1]")) == [deep_sgd, deep_gd, shallow]
    assert _ids(client, "spec.teacher=[0,1,0]") == []
    assert _ids(client, "spec.dtype=float64") == []
    big_seed = _create(client, seed=2**62)
    assert _ids(client, f"spec.seed={2**62}") == [big_seed]
    assert sorted(_ids(client, "spec.seed=0")) == [deep_sgd, deep_gd, shallow]


def test_unknown_spec_fields_and_bad_values_are_refused_by_name(client):
    _create(client)
    for query, name in [
        ("spec.colour=red", "spec.colour"),
        ("spec.depth=deep", "spec.depth"),
        ("spec.depth=2000", "spec.depth"),
        (f"spec.seed={2**70}", "spec.seed"),
        ("spec.lr=0", "spec.lr"),
        ("spec.optimizer=adam", "spec.optimizer"),
        ("spec.teacher=[0,", "spec.teacher"),
        ("sort=colour", "sort"),
    ]:
        refused = client.get(f"/experiments?{query}")
        assert refused.status_code == 422, query
        detail = refused.json()["detail"][0]
        assert detail["loc"] == ["query", name], query


def test_sweep_filter_lists_only_its_members(client):
    _create(client)
    created = client.post(
        "/sweeps", json={"base": {"optimizer": "gd", "steps": 50}, "grid": {"depth": [1, 2]}}
    ).json()
    assert sorted(_ids(client, f"sweep_id={created['id']}")) == created["experiment_ids"]
    assert _ids(client, f"sweep_id={created['id']}&spec.depth=2") == created["experiment_ids"][1:]
    listed = client.get(f"/experiments?sweep_id={created['id']}").json()["data"]
    assert {run["sweep_id"] for run in listed} == {created["id"]}


def test_sort_by_summary_field_and_time_with_pagination(client, db):
    ids = [_create(client, seed=seed) for seed in range(5)]
    errors = {ids[0]: 0.5, ids[1]: 0.1, ids[2]: 0.3, ids[3]: "NaN"}  # ids[4]: no summary
    with db.begin() as connection:
        for experiment_id, error in errors.items():
            connection.execute(
                update(Experiment)
                .where(Experiment.id == experiment_id)
                .values(summary={"final_directional_error": error})
            )
    ascending = _ids(client, "sort=final_directional_error")
    assert ascending[:3] == [ids[1], ids[2], ids[0]] and ascending[-1] == ids[4]
    descending = _ids(client, "sort=-final_directional_error")
    assert descending.index(ids[0]) < descending.index(ids[2]) < descending.index(ids[1])
    assert descending[-1] == ids[4]
    assert _ids(client, "sort=-created_at") == ids[::-1]
    assert _ids(client, "sort=created_at") == ids
    pages = [_ids(client, f"sort=final_directional_error&limit=2&offset={o}") for o in (0, 2, 4)]
    assert sum(pages, []) == ascending
    page = client.get("/experiments?sort=-created_at&limit=2&offset=1").json()
    assert page["count"] == 5 and [run["id"] for run in page["data"]] == ids[::-1][1:3]
