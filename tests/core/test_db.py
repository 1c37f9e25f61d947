"""The one upsert helper, on SQLite and PostgreSQL (the `db` fixture)."""

from datetime import UTC, datetime

from sqlalchemy import insert, select

from core.db import upsert
from core.models import Checkpoint, Experiment, db_now

KEY, CONTENT = ["experiment_id"], ["step", "state", "saved_at"]


def _experiments(engine, count: int) -> list[int]:
    row = {"name": "x", "status": "running", "spec": {}, "total_steps": 1}
    with engine.begin() as connection:
        statement = insert(Experiment).returning(Experiment.id)
        return [connection.execute(statement, row).scalar_one() for _ in range(count)]


def _checkpoints(engine) -> dict[int, tuple[int, bytes]]:
    with engine.connect() as connection:
        query = select(Checkpoint.experiment_id, Checkpoint.step, Checkpoint.state)
        return {
            experiment_id: (step, state) for experiment_id, step, state in connection.execute(query)
        }


def test_upsert_of_one_row_inserts_then_replaces_it_with_sql_values(db):
    (run,) = _experiments(db, 1)
    for step in (5, 9):
        with db.begin() as connection:
            row = {"experiment_id": run, "step": step, "state": b"s%d" % step, "saved_at": db_now()}
            upsert(connection, Checkpoint, row, KEY, CONTENT)
    assert _checkpoints(db) == {run: (9, b"s9")}


def test_upsert_of_many_rows_inserts_new_keys_and_replaces_known_ones(db):
    first, second = _experiments(db, 2)
    when = datetime(2024, 1, 1, tzinfo=UTC)
    with db.begin() as connection:
        row = {"experiment_id": first, "step": 1, "state": b"a", "saved_at": when}
        upsert(connection, Checkpoint, [row], KEY, CONTENT)
    rows = [
        {"experiment_id": first, "step": 2, "state": b"b", "saved_at": when},
        {"experiment_id": second, "step": 3, "state": b"c", "saved_at": when},
    ]
    with db.begin() as connection:
        upsert(connection, Checkpoint, rows, KEY, CONTENT)
    assert _checkpoints(db) == {first: (2, b"b"), second: (3, b"c")}
