"""Revision 0002 carries per-point metric rows into packed chunks, and back."""

import math

from sqlalchemy import text

from alembic import command
from service import metric_store
from service.db import alembic_config, make_engine


def test_upgrade_packs_existing_points_and_downgrade_restores_them(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0001")
    engine = make_engine(url)
    points = [(s, 1.0 / (s + 1)) for s in range(0, 9000, 3)] + [(9001, None), (9002, math.inf)]
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO experiments (id, name, status, spec, total_steps, progress_step,"
                " created_at, cancel_requested, attempts)"
                " VALUES (1, 'old', 'succeeded', '{}', 9002, 9002, '2026-01-01', 0, 1)"
            )
        )
        connection.execute(
            text("INSERT INTO metric_points VALUES (1, 'loss', :step, :value)"),
            [{"step": s, "value": v} for s, v in points],
        )
    command.upgrade(config, "head")
    with engine.connect() as connection:
        series = metric_store.read_series(connection, 1, "loss")
        assert metric_store.count_points(connection, 1) == len(points)
    assert series.steps.tolist() == [s for s, _ in points]
    assert series.values[:-2].tolist() == [v for _, v in points[:-2]]
    assert math.isnan(series.values[-2]) and series.values[-1] == math.inf

    command.downgrade(config, "0001")
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT step, value FROM metric_points ORDER BY step")).all()
    assert [tuple(row) for row in rows] == points
    engine.dispose()
