"""Auth over the API, on both databases: the role x route matrix (every route of the app),
unusable tokens, owners, the HTTP token lifecycle and the auth modes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import update

from core.db import session_scope
from core.models import Token, utcnow
from service import tokens
from service.api.auth import resolve_mode
from service.main import create_app
from service.tokens import Role
from tests.conftest import api_client
from tests.tokens import bearer

OPEN = "open"
ROUTES = {
    ("GET", "/healthz"): OPEN,
    ("GET", "/"): OPEN,
    ("GET", "/ui/{path:path}"): OPEN,
    # The schema and the (offline) docs page: the schema is public and the dashboard reads it
    # before anyone signs in.
    ("GET", "/openapi.json"): OPEN,
    ("GET", "/docs"): OPEN,
    ("GET", "/me"): Role.READER,
    ("GET", "/experiments"): Role.READER,
    ("GET", "/experiments/{experiment_id}"): Role.READER,
    ("GET", "/experiments/{experiment_id}/metrics"): Role.READER,
    ("GET", "/experiments/{experiment_id}/metrics.csv"): Role.READER,
    ("GET", "/experiments/{experiment_id}/metrics.parquet"): Role.READER,
    ("GET", "/experiments/{experiment_id}/theory"): Role.READER,
    ("GET", "/experiments/{experiment_id}/events"): Role.READER,
    ("GET", "/metrics/aggregate"): Role.READER,
    ("GET", "/sweeps/{sweep_id}/aggregate"): Role.READER,
    ("GET", "/metrics/compare"): Role.READER,
    ("GET", "/metrics/definitions"): Role.READER,
    ("GET", "/sweeps"): Role.READER,
    ("GET", "/sweeps/{sweep_id}"): Role.READER,
    ("GET", "/sweeps/{sweep_id}/metrics"): Role.READER,
    ("GET", "/workers"): Role.READER,
    ("POST", "/experiments"): Role.MEMBER,
    ("POST", "/experiments/{experiment_id}/cancel"): Role.MEMBER,
    ("PATCH", "/experiments/{experiment_id}"): Role.MEMBER,
    ("POST", "/experiments/{experiment_id}/rerun"): Role.MEMBER,
    ("DELETE", "/experiments/{experiment_id}"): Role.MEMBER,
    ("POST", "/experiments/{experiment_id}/restore"): Role.MEMBER,
    ("POST", "/sweeps"): Role.MEMBER,
    ("POST", "/sweeps/{sweep_id}/cancel"): Role.MEMBER,
    ("GET", "/tokens"): Role.ADMIN,
    ("POST", "/tokens"): Role.ADMIN,
    ("DELETE", "/tokens/{token_id}"): Role.ADMIN,
}
"""The least role each route needs. A route missing here fails the matrix test: every new
route needs a decision."""
BODIES = {
    "/experiments": {"steps": 10},
    "/sweeps": {"base": {"steps": 10}, "grid": {"seed": [1]}},
    "/tokens": {"user": "carol", "role": "reader"},
}
QUERIES = {"/metrics/compare": "?ids=1", "/metrics/aggregate": "?ids=1&name=directional_error"}
RANK = {OPEN: -1, Role.READER: 0, Role.MEMBER: 1, Role.ADMIN: 2}


@dataclass
class Secrets:
    reader: str
    member: str
    admin: str
    other_member: str
    revoked: str
    expired: str


@pytest.fixture
def auth_app(database_url: str, db, settings_env) -> Iterator[tuple[TestClient, Secrets]]:  # noqa: ANN001
    """An API with DIRCONV_AUTH=tokens and a token of each kind."""
    # An event stream of a run no worker takes ends soon instead of after minutes.
    settings_env(AUTH="tokens", EVENTS_MAX_SECONDS="0.1")
    with session_scope(db, write=True) as session:
        made = {
            name: tokens.create(session, user, role)
            for name, user, role in [
                ("reader", "rita", Role.READER),
                ("member", "max", Role.MEMBER),
                ("admin", "ada", Role.ADMIN),
                ("other_member", "olga", Role.MEMBER),
                ("revoked", "max", Role.ADMIN),
                ("expired", "max", Role.ADMIN),
            ]
        }
        tokens.revoke(session, token_id=made["revoked"][0].id)
        made["expired"][0].expires_at = utcnow() - timedelta(seconds=1)
    with api_client(create_app(database_url)) as client:
        yield client, Secrets(**{name: secret for name, (_, secret) in made.items()})


def _route_keys(client: TestClient) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, however its routers are nested."""
    return {
        (method, route.path)
        for route in iter_route_contexts(client.app.routes)
        for method in (getattr(route, "methods", None) or set()) - {"HEAD"}
    }


def _concrete(path: str, ids: dict[str, int]) -> str:
    for name, value in ids.items():
        path = path.replace("{" + name + "}", str(value))
    return path.replace("{path:path}", "app.js") + QUERIES.get(path, "")


