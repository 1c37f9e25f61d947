"""Per-user quotas (active runs, stored points) on both databases, and the per-token rate
limit: each past its limit is a 429 with Retry-After naming the limit, and stores nothing."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from core import cost, metric_store
from core.db import session_scope
from core.models import Experiment
from core.spec import ExperimentSpec
from service import tokens
from service.main import create_app
from service.tokens import Role
from tests.conftest import api_client
from tests.tokens import bearer

SMALL = {"steps": 10}


def _tokens(db, *users: str) -> dict[str, dict[str, str]]:  # noqa: ANN001
    with session_scope(db, write=True) as session:
        made = {user: tokens.create(session, user, Role.MEMBER)[1] for user in users}
    return {user: bearer(secret) for user, secret in made.items()}


@pytest.fixture
def auth_client(database_url: str, settings_env) -> Iterator[TestClient]:  # noqa: ANN001
    settings_env(AUTH="tokens")
    with api_client(create_app(database_url)) as client:
        yield client


def _run_count(db) -> int:  # noqa: ANN001
    with db.connect() as connection:
        return connection.scalar(select(func.count()).select_from(Experiment)) or 0


def _assert_over(answer, limit: str) -> None:  # noqa: ANN001
    assert answer.status_code == 429, answer.text
    assert int(answer.headers["Retry-After"]) >= 1
    assert answer.json()["limit"] == limit
    assert limit in answer.json()["detail"]


def test_active_runs_past_the_quota_are_429_per_user(settings_env, db, database_url) -> None:  # noqa: ANN001
    settings_env(AUTH="tokens", MAX_ACTIVE_RUNS=2)
    headers = _tokens(db, "max", "olga")
    with api_client(create_app(database_url)) as client:
        first = client.post("/experiments", json=SMALL, headers=headers["max"]).json()["id"]
        assert client.post("/experiments", json=SMALL, headers=headers["max"]).status_code == 201
        _assert_over(
            client.post("/experiments", json=SMALL, headers=headers["max"]),
            "DIRCONV_MAX_ACTIVE_RUNS",
        )
        sweep = {"base": SMALL, "grid": {"seed": [1]}}
        _assert_over(
            client.post("/sweeps", json=sweep, headers=headers["max"]), "DIRCONV_MAX_ACTIVE_RUNS"
        )
        assert _run_count(db) == 2
        assert client.post("/experiments", json=SMALL, headers=headers["olga"]).status_code == 201
        client.post(f"/experiments/{first}/cancel", headers=headers["max"])
        assert client.post("/experiments", json=SMALL, headers=headers["max"]).status_code == 201


def test_a_sweep_counts_every_member_against_the_active_quota(
    settings_env, db, database_url
) -> None:  # noqa: ANN001
    settings_env(AUTH="tokens", MAX_ACTIVE_RUNS=3)
    headers = _tokens(db, "max")
    with api_client(create_app(database_url)) as client:
        sweep = {"base": SMALL, "grid": {"seed": [1, 2, 3, 4]}}
        _assert_over(
            client.post("/sweeps", json=sweep, headers=headers["max"]), "DIRCONV_MAX_ACTIVE_RUNS"
        )
        assert client.get("/sweeps", headers=headers["max"]).json()["count"] == 0
        assert _run_count(db) == 0


def test_with_auth_off_the_active_quota_counts_all_runs_together(
    settings_env, database_url, db
) -> None:  # noqa: ANN001
    settings_env(MAX_ACTIVE_RUNS=1)
    with api_client(create_app(database_url)) as client:
        assert client.post("/experiments", json=SMALL).status_code == 201
        _assert_over(client.post("/experiments", json=SMALL), "DIRCONV_MAX_ACTIVE_RUNS")
    assert _run_count(db) == 1


def _store_points(db, experiment_id: int, steps: int) -> None:  # noqa: ANN001
    points = np.arange(steps + 1)
    series = {name: (points, np.ones(len(points))) for name in ("loss", "norm")}
    with db.begin() as connection:
        metric_store.write_points(connection, experiment_id, series)


def test_stored_points_past_the_quota_are_429_per_user(settings_env, db, database_url) -> None:  # noqa: ANN001
    run = {"steps": 100}
    planned = cost.stored_points(ExperimentSpec(**run))
    settings_env(AUTH="tokens", MAX_USER_POINTS=2 * planned + 100)
    headers = _tokens(db, "max", "olga")
    with api_client(create_app(database_url)) as client:
        first = client.post("/experiments", json=run, headers=headers["max"]).json()["id"]
        _store_points(db, first, planned)  # 2 x (planned + 1) points: no room for another
        _assert_over(
            client.post("/experiments", json=run, headers=headers["max"]),
            "DIRCONV_MAX_USER_POINTS",
        )
        assert _run_count(db) == 1
        assert client.post("/experiments", json=run, headers=headers["olga"]).status_code == 201


def test_the_rate_limit_is_per_token_and_answers_429(settings_env, db, database_url) -> None:  # noqa: ANN001
    # A window of 300 s: the burst is spent long before any of it could refill.
    settings_env(AUTH="tokens", RATE_LIMIT=0.01, RATE_BURST=3)
    headers = _tokens(db, "max", "olga")
    with api_client(create_app(database_url)) as client:
        for _ in range(3):
            assert client.get("/me", headers=headers["max"]).status_code == 200
        refused = client.post("/experiments", json=SMALL, headers=headers["max"])
        _assert_over(refused, "DIRCONV_RATE_LIMIT")
        assert int(refused.headers["Retry-After"]) <= 300
        assert _run_count(db) == 0
        assert client.get("/me", headers=headers["olga"]).status_code == 200
        assert client.get("/healthz").status_code == 200


def test_with_auth_off_no_rate_limit_applies(settings_env, database_url) -> None:  # noqa: ANN001
    settings_env(RATE_LIMIT=0.01, RATE_BURST=1)
    with api_client(create_app(database_url)) as client:
        assert all(client.get("/experiments").status_code == 200 for _ in range(5))


def test_429_is_in_the_schema_of_protected_routes(auth_client) -> None:  # noqa: ANN001
    schema = auth_client.get("/openapi.json").json()
    post = schema["paths"]["/experiments"]["post"]["responses"]
    assert {"401", "403", "429", "415"} <= set(post)
    assert "limit" in schema["components"]["schemas"]["LimitMessage"]["properties"]


def test_concurrent_submissions_cannot_pass_the_active_quota_together(
    settings_env,
    db,
    database_url,  # noqa: ANN001
) -> None:
    settings_env(AUTH="tokens", MAX_ACTIVE_RUNS=3)
    headers = _tokens(db, "max")["max"]
    with api_client(create_app(database_url)) as client, ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda _: client.post("/experiments", json=SMALL, headers=headers).status_code,
                range(12),
            )
        )
    assert sorted(answers) == [201] * 3 + [429] * 9
    assert _run_count(db) == 3
