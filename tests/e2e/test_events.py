"""GET /experiments/{id}/events read by the Python client from a real API and worker."""

from __future__ import annotations

import httpx
import pytest

from dirconv.client import ApiError, Client
from tests.e2e.stack import Stack

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_client_follows_a_run_to_its_end_and_gets_every_point_once(stack: Stack):
    stack.start_api()
    stack.start("worker")
    with Client(stack.url) as client:
        run = client.submit(depth=2, steps=20_000, log_every=5, optimizer="gd")
        events = list(client.events(run["id"], names=["directional_error"]))
        assert events[0]["event"] == "status"
        assert events[-1]["event"] == "status" and events[-1]["data"]["status"] == "succeeded"
        assert events[-1]["data"]["finished_at"] is not None
        progress = [event["data"] for event in events if event["event"] == "progress"]
        assert progress and progress[-1]["total_steps"] == 20_000
        steps = [step for p in progress for step in p["points"]["directional_error"]["steps"]]
        stored = client.metrics(run["id"], ["directional_error"])["directional_error"][0]
        assert steps == stored.tolist() == list(range(0, 20_001, 5))
        statuses = [event["data"]["status"] for event in events if event["event"] == "status"]
        assert statuses[-1] == "succeeded" and len(statuses) == len(set(statuses))


@SQLITE_ONLY
def test_an_open_stream_holds_no_database_slot(stack: Stack):
    stack.env["DIRCONV_DB_CONCURRENCY"] = "1"
    stack.start_api()  # no worker: the run stays queued and its stream open
    with Client(stack.url) as client:
        run = client.submit(steps=100)
        stream = client.events(run["id"])
        first = next(stream)
        assert first["event"] == "status" and first["data"]["status"] == "queued"
        assert next(stream)["event"] == "progress"
        # With the only slot held by the stream this would wait and answer 503.
        for _ in range(5):
            assert httpx.get(f"{stack.url}/experiments", timeout=30).status_code == 200
        client.cancel(run["id"])
        rest = list(stream)
        assert rest[-1]["event"] == "status" and rest[-1]["data"]["status"] == "canceled"
        with pytest.raises(ApiError) as missing:
            next(client.events(999_999))
        assert missing.value.status_code == 404


@SQLITE_ONLY
def test_client_resumes_closed_streams_without_losing_or_repeating_points(stack: Stack):
    stack.env["DIRCONV_EVENTS_MAX_SECONDS"] = "1"
    stack.start_api()
    with Client(stack.url) as client:
        run = client.submit(depth=2, steps=20_000, log_every=5, optimizer="gd")
        stream = client.events(run["id"], names=["directional_error"])
        seen = []
        while sum(event["event"] == "status" for event in seen) < 2:  # one reconnect at least
            seen.append(next(stream))
        stack.start("worker")
        seen += list(stream)
        assert seen[-1]["data"]["status"] == "succeeded"
        progress = [event["data"] for event in seen if event["event"] == "progress"]
        steps = [step for p in progress for step in p["points"]["directional_error"]["steps"]]
        assert steps == list(range(0, 20_001, 5))


@SQLITE_ONLY
def test_a_foreign_last_event_id_or_metric_is_refused_by_name(stack: Stack):
    stack.start_api()
    run = httpx.post(f"{stack.url}/experiments", json={"steps": 100}).json()
    for bad in ["depth=3", "directional_error=x", "directional_error=99999999999999999999"]:
        refused = httpx.get(
            f"{stack.url}/experiments/{run['id']}/events", headers={"Last-Event-ID": bad}
        )
        assert refused.status_code == 422, bad
        assert refused.json()["detail"][0]["loc"] == ["header", "Last-Event-ID"]
    refused = httpx.get(f"{stack.url}/experiments/{run['id']}/events?names=directional_error,x")
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["query", "names"]
