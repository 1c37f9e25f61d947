"""Whatever a client sends, the answer is a 4xx naming the field (or 404), never a 5xx, and a
4xx echoes only a short prefix of the input."""

from __future__ import annotations

import json

import pytest

JSON = {"content-type": "application/json"}


def _raw(client, path: str, body: bytes):
    return client.post(path, content=body, headers=JSON)


def _fields(response) -> list[list]:
    assert response.status_code == 422, response.text
    return [error["loc"] for error in response.json()["detail"]]


@pytest.mark.parametrize("scale", [5e-324, 1e-200, 9.9e-13])
def test_balanced_init_scale_below_the_flow_range_is_refused(client, scale: float) -> None:
    response = client.post("/experiments", json={"init": "balanced", "init_scale": scale})
    assert _fields(response) == [["body", "init_scale"]]


def test_smallest_allowed_init_scale_has_a_theory_curve(client) -> None:
    created = client.post("/experiments", json={"init": "balanced", "init_scale": 1e-12})
    assert created.status_code == 201, created.text
    theory = client.get(f"/experiments/{created.json()['id']}/theory", params={"max_points": 5})
    assert theory.status_code == 200, theory.text


@pytest.mark.parametrize(
    "teacher", [[1.7e308, 1.7e308], [-1.7e308, 1.7e308], [5e-324, 5e-324], [5e-324, 0.0]]
)
def test_extreme_teacher_is_stored_as_a_unit_vector(client, teacher: list[float]) -> None:
    created = client.post("/experiments", json={"teacher": teacher})
    assert created.status_code == 201, created.text
    stored = created.json()["spec"]["teacher"]
    assert sum(x * x for x in stored) == pytest.approx(1.0)
    assert [x > 0 for x in stored if x] == [x > 0 for x in teacher if x]
    theory = client.get(f"/experiments/{created.json()['id']}/theory", params={"max_points": 5})
    assert theory.status_code == 200, theory.text


def test_init_vector_too_large_to_measure_is_refused(client) -> None:
    response = client.post("/experiments", json={"init_vector": [1.7e308, 1.7e308]})
    assert _fields(response) == [["body", "init_vector"]]


@pytest.mark.parametrize(
    "body",
    [b'{"name": "\\ud800"}', b'{"tags": ["ok", "\\udfff"]}', b'{"name": "a\\u0000b"}'],
)
def test_unstorable_text_in_a_spec_is_refused_as_json(client, body: bytes) -> None:
    response = _raw(client, "/experiments", body)
    assert _fields(response)[0][1] in ("name", "tags")


def test_unstorable_sweep_name_is_refused(client) -> None:
    for name in ("a\x00b", "\ud800"):
        body = json.dumps({"name": name, "grid": {"seed": [1]}}).encode()
        assert _fields(_raw(client, "/sweeps", body)) == [["body", "name"]]


def test_nul_in_tag_filter_is_refused(client) -> None:
    assert _fields(client.get("/experiments", params={"tag": "a\x00b"})) == [["query", "tag"]]


@pytest.mark.parametrize("resource", ["experiments", "sweeps"])
@pytest.mark.parametrize("ident", [0, 2**31, 2**63, 2**70])
def test_ids_beyond_the_id_column_are_not_found(client, resource: str, ident: int) -> None:
    assert client.get(f"/{resource}/{ident}").status_code == 404


def test_dashboard_path_with_nul_is_not_found(client) -> None:
    assert client.get("/ui/index.html%00.js").status_code == 404


@pytest.mark.parametrize(
    "body",
    [b'{"name": ', b'{"name": "\xff\xfe"}', b"[" * 100_000, b"\xef\xbb\xbf\xff"],
    ids=["truncated", "bad-utf8", "too-deep", "bad-utf8-after-bom"],
)
def test_unparsable_body_is_422_json_invalid(client, body: bytes) -> None:
    response = _raw(client, "/experiments", body)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["type"] == "json_invalid" and error["loc"][0] == "body"


def test_422_echoes_only_a_prefix_of_the_input(client) -> None:
    cases = [
        {"name": "x" * 500_000},
        {"teacher": ["a"] * 5_000},
        {"tags": [[[[[[[[["deep"]]]]]]]]]},
    ]
    for body in cases:
        response = client.post("/experiments", json=body)
        assert response.status_code == 422
        assert len(response.content) < 40_000, len(response.content)
    deep = client.post("/experiments", json=cases[2]).json()["detail"][0]["input"]
    assert "deep" not in json.dumps(deep)


def test_openapi_documents_each_error_status(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"404", "409", "413", "422", "503"} <= set(
        paths["/experiments/{experiment_id}/cancel"]["post"]["responses"]
    )
    assert {"413", "422", "503"} <= set(paths["/sweeps"]["post"]["responses"])
    assert "404" in paths["/sweeps/{sweep_id}/metrics"]["get"]["responses"]
