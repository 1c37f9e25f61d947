"""Safe retries: an Idempotency-Key makes a POST create once and answer the same ever after."""

from __future__ import annotations

import pytest

KEY = {"Idempotency-Key": "0b5f6d0e-retry-me"}


def _count(client) -> int:  # noqa: ANN001
    return client.get("/experiments").json()["count"]


def test_the_same_key_and_body_return_the_first_answer_and_create_nothing(client):
    first = client.post("/experiments", json={"depth": 2, "steps": 10}, headers=KEY)
    reordered = b'{ "steps": 10,  "depth": 2 }'
    again = client.post(
        "/experiments",
        content=reordered,
        headers={**KEY, "Content-Type": "application/json"},
    )
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert _count(client) == 1


def test_the_same_key_with_another_body_is_refused_naming_the_header(client):
    client.post("/experiments", json={"depth": 2}, headers=KEY)
    response = client.post("/experiments", json={"depth": 3}, headers=KEY)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["header", "Idempotency-Key"]
    assert _count(client) == 1


def test_requests_without_a_key_create_every_time(client):
    client.post("/experiments", json={"depth": 2})
    client.post("/experiments", json={"depth": 2})
    assert _count(client) == 2


def test_a_sweep_is_created_once_per_key(client):
    body = {"base": {"steps": 10}, "grid": {"depth": [1, 2]}}
    first = client.post("/sweeps", json=body, headers=KEY)
    again = client.post("/sweeps", json=body, headers=KEY)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert _count(client) == 2
    # Keys are per endpoint: the same key on /experiments is a new request there.
    assert client.post("/experiments", json={}, headers=KEY).status_code == 201


def test_a_refused_request_does_not_use_up_its_key(client):
    assert client.post("/experiments", json={"depth": 0}, headers=KEY).status_code == 422
    assert client.post("/experiments", json={"depth": 2}, headers=KEY).status_code == 201


def test_an_expired_key_creates_again(client, settings_env):
    settings_env(IDEMPOTENCY_HOURS=1e-9)
    first = client.post("/experiments", json={"depth": 2}, headers=KEY).json()
    second = client.post("/experiments", json={"depth": 2}, headers=KEY).json()
    assert second["id"] != first["id"]


@pytest.mark.parametrize("key", [b"", b"has space", b"x" * 201, "caf\u00e9".encode()])
def test_a_malformed_key_is_refused(client, key):
    response = client.post("/experiments", json={}, headers={"Idempotency-Key": key})
    assert response.status_code == 422
    assert _count(client) == 0
