"""Limits that are DIRCONV_ settings: each set low here, and a request past it is a 422 naming
the field (and the setting), while one at it passes; both databases."""

from __future__ import annotations

import pytest

from service.__main__ import main as service_main


def _refused(response, field: str, setting: str) -> None:  # noqa: ANN001
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"][-1] == field
    assert setting in error["msg"]


def _create_runs(client, count: int) -> list[int]:  # noqa: ANN001
    created = [client.post("/experiments", json={"steps": 10}) for _ in range(count)]
    assert all(response.status_code == 201 for response in created)
    return [response.json()["id"] for response in created]


@pytest.mark.parametrize("path", ["/metrics/compare", "/metrics/aggregate"])
def test_ids_past_max_compare_ids_are_refused_naming_ids(client, settings_env, path) -> None:  # noqa: ANN001
    settings_env(MAX_COMPARE_IDS=3)
    assert client.get(path, params={"ids": "1,2,3"}).status_code == 200
    _refused(client.get(path, params={"ids": "1,2,3,4"}), "ids", "DIRCONV_MAX_COMPARE_IDS")


def test_a_list_filter_past_max_list_filter_is_refused_naming_it(client, settings_env) -> None:  # noqa: ANN001
    settings_env(MAX_LIST_FILTER=2)
    assert client.get("/experiments", params={"spec.teacher": "[0, 1]"}).status_code == 200
    refused = client.get("/experiments", params={"spec.teacher": "[0, 0, 1]"})
    _refused(refused, "spec.teacher", "DIRCONV_MAX_LIST_FILTER")


@pytest.mark.parametrize("path", ["/experiments", "/sweeps"])
def test_a_page_past_max_page_size_is_refused_naming_limit(client, settings_env, path) -> None:  # noqa: ANN001
    settings_env(MAX_PAGE_SIZE=5)
    assert client.get(path, params={"limit": 5}).status_code == 200
    _refused(client.get(path, params={"limit": 6}), "limit", "DIRCONV_MAX_PAGE_SIZE")


def test_the_default_page_gives_way_to_a_smaller_max_page_size(client, settings_env) -> None:  # noqa: ANN001
    settings_env(MAX_PAGE_SIZE=3)
    _create_runs(client, 4)
    listed = client.get("/experiments")
    assert listed.status_code == 200
    assert len(listed.json()["data"]) == 3 and listed.json()["count"] == 4


def test_the_openapi_schema_declares_max_page_size(client, settings_env) -> None:  # noqa: ANN001
    settings_env(MAX_PAGE_SIZE=7)
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/experiments", "/sweeps"):
        (limit,) = [p for p in paths[path]["get"]["parameters"] if p["name"] == "limit"]
        assert limit["schema"]["maximum"] == 7


def test_a_token_past_max_token_days_is_refused_naming_expires_days(client, settings_env) -> None:  # noqa: ANN001
    settings_env(MAX_TOKEN_DAYS=7)
    body = {"user": "dan", "role": "reader", "expires_days": 7}
    assert client.post("/tokens", json=body).status_code == 201
    refused = client.post("/tokens", json={**body, "expires_days": 8})
    _refused(refused, "expires_days", "DIRCONV_MAX_TOKEN_DAYS")


def test_the_tokens_cli_refuses_days_past_max_token_days(settings_env, capsys) -> None:  # noqa: ANN001
    settings_env(MAX_TOKEN_DAYS=7)
    argv = ["tokens", "create", "--user", "dan", "--role", "reader", "--expires-days", "8"]
    with pytest.raises(SystemExit) as exited:
        service_main(argv)
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "--expires-days" in error and "DIRCONV_MAX_TOKEN_DAYS" in error


@pytest.mark.parametrize(
    "path",
    [
        "/experiments/1/metrics",
        "/metrics/compare?ids=1",
        "/metrics/aggregate?ids=1",
        "/sweeps/1/metrics",
        "/sweeps/1/aggregate",
    ],
)
def test_max_points_past_max_downsample_points_is_refused(client, settings_env, path) -> None:  # noqa: ANN001
    settings_env(MAX_DOWNSAMPLE_POINTS=10)
    joiner = "&" if "?" in path else "?"
    refused = client.get(f"{path}{joiner}max_points=11")
    _refused(refused, "max_points", "DIRCONV_MAX_DOWNSAMPLE_POINTS")


def test_theory_points_are_held_to_max_theory_points(client, settings_env) -> None:  # noqa: ANN001
    settings_env(MAX_THEORY_POINTS=10)
    (run,) = _create_runs(client, 1)
    refused = client.get(f"/experiments/{run}/theory", params={"max_points": 11})
    _refused(refused, "max_points", "DIRCONV_MAX_THEORY_POINTS")
    default = client.get(f"/experiments/{run}/theory")  # the default, 500, gives way to the cap
    assert default.status_code == 200, default.text
    assert 2 <= len(default.json()["steps"]) <= 10
