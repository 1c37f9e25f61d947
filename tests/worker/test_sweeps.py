"""Sweeps through the API and the worker: batched members, shared data, identical metrics."""

import threading

import numpy as np
import pytest

from core.settings import Settings
from core.spec import ExperimentSpec
from tests.waiting import wait_for
from worker import engine
from worker.loop import Worker


def _worker(db) -> Worker:
    return Worker(db, Settings(flush_seconds=0.05, poll_seconds=0.05))


def _read(client, experiment_id: int) -> dict:
    return client.get(f"/experiments/{experiment_id}").json()


def _series(client, experiment_id: int, name: str) -> list:
    response = client.get(f"/experiments/{experiment_id}/metrics", params={"names": name})
    return response.json()["series"][name]["values"]


def _alone(spec: dict, name: str) -> list[float]:
    values = []
    engine.run(ExperimentSpec(**spec), lambda block: values.extend(block.values[name]) or True)
    return values


def test_one_claim_runs_a_whole_sweep_as_one_group(client, db):
    grid = {"depth": [1, 2, 3, 4], "seed": [0, 1]}
    created = client.post("/sweeps", json={"base": {"steps": 300}, "grid": grid}).json()
    assert len(created["experiment_ids"]) == 8
    worker = _worker(db)
    assert worker.run_one()
    sweep = client.get(f"/sweeps/{created['id']}").json()
    assert sweep["counts"]["succeeded"] == 8 and sweep["total"] == 8
    assert not worker.run_one()


def test_member_metrics_equal_those_of_the_run_alone(client, db):
    grid = {"depth": [1, 3], "lr": [1e-3, 5e-3], "loss": ["logistic", "exponential"]}
    created = client.post("/sweeps", json={"base": {"steps": 200}, "grid": grid}).json()
    _worker(db).run_one()
    metrics = client.get(f"/sweeps/{created['id']}/metrics", params={"name": "loss"}).json()
    assert len(metrics["members"]) == 8
    for member in metrics["members"]:
        assert member["status"] == "succeeded"
        alone = _alone({"steps": 200, **member["grid_values"]}, "loss")
        assert member["values"] == alone


def test_members_that_differ_only_in_the_model_share_the_data_stream(client, db):
    grid = {"depth": [1, 2, 4], "seed": [0, 1]}
    base = {"steps": 5, "dtype": "float64"}
    created = client.post("/sweeps", json={"base": base, "grid": grid}).json()
    _worker(db).run_one()
    members = client.get(f"/sweeps/{created['id']}/metrics", params={"name": "loss"}).json()
    first_loss = {
        (m["grid_values"]["depth"], m["grid_values"]["seed"]): m["values"][0]
        for m in members["members"]
    }
    # Same w(0) = (0.6, 0.8) at every depth: the same batch gives the same loss at step 0.
    for seed in (0, 1):
        same = [first_loss[(depth, seed)] for depth in (1, 2, 4)]
        assert same == pytest.approx([same[0]] * 3, rel=1e-12)
    assert abs(first_loss[(1, 0)] - first_loss[(1, 1)]) > 1e-4


def test_members_with_different_batch_keys_run_in_separate_groups(client, db):
    grid = {"steps": [50, 60], "depth": [1, 2]}
    created = client.post("/sweeps", json={"grid": grid}).json()
    worker = _worker(db)
    assert worker.run_one()
    counts = client.get(f"/sweeps/{created['id']}").json()["counts"]
    assert counts["succeeded"] == 2 and counts["queued"] == 2
    assert worker.run_one() and not worker.run_one()


def test_deeper_members_converge_faster_at_step_4000(client, db):
    grid = {"depth": [1, 2, 3, 4]}
    created = client.post("/sweeps", json={"base": {"steps": 4000, "log_every": 100}, "grid": grid})
    _worker(db).run_one()
    members = client.get(f"/sweeps/{created.json()['id']}/metrics").json()["members"]
    at_4000 = [m["values"][m["steps"].index(4000)] for m in members]
    assert [m["grid_values"]["depth"] for m in members] == [1, 2, 3, 4]
    assert all(np.diff(at_4000) < 0), at_4000


def test_canceling_one_member_leaves_the_others_running(client, db):
    grid = {"depth": [1, 2, 3]}
    created = client.post("/sweeps", json={"base": {"steps": 200_000}, "grid": grid}).json()
    first, *others = created["experiment_ids"]
    worker = _worker(db)
    thread = threading.Thread(target=worker.run_forever)
    thread.start()
    try:
        wait_for(lambda: _read(client, first)["progress"]["step"], "the sweep's first progress")
        client.post(f"/experiments/{first}/cancel")
        wait_for(lambda: _read(client, first)["status"] == "canceled", "the member's cancel")
        for other in others:
            # Still training after the cancel: its progress moves on.
            canceled_at = _read(client, other)["progress"]["step"]
            wait_for(
                lambda o=other, s=canceled_at: _read(client, o)["progress"]["step"] > s,
                f"member {other} to move on after the cancel",
            )
            assert _read(client, other)["status"] == "running"
    finally:
        worker.stop()
        wait_for(lambda: not thread.is_alive(), "the worker to stop", timeout=60)
    for other in others:
        assert client.get(f"/experiments/{other}").json()["status"] == "queued"
