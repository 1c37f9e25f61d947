"""The one upsert helper, on SQLite and PostgreSQL (the `db` fixture); SQLite files' pages."""

import sqlite3
from datetime import UTC, datetime

from sqlalchemy import insert, select

from core.db import SQLITE_PAGE_SIZE, make_engine, upgrade_schema, upsert
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


def _pragma(engine, name: str) -> int | str:
    with engine.connect() as connection:
        return connection.exec_driver_sql(f"PRAGMA {name}").scalar_one()


def test_a_new_sqlite_file_gets_large_pages_and_an_old_one_keeps_its_own(tmp_path):
    new = f"sqlite:///{tmp_path / 'new.db'}"
    upgrade_schema(new)
    engine = make_engine(new)
    assert (_pragma(engine, "page_size"), _pragma(engine, "journal_mode")) == (
        SQLITE_PAGE_SIZE,
        "wal",
    )
    engine.dispose()
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as connection:  # made by an earlier release: 4 kB pages
        connection.execute("PRAGMA page_size=4096")
        connection.execute("PRAGMA journal_mode=WAL")
    upgrade_schema(f"sqlite:///{old}")
    engine = make_engine(f"sqlite:///{old}")
    assert _pragma(engine, "page_size") == 4096
    assert _experiments(engine, 2)  # and it works as before
    engine.dispose()
