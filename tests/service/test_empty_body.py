"""A POST that reads a body refuses a request without one (422 naming the body); `{}` is a
body, and for an experiment it means every default."""

from __future__ import annotations

import pytest

JSON = {"content-type": "application/json"}


def _count(client) -> int:
    return client.get("/experiments").json()["count"]


@pytest.mark.parametrize("path", ["/experiments", "/sweeps"])
@pytest.mark.parametrize("content", [None, b"", b"null"])
def test_post_without_a_body_is_refused_and_nothing_is_stored(client, path, content):
    response = client.post(path, content=content, headers=JSON)
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [["body"]]
    assert _count(client) == 0
    assert client.get("/sweeps").json()["count"] == 0


def test_missing_body_message_says_what_to_send(client):
    response = client.post("/experiments", headers=JSON)
    assert "JSON body is required" in response.json()["detail"][0]["msg"]


def test_empty_object_is_every_default(client):
    response = client.post("/experiments", json={})
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["steps"] == 20_000
    assert _count(client) == 1
