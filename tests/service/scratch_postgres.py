"""A scratch PostgreSQL database per test, created and dropped, for tests that must also
hold on PostgreSQL; skips where none answers."""

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

POSTGRES_ADMIN_URL = os.environ.get(
    "DIRCONV_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def scratch_postgres_url() -> Iterator[str]:
    """Yield the URL of a fresh database, dropped afterwards; pytest.skip if none answers."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"dirconv_store_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError:
        admin.dispose()
        pytest.skip("no PostgreSQL at DIRCONV_TEST_POSTGRES_URL")
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
