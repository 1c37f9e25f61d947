"""Shared fixtures: a database migrated with Alembic (a temporary SQLite file, or a fresh
PostgreSQL database for the session), and an API client on it.

Every test that asks for `database_url`, `db` or `client` runs once per backend. PostgreSQL is
the local one (`.ci/run` starts it): DIRCONV_TEST_POSTGRES_URL names a database to connect to
for creating the test databases.

Every test that uses PostgreSQL gets it through `postgres_url` (one migrated database per
session) or `scratch_postgres_url` (an empty one per test). Where PostgreSQL does not answer,
those tests skip, or fail when DIRCONV_TEST_REQUIRE names `postgres` (`.ci/run` sets it): the
policy of tests/prerequisites.py, which also ends the run with one line on what was skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import make_url

from core.db import make_engine, upgrade_schema
from core.models import Base
from core.settings import get_settings
from service.main import create_app
from tests import prerequisites

POSTGRES_URL = os.environ.get(
    "DIRCONV_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", "postgresql"]
JSON_HEADERS = {"Content-Type": "application/json"}
TABLES = ", ".join(table.name for table in Base.metadata.sorted_tables)


def pytest_configure(config: pytest.Config) -> None:
    prerequisites.required()  # an unknown name in DIRCONV_TEST_REQUIRE stops the run here


FIRST = ("tests/e2e/", "tests/browser/")
"""Test files that start processes and run longest: collected first, so that on several
processes (`make test`) they start early and the many short files fill the end."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.startswith(FIRST))  # a stable sort


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    prerequisites.count_skip(report)


def pytest_unconfigure(config: pytest.Config) -> None:
    # After pytest's own summary, so that this is the run's last line.
    line = prerequisites.closing_line()
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if line and reporter is not None:
        reporter.write_line(line, yellow=True, bold=True)


def _admin_connection() -> psycopg.Connection:
    """A connection for creating and dropping test databases, under the policy above."""
    try:
        return _connect_admin()
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0][:200]
        prerequisites.missing("postgres", f"{POSTGRES_URL.split('@')[-1]}: {reason}")


def _connect_admin() -> psycopg.Connection:
    url = make_url(POSTGRES_URL)
    return psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=True,
        connect_timeout=5,
    )


@contextmanager
def _fresh_postgres(prefix: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped when the block ends."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with _admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with _connect_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of its own for this test session, migrated, dropped at the end."""
    with _fresh_postgres("dirconv_test") as url:
        upgrade_schema(url)
        yield url


@pytest.fixture
def scratch_postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database (no schema) for this test alone, dropped afterwards."""
    with _fresh_postgres("dirconv_scratch") as url:
        yield url


def _empty_postgres(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("SET LOCAL lock_timeout = '20s'")
        connection.exec_driver_sql(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database at the newest schema, on each backend in turn."""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        _empty_postgres(url)
        return url
    url = f"sqlite:///{tmp_path / 'dirconv.db'}"
    upgrade_schema(url)
    return url


@pytest.fixture
def db(database_url: str):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with api_client(create_app(database_url)) as test_client:
        yield test_client


def api_client(app: FastAPI) -> TestClient:
    """A client as a same-site caller: a loopback Host, and JSON content type on every request
    (state-changing requests need it even without a body)."""
    return TestClient(app, base_url="http://localhost", headers=JSON_HEADERS)


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch):
    """Set DIRCONV_ settings for this test: `settings_env(MAX_RUN_POINTS=1000)`; the cached
    settings are rebuilt now and again after the test."""

    def set_settings(**values: object) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"DIRCONV_{name}", str(value))
        get_settings.cache_clear()

    yield set_settings
    monkeypatch.undo()
    get_settings.cache_clear()