def _call(client: TestClient, method: str, path: str, secret: str | None):  # noqa: ANN202
    headers = bearer(secret) if secret else {}
    body = BODIES.get(path) if method == "POST" else None
    return client.request(method, path, json=body, headers=headers)


def test_every_route_has_a_decision_and_every_role_gets_it(auth_app) -> None:  # noqa: ANN001
    client, secrets = auth_app
    assert _route_keys(client) == set(ROUTES), "a route without a decision in ROUTES"
    member = bearer(secrets.member)
    ids = {
        "experiment_id": client.post("/experiments", json={"steps": 10}, headers=member).json()[
            "id"
        ],
        "sweep_id": client.post("/sweeps", json=BODIES["/sweeps"], headers=member).json()["id"],
    }
    roles = {Role.READER: secrets.reader, Role.MEMBER: secrets.member, Role.ADMIN: secrets.admin}
    for (method, template), least in ROUTES.items():
        spare = client.post("/tokens", json=BODIES["/tokens"], headers=bearer(secrets.admin))
        ids["token_id"] = spare.json()["id"]
        path = _concrete(template, ids)
        for secret in (None, secrets.revoked, secrets.expired):
            answer = _call(client, method, path, secret)
            if least == OPEN:
                assert answer.status_code < 400, (method, path, answer.text)
            else:
                assert answer.status_code == 401, (method, path, answer.text)
                assert answer.headers["WWW-Authenticate"] == "Bearer"
        for role, secret in roles.items():
            answer = _call(client, method, path, secret)
            if RANK[role] < RANK[least]:
                assert answer.status_code == 403, (method, path, role, answer.text)
            else:
                assert answer.status_code not in (401, 403), (method, path, role, answer.text)


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic abc", "Bearer a b", "bearer nosuchtoken", "Token x"],
)
def test_a_missing_or_unusable_authorization_is_401_with_a_challenge(auth_app, header) -> None:  # noqa: ANN001
    client, _ = auth_app
    headers = {} if header is None else {"Authorization": header}
    answer = client.get("/experiments", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert answer.json()["detail"]


def test_revoked_and_expired_tokens_say_why(auth_app) -> None:  # noqa: ANN001
    client, secrets = auth_app
    assert client.get("/me", headers=bearer(secrets.revoked)).json() == {"detail": "token revoked"}
    assert client.get("/me", headers=bearer(secrets.expired)).json() == {"detail": "token expired"}


def test_healthz_needs_no_token(auth_app) -> None:  # noqa: ANN001
    client, _ = auth_app
    assert client.get("/healthz").json() == {"status": "ok"}


def test_me_names_the_user_and_role(auth_app) -> None:  # noqa: ANN001
    client, secrets = auth_app
    assert client.get("/me", headers=bearer(secrets.member)).json() == {
        "user": "max",
        "role": "member",
    }


def test_runs_and_sweeps_record_their_owner(auth_app) -> None:  # noqa: ANN001
    client, secrets = auth_app
    run = client.post("/experiments", json={"steps": 10}, headers=bearer(secrets.member)).json()
    assert run["owner"] == "max"
    sweep = client.post("/sweeps", json=BODIES["/sweeps"], headers=bearer(secrets.other_member))
    (member_id,) = sweep.json()["experiment_ids"]
    reader = bearer(secrets.reader)
    assert client.get(f"/sweeps/{sweep.json()['id']}", headers=reader).json()["owner"] == "olga"
    assert client.get(f"/experiments/{member_id}", headers=reader).json()["owner"] == "olga"
    owned = client.get("/experiments?owner=olga", headers=reader).json()
    assert [row["id"] for row in owned["data"]] == [member_id] and owned["count"] == 1
    assert client.get("/experiments?owner=nobody", headers=reader).json()["count"] == 0


def test_a_member_cannot_cancel_another_users_run_and_nothing_changes(auth_app) -> None:  # noqa: ANN001
    client, secrets = auth_app
    run = client.post("/experiments", json={"steps": 10}, headers=bearer(secrets.member)).json()
    refused = client.post(f"/experiments/{run['id']}/cancel", headers=bearer(secrets.other_member))
    assert refused.status_code == 403
    assert "max" in refused.json()["detail"]
    after = client.get(f"/experiments/{run['id']}", headers=bearer(secrets.reader)).json()
    assert after["status"] == "queued"


def test_members_cancel_their_own_runs_and_admins_anyones(auth_app) -> None:  # noqa: ANN001
    client, secrets = auth_app
    member = bearer(secrets.member)
    mine = client.post("/experiments", json={"steps": 10}, headers=member).json()["id"]
    theirs = client.post("/experiments", json={"steps": 10}, headers=member).json()["id"]
    canceled = client.post(f"/experiments/{mine}/cancel", headers=member)
    assert canceled.status_code == 202 and canceled.json()["status"] == "canceled"
    by_admin = client.post(f"/experiments/{theirs}/cancel", headers=bearer(secrets.admin))
    assert by_admin.status_code == 202 and by_admin.json()["status"] == "canceled"


def test_sweeps_are_canceled_by_their_owner_or_an_admin(auth_app) -> None:  # noqa: ANN001
    client, secrets = auth_app
    sweep = {"base": {"steps": 10}, "grid": {"seed": [1, 2]}}
    created = client.post("/sweeps", json=sweep, headers=bearer(secrets.member)).json()
    path = f"/sweeps/{created['id']}/cancel"
    assert client.post(path, headers=bearer(secrets.other_member)).status_code == 403
    reader = bearer(secrets.reader)
    assert client.get(f"/sweeps/{created['id']}", headers=reader).json()["counts"]["queued"] == 2
    canceled = client.post(path, headers=bearer(secrets.member))
    assert canceled.status_code == 202 and canceled.json()["counts"]["canceled"] == 2
    assert client.post(path, headers=bearer(secrets.admin)).status_code == 409


def test_token_lifecycle_over_http(auth_app) -> None:  # noqa: ANN001
    client, secrets = auth_app
    admin = bearer(secrets.admin)
    body = {"user": "dan", "role": "member", "expires_days": 2}
    created = client.post("/tokens", json=body, headers=admin)
    assert created.status_code == 201
    token = created.json()
    assert token["token"].startswith("dirconv_") and token["expires_at"] is not None
    assert client.get("/me", headers=bearer(token["token"])).json()["user"] == "dan"
    listed = client.get("/tokens", headers=admin).json()
    assert token["id"] in [row["id"] for row in listed["data"]]
    assert all("token" not in row and "secret_hash" not in row for row in listed["data"])
    delete = client.delete(f"/tokens/{token['id']}", headers=admin)
    assert delete.status_code == 204
    assert client.get("/me", headers=bearer(token["token"])).status_code == 401
    assert client.delete(f"/tokens/{token['id']}", headers=admin).status_code == 204
    assert client.delete("/tokens/999999", headers=admin).status_code == 404


def test_only_a_hash_of_a_token_is_stored(auth_app, db) -> None:  # noqa: ANN001
    client, secrets = auth_app
    body = {"user": "eve", "role": "reader"}
    created = client.post("/tokens", json=body, headers=bearer(secrets.admin)).json()
    with db.connect() as connection:
        rows = connection.execute(Token.__table__.select()).mappings().all()
    stored = " ".join(str(value) for row in rows for value in row.values())
    assert created["token"] not in stored
    assert tokens.secret_hash(created["token"]) in stored


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user": "a b", "role": "reader"}, "user"),
        ({"user": "x", "role": "root"}, "role"),
        ({"user": "x", "role": "reader", "expires_days": 0}, "expires_days"),
        ({"role": "reader"}, "user"),
    ],
)
def test_a_bad_token_request_is_422_naming_the_field(auth_app, body, field) -> None:  # noqa: ANN001
    client, secrets = auth_app
    answer = client.post("/tokens", json=body, headers=bearer(secrets.admin))
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", field]


