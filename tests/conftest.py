"""Shared fixtures: a real SQLite file migrated with Alembic, and an API client on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.db import make_engine, upgrade_schema
from service.main import create_app


@pytest.fixture
def database_url(tmp_path: Path) -> str:
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
    with TestClient(create_app(database_url)) as test_client:
        yield test_client
