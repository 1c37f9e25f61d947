"""No way in from another site, in both auth modes: JSON-only state changes (415), foreign
Origins refused (403), CORS only for DIRCONV_CORS_ORIGINS, Host checks (400) against DNS
rebinding, and security headers on the dashboard."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from core.db import make_engine, session_scope, upgrade_schema
from service import tokens
from service.main import create_app
from service.tokens import Role
from tests.tokens import bearer


@pytest.fixture
def url(tmp_path) -> str:  # noqa: ANN001
    database = f"sqlite:///{tmp_path / 'dirconv.db'}"
    upgrade_schema(database)
    return database


def _plain_client(url: str, host: str = "localhost") -> TestClient:
    """A client that sends only what each test gives it (no default Content-Type)."""
    return TestClient(create_app(url), base_url=f"http://{host}")


def _admin_header(url: str) -> dict[str, str]:
    engine = make_engine(url)
    with session_scope(engine, write=True) as session:
        _, secret = tokens.create(session, "ada", Role.ADMIN)
    engine.dispose()
    return bearer(secret)


@pytest.fixture(params=["off", "tokens"])
def guarded(request, url, settings_env) -> tuple[TestClient, dict[str, str]]:  # noqa: ANN001
    """A client and the headers that sign it in, in each auth mode."""
    settings_env(AUTH=request.param)
    headers = _admin_header(url) if request.param == "tokens" else {}
    return _plain_client(url), headers


def _count(client: TestClient, headers: dict[str, str]) -> int:
    return client.get("/experiments", headers=headers).json()["count"]


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_state_change_without_json_content_type_is_415(guarded, content_type) -> None:  # noqa: ANN001
    client, headers = guarded
    sent = {**headers, **({"Content-Type": content_type} if content_type else {})}
    created = client.post("/experiments", content=b'{"steps": 10}', headers=sent)
    assert created.status_code == 415
    assert "application/json" in created.json()["detail"]
    assert client.post("/experiments", headers=sent).status_code == 415
    assert _count(client, headers) == 0


def test_cancel_and_delete_need_json_content_type_even_without_a_body(guarded) -> None:  # noqa: ANN001
    client, headers = guarded
    json_headers = {**headers, "Content-Type": "application/json"}
    run = client.post("/experiments", json={"steps": 10}, headers=headers).json()
    assert client.post(f"/experiments/{run['id']}/cancel", headers=headers).status_code == 415
    assert client.get(f"/experiments/{run['id']}", headers=headers).json()["status"] == "queued"
    assert client.delete("/tokens/1", headers=headers).status_code == 415
    canceled = client.post(f"/experiments/{run['id']}/cancel", headers=json_headers)
    assert canceled.status_code == 202


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://localhost:1", "x"])
def test_a_state_change_from_another_origin_is_403(guarded, origin) -> None:  # noqa: ANN001
    client, headers = guarded
    refused = client.post("/experiments", json={}, headers={**headers, "Origin": origin})
    assert refused.status_code == 403
    assert "DIRCONV_CORS_ORIGINS" in refused.json()["detail"]
    assert _count(client, headers) == 0


def test_the_servers_own_origin_may_change_things(guarded) -> None:  # noqa: ANN001
    client, headers = guarded
    created = client.post(
        "/experiments", json={}, headers={**headers, "Origin": "http://localhost"}
    )
    assert created.status_code == 201


def test_reads_from_another_origin_get_no_cors_answer(guarded) -> None:  # noqa: ANN001
    client, headers = guarded
    read = client.get("/experiments", headers={**headers, "Origin": "http://evil.example"})
    assert read.status_code == 200
    assert "access-control-allow-origin" not in read.headers


def test_listed_cors_origins_may_change_things_and_get_cors_answers(url, settings_env) -> None:  # noqa: ANN001
    settings_env(CORS_ORIGINS="https://lab.example.org")
    client = _plain_client(url)
    friend = {"Origin": "https://lab.example.org"}
    created = client.post("/experiments", json={}, headers=friend)
    assert created.status_code == 201
    assert created.headers["access-control-allow-origin"] == "https://lab.example.org"
    asking = {"Access-Control-Request-Method": "POST"}
    wanted = {"Access-Control-Request-Headers": "authorization,content-type"}
    preflight = client.options("/experiments", headers={**friend, **asking, **wanted})
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["access-control-allow-methods"]
    stranger = client.options(
        "/experiments",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in stranger.headers
    assert (
        client.post("/experiments", json={}, headers={"Origin": "https://evil.example"}).status_code
        == 403
    )


@pytest.mark.parametrize(
    "host", ["localhost", "127.0.0.1", "127.0.0.2:8000", "[::1]:8000", "a.localhost"]
)
def test_with_auth_off_loopback_hosts_are_served(url, host) -> None:  # noqa: ANN001
    assert _plain_client(url, host).get("/healthz").status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "10.0.0.1", "[::2]"])
def test_with_auth_off_other_hosts_are_400(url, host) -> None:  # noqa: ANN001
    client = _plain_client(url, host)
    refused = client.get("/experiments")
    assert refused.status_code == 400
    assert "DIRCONV_ALLOWED_HOSTS" in refused.json()["detail"]
    assert client.post("/experiments", json={}).status_code == 400
    assert _plain_client(url).get("/experiments").json()["count"] == 0


def test_allowed_hosts_add_names_with_auth_off(url, settings_env) -> None:  # noqa: ANN001
    settings_env(ALLOWED_HOSTS="dirconv.lab,10.0.0.1")
    assert _plain_client(url, "dirconv.lab:8000").get("/healthz").status_code == 200
    assert _plain_client(url, "10.0.0.1").get("/healthz").status_code == 200
    assert _plain_client(url, "evil.example").get("/healthz").status_code == 400


def test_with_auth_on_any_host_is_served_unless_allowed_hosts_is_set(url, settings_env) -> None:  # noqa: ANN001
    settings_env(AUTH="tokens")
    assert _plain_client(url, "dirconv.lab").get("/healthz").status_code == 200
    settings_env(AUTH="tokens", ALLOWED_HOSTS="dirconv.lab")
    assert _plain_client(url, "dirconv.lab").get("/healthz").status_code == 200
    assert _plain_client(url, "other.lab").get("/healthz").status_code == 400


def test_the_dashboard_sends_security_headers(url) -> None:  # noqa: ANN001
    page = _plain_client(url).get("/")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "http" not in policy  # no outside source
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    asset = _plain_client(url).get("/ui/app.js")
    assert asset.headers["content-security-policy"] == policy


def test_the_docs_page_has_a_policy_with_no_outside_source_either(url) -> None:  # noqa: ANN001
    policy = _plain_client(url).get("/docs").headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "http" not in policy and "*" not in policy