def test_a_token_that_expires_is_refused_from_then_on(auth_app, db) -> None:  # noqa: ANN001
    client, secrets = auth_app
    assert client.get("/me", headers=bearer(secrets.reader)).status_code == 200
    with db.begin() as connection:
        connection.execute(
            update(Token).where(Token.user == "rita").values(expires_at=utcnow() - timedelta(1))
        )
    assert client.get("/me", headers=bearer(secrets.reader)).status_code == 401


def test_with_auth_off_everyone_is_an_anonymous_admin_and_runs_have_no_owner(client) -> None:  # noqa: ANN001
    assert client.get("/me").json() == {"user": None, "role": "admin"}
    run = client.post("/experiments", json={"steps": 10}).json()
    assert run["owner"] is None
    assert client.post(f"/experiments/{run['id']}/cancel").status_code == 202


@pytest.mark.parametrize(
    ("configured", "host", "mode"),
    [
        (None, "127.0.0.1", "off"),
        (None, "::1", "off"),
        (None, "localhost", "off"),
        (None, None, "off"),
        (None, "0.0.0.0", "tokens"),
        (None, "::", "tokens"),
        (None, "192.168.1.5", "tokens"),
        ("tokens", "127.0.0.1", "tokens"),
        ("off", "0.0.0.0", "off"),
    ],
)
def test_the_mode_follows_the_listen_address_unless_set(
    settings_env, configured, host, mode
) -> None:  # noqa: ANN001
    if configured is not None:
        settings_env(AUTH=configured)
    assert resolve_mode(host) == mode


def test_auth_off_on_a_network_address_warns_at_start(settings_env, caplog, tmp_path) -> None:  # noqa: ANN001
    settings_env(AUTH="off")
    with caplog.at_level(logging.WARNING, logger="dirconv.auth"):
        create_app(f"sqlite:///{tmp_path / 'a.db'}", listen_host="0.0.0.0")
    assert "DIRCONV_AUTH=off on a non-loopback address" in caplog.text
