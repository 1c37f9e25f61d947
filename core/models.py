"""ORM models shared by the service and the worker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    inspect,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from core.status import FINISHED, Status

STATUSES = tuple(status.value for status in Status)
FINISHED_STATUSES = tuple(status.value for status in Status if status in FINISHED)


def utcnow() -> datetime:
    return datetime.now(UTC)


class db_now(ColumnElement[datetime]):  # noqa: N801 (reads as the function it stands for)
    """The database's clock, `seconds_ago` in the past, as SQL.

    Leases compare heartbeats written by many hosts: one clock (the database's) makes them
    immune to skew between those hosts.
    """

    inherit_cache = True
    _traverse_internals = [("seconds_ago", InternalTraversal.dp_plain_obj)]

    def __init__(self, seconds_ago: float = 0.0) -> None:
        self.seconds_ago = float(seconds_ago)
        self.type = UTCDateTime()


@compiles(db_now, "sqlite")
def _db_now_sqlite(element: db_now, _compiler: Any, **_kw: Any) -> str:
    # The text format SQLAlchemy stores SQLite datetimes in, so comparisons are lexical.
    return f"strftime('%Y-%m-%d %H:%M:%f000', 'now', '-{_seconds(element)} seconds')"


@compiles(db_now)
def _db_now_default(element: db_now, _compiler: Any, **_kw: Any) -> str:
    return f"(now() - interval '{_seconds(element)} seconds')"


def _seconds(element: db_now) -> str:
    # Fixed-point: neither database reads an exponent ("1e-06 seconds") in an interval.
    return f"{element.seconds_ago:.6f}"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


_INTEGER_BITS = {SmallInteger: 16, Integer: 32, BigInteger: 64}
"""Signed width of each integer column type (PostgreSQL's; SQLite stores any of them in 64)."""


def key_range(model: type[Base]) -> range:
    """The ids `model`'s integer primary key can hold: from 1 up to its type's largest.
    PostgreSQL refuses a larger value outright rather than find no row."""
    (column,) = inspect(model).primary_key
    bits = next(_INTEGER_BITS[kind] for kind in type(column.type).__mro__ if kind in _INTEGER_BITS)
    return range(1, 2 ** (bits - 1))


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True, default=Status.QUEUED.value)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    total_steps: Mapped[int] = mapped_column(Integer)
    progress_step: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker_id: Mapped[str | None] = mapped_column(String(200), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sweep_id: Mapped[int | None] = mapped_column(
        ForeignKey("sweeps.id", ondelete="CASCADE"), index=True
    )
    grid_values: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    batch_key: Mapped[str | None] = mapped_column(String(32))
    owner: Mapped[str | None] = mapped_column(String(100), index=True)
    """The user whose token created the run; None when auth was off."""

    tag_rows: Mapped[list[ExperimentTag]] = relationship(
        order_by="ExperimentTag.position", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def tags(self) -> list[str]:
        return [row.tag for row in self.tag_rows]


class Sweep(Base):
    """A cartesian grid of specs; its members are experiments with `sweep_id` set."""

    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    base: Mapped[dict[str, Any]] = mapped_column(JSON)
    grid: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    owner: Mapped[str | None] = mapped_column(String(100), index=True)


class ExperimentTag(Base):
    __tablename__ = "experiment_tags"

    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), index=True)


class MetricChunk(Base):
    """Up to CHUNK_STEPS consecutive steps of one metric, packed (see core/metric_store/).

    `offsets_u16` holds each logged step minus `chunk * CHUNK_STEPS` as little-endian uint16,
    ascending; `values_f64` the matching values as little-endian float64 (NaN and infinities kept).
    The sketch columns hold the same for a subset: in each SKETCH_STEPS-wide slice of the chunk,
    the first, last, smallest and largest point (what downsampled reads of long ranges need).
    """

    __tablename__ = "metric_chunks"

    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    chunk: Mapped[int] = mapped_column(Integer, primary_key=True)
    n_points: Mapped[int] = mapped_column(Integer)
    sketch_offsets_u16: Mapped[bytes] = mapped_column(LargeBinary)
    sketch_values_f64: Mapped[bytes] = mapped_column(LargeBinary)
    offsets_u16: Mapped[bytes] = mapped_column(LargeBinary)
    values_f64: Mapped[bytes] = mapped_column(LargeBinary)


class WorkerRow(Base):
    """A worker process that has registered and sends heartbeats; its job is the running
    experiment whose `worker_id` is this row's id."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_heartbeat: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Claim(Base):
    """One claim of an experiment by a worker: the queue's audit log."""

    __tablename__ = "claims"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), index=True
    )
    worker_id: Mapped[str] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer)
    resumed_from_step: Mapped[int] = mapped_column(Integer)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Checkpoint(Base):
    """The newest resumable state of a run: every metric below `step` is stored with it."""

    __tablename__ = "checkpoints"

    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    step: Mapped[int] = mapped_column(Integer)
    state: Mapped[bytes] = mapped_column(LargeBinary)
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IdempotencyKey(Base):
    """The first answer to a POST that carried an `Idempotency-Key`: a retry with the same
    key and body gets it again instead of creating anything."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_digest: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Token(Base):
    """An API token: only the SHA-256 of its secret is kept (the secret is shown once)."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user: Mapped[str] = mapped_column(String(100), index=True)
    role: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
