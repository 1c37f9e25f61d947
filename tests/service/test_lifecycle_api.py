"""Editing, archiving, restoring and rerunning runs over the API, on both databases."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from core import lifecycle, metric_store
from core.models import Experiment


def _create(client, **spec) -> dict:
    response = client.post("/experiments", json={"optimizer": "gd", "steps": 50, **spec})
    assert response.status_code == 201, response.text
    return response.json()


def _listed(client, query: str = "") -> list[int]:
    return [run["id"] for run in client.get(f"/experiments?{query}").json()["data"]]


def test_patch_renames_retags_and_annotates(client):
    run = _create(client, name="first", tags=["a", "b"])
    changed = client.patch(
        f"/experiments/{run['id']}", json={"name": "renamed", "tags": ["c"], "notes": "looks off"}
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["name"], body["tags"], body["notes"]) == ("renamed", ["c"], "looks off")
    assert body["spec"] == run["spec"]
    again = client.get(f"/experiments/{run['id']}").json()
    assert (again["name"], again["tags"], again["notes"]) == ("renamed", ["c"], "looks off")
    assert _listed(client, "tag=c") == [run["id"]] and _listed(client, "tag=a") == []
    only_notes = client.patch(f"/experiments/{run['id']}", json={"notes": ""}).json()
    assert (only_notes["name"], only_notes["tags"], only_notes["notes"]) == ("renamed", ["c"], "")


def test_patch_refuses_spec_and_unknown_fields_and_long_notes(client):
    run = _create(client, name="kept")
    for body, field in [
        ({"depth": 4}, "depth"),
        ({"name": "x", "lr": 0.1}, "lr"),
        ({"colour": "red"}, "colour"),
        ({"notes": "n" * 10_001}, "notes"),
        ({"tags": [""]}, "tags"),
        ({"name": ""}, "name"),
    ]:
        refused = client.patch(f"/experiments/{run['id']}", json=body)
        assert refused.status_code == 422, body
        assert refused.json()["detail"][0]["loc"][:2] == ["body", field]
    assert client.get(f"/experiments/{run['id']}").json()["name"] == "kept"
    assert client.patch("/experiments/999999", json={"name": "x"}).status_code == 404


def test_archive_hides_a_run_until_restored(client, db):
    kept, archived = _create(client), _create(client)
    with db.begin() as connection:
        steps = np.arange(10)
        for run in (kept, archived):
            metric_store.write_points(
                connection, run["id"], {"directional_error": (steps, steps + 1.0)}
            )
    response = client.delete(f"/experiments/{archived['id']}")
    assert response.status_code == 204 and response.content == b""
    assert _listed(client) == [kept["id"]]
    assert _listed(client, "archived=true") == [archived["id"], kept["id"]]
    read = client.get(f"/experiments/{archived['id']}").json()
    assert read["archived"] is True and read["status"] == "canceled"  # it was queued
    ids = f"{kept['id']},{archived['id']}"
    aggregate = client.get(f"/metrics/aggregate?ids={ids}").json()
    assert aggregate["ids"] == [kept["id"]] and aggregate["missing"] == [archived["id"]]
    aggregate = client.get(f"/metrics/aggregate?ids={ids}&archived=true").json()
    assert aggregate["ids"] == [kept["id"], archived["id"]] and aggregate["n"][0] == 2
    compare = client.get(f"/metrics/compare?ids={ids}").json()
    assert [r["experiment_id"] for r in compare["runs"]] == [kept["id"]]
    restored = client.post(f"/experiments/{archived['id']}/restore")
    assert restored.status_code == 200 and restored.json()["archived"] is False
    assert sorted(_listed(client)) == sorted([kept["id"], archived["id"]])


def test_archiving_a_running_run_asks_its_worker_to_stop(client, db):
    run = _create(client)
    claimed = lifecycle.claim_next(db, "worker-1")
    assert claimed is not None and claimed.id == run["id"]
    assert client.delete(f"/experiments/{run['id']}").status_code == 204
    with db.connect() as connection:
        row = connection.execute(
            select(Experiment.archived, Experiment.cancel_requested, Experiment.status).where(
                Experiment.id == run["id"]
            )
        ).one()
    assert tuple(row) == (True, True, "running")
    assert client.delete("/experiments/999999").status_code == 404


def test_rerun_queues_the_same_spec_once_per_idempotency_key(client):
    run = _create(client, name="original", depth=2, seed=7)
    client.post(f"/experiments/{run['id']}/cancel")
    headers = {"Idempotency-Key": "rerun-1"}
    first = client.post(f"/experiments/{run['id']}/rerun", headers=headers)
    assert first.status_code == 201, first.text
    again = client.post(f"/experiments/{run['id']}/rerun", headers=headers)
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    rerun = first.json()
    assert rerun["id"] != run["id"] and rerun["status"] == "queued"
    assert rerun["spec"] == run["spec"]
    other = client.post(f"/experiments/{_create(client)['id']}/rerun", headers=headers)
    assert other.status_code == 422  # the key was used for another run's rerun
    assert client.post("/experiments/999999/rerun").status_code == 404


def test_every_run_read_carries_its_times(client, db):
    run = _create(client)
    assert run["started_at"] is None and run["duration_seconds"] is None
    lifecycle.claim_next(db, "worker-1")
    running = client.get(f"/experiments/{run['id']}").json()
    assert running["started_at"] is not None and running["duration_seconds"] >= 0
    assert running["finished_at"] is None
