"""Migrations: 0002 carries per-point metric rows into packed chunks (and back), and the
schema goes down to the first revision and up again on each backend."""

import math

import pytest
from sqlalchemy import inspect, text

from alembic import command
from core import metric_store
from core.db import alembic_config, make_engine, upgrade_schema

POINTS = [(s, 1.0 / (s + 1)) for s in range(0, 9000, 3)] + [(9001, None), (9002, math.inf)]


@pytest.fixture(params=["sqlite", "postgresql"])
def old_url(request, tmp_path):
    """A database at revision 0001 holding one experiment with per-point metric rows."""
    if request.param == "sqlite":
        yield from _at_0001(f"sqlite:///{tmp_path / 'old.db'}")
    else:
        yield from _at_0001(request.getfixturevalue("scratch_postgres_url"))


def _at_0001(url: str):
    command.upgrade(alembic_config(url), "0001")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO experiments (id, name, status, spec, total_steps, progress_step,"
                " created_at, cancel_requested, attempts)"
                " VALUES (1, 'old', 'succeeded', '{}', 9002, 9002, '2026-01-01', false, 1)"
            )
        )
        connection.execute(
            text("INSERT INTO metric_points VALUES (1, 'loss', :step, :value)"),
            [{"step": s, "value": v} for s, v in POINTS],
        )
    engine.dispose()
    yield url


def test_upgrade_packs_existing_points_and_downgrade_restores_them(old_url):
    config = alembic_config(old_url)
    command.upgrade(config, "head")
    engine = make_engine(old_url)
    with engine.connect() as connection:
        series = metric_store.read_series(connection, 1, "loss")
        assert metric_store.count_points(connection, 1) == len(POINTS)
    assert series.steps.tolist() == [s for s, _ in POINTS]
    assert series.values[:-2].tolist() == [v for _, v in POINTS[:-2]]
    assert math.isnan(series.values[-2]) and series.values[-1] == math.inf

    command.downgrade(config, "0001")
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT step, value FROM metric_points ORDER BY step"))
        assert [tuple(row) for row in rows] == POINTS
    engine.dispose()


NEW_TABLES = {"metric_chunks", "workers", "claims", "checkpoints", "sweeps"}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_go_down_and_up_again(database_url):
    assert _tables(database_url) >= NEW_TABLES
    command.downgrade(alembic_config(database_url), "0001")
    assert not NEW_TABLES & _tables(database_url)
    upgrade_schema(database_url)
    assert _tables(database_url) >= NEW_TABLES
