"""Engines, sessions and schema upgrades; SQLite is configured here, once."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic.config import Config
from sqlalchemy import Connection, Engine, Insert, Table, create_engine, event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from alembic import command
from core.settings import get_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
IMMEDIATE = {"sqlite_begin": "IMMEDIATE"}
"""Execution options for a transaction that will write: on SQLite it takes the write lock at
BEGIN, so a read-then-write never fails with SQLITE_BUSY_SNAPSHOT; other backends ignore it."""
SQLITE_PAGE_SIZE = 16_384
"""Page size of a new SQLite file (an existing one keeps its own). A metric chunk row holds
up to ~45 kB, and with 4 kB pages a worker's writes spent a third more CPU on page handling
(64-member sweep: 0.40 s of writer CPU at 4 kB, 0.26-0.28 s at 16 or 32 kB); reads are as
fast."""
POOL_OVERFLOW = 10
"""Connections beyond DIRCONV_DB_CONCURRENCY, for threads outside the request gate (streamed
exports, a worker's heartbeat)."""


def make_engine(url: str | None = None) -> Engine:
    """An engine for `url` (default: the settings' DATABASE_URL)."""
    url = url or get_settings().database_url
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **_pool_sizes())
    _ensure_sqlite_directory(url)
    pool = _pool_sizes() if _is_file(url) else {}
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool)
    _configure_sqlite(engine)
    return engine


def _pool_sizes() -> dict[str, Any]:
    """One connection per request the API admits at once (DIRCONV_DB_CONCURRENCY), a few more
    for threads outside that gate (a worker's heartbeat); a checkout waits as long as a
    request may queue."""
    settings = get_settings()
    return {
        "pool_size": settings.db_concurrency,
        "max_overflow": POOL_OVERFLOW,
        "pool_timeout": settings.db_wait_seconds,
    }


def _is_file(url: str) -> bool:
    database = make_url(url).database
    return (
        database is not None
        and database not in ("", ":memory:")
        and not database.startswith("file:")
    )


def _ensure_sqlite_directory(url: str) -> None:
    database = make_url(url).database
    if database is not None and _is_file(url):
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(engine: Engine) -> None:
    busy_timeout_ms = get_settings().sqlite_busy_timeout_ms

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # Only takes effect while the file is still empty, so it must come before WAL mode.
        cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "")
        connection.exec_driver_sql(f"BEGIN {mode}".strip())


def write_connection(engine: Engine) -> Connection:
    """A connection whose next transaction takes SQLite's write lock at BEGIN."""
    return engine.connect().execution_options(**IMMEDIATE)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine, *, write: bool = False) -> Iterator[Session]:
    """A session that commits on success, rolls back on error, and always closes."""
    bind = engine.execution_options(**IMMEDIATE) if write else engine
    session = Session(bind=bind, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def upsert(
    connection: Connection,
    table: Table | type[DeclarativeBase],
    rows: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    key_columns: Sequence[str],
    update_columns: Sequence[str],
) -> None:
    """INSERT ... ON CONFLICT (key_columns) DO UPDATE SET update_columns to the new row's, on
    SQLite and PostgreSQL alike. `table` is a Table or a mapped class; `rows` is one row, whose
    values may be SQL expressions (`db_now()`), or a list of rows of plain values, sent as one
    batch of a statement built once per (dialect, table, columns)."""
    statement = _upsert_statement(
        connection.dialect.name, table, tuple(key_columns), tuple(update_columns)
    )
    if isinstance(rows, Mapping):
        connection.execute(statement.values(**rows))
    else:
        connection.execute(statement, list(rows))


@functools.cache
def _upsert_statement(
    dialect: str,
    table: Table | type[DeclarativeBase],
    key_columns: tuple[str, ...],
    update_columns: tuple[str, ...],
) -> Insert:
    if dialect == "postgresql":
        pg = postgresql.insert(table)
        return pg.on_conflict_do_update(
            index_elements=list(key_columns),
            set_={column: pg.excluded[column] for column in update_columns},
        )
    if dialect == "sqlite":
        lite = sqlite.insert(table)
        return lite.on_conflict_do_update(
            index_elements=list(key_columns),
            set_={column: lite.excluded[column] for column in update_columns},
        )
    raise NotImplementedError(f"upsert: unsupported database {dialect}")


def alembic_config(url: str | None = None) -> Config:
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "alembic"))
    # configparser interpolates "%", which URL-encoded passwords contain.
    config.set_main_option(
        "sqlalchemy.url", (url or get_settings().database_url).replace("%", "%%")
    )
    # Programmatic upgrades leave the caller's logging alone.
    config.attributes["skip_logging_config"] = True
    return config


def upgrade_schema(url: str | None = None) -> None:
    """Bring the database at `url` to the newest schema."""
    url = url or get_settings().database_url
    if make_url(url).get_backend_name() == "sqlite":
        _ensure_sqlite_directory(url)
    command.upgrade(alembic_config(url), "head")
