"""One settings object for the service, the worker and Alembic."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./data/dirconv.db"
HEARTBEAT_SECONDS = 2.0
LEASE_SECONDS = 15.0
MAX_ATTEMPTS = 3
CHECKPOINT_SECONDS = 5.0
BLOCK_SECONDS = 0.1
MAX_BODY_BYTES = 1_048_576
DB_CONCURRENCY = 4
DB_WAIT_SECONDS = 5.0
MAX_ACTIVE_RUNS = 10_000
MAX_USER_POINTS = 2_000_000_000
RATE_LIMIT_PER_SECOND = 50.0
RATE_BURST = 100
MAX_COMPARE_IDS = 1000
MAX_LIST_FILTER = 10_000
MAX_PAGE_SIZE = 1000
MAX_TOKEN_DAYS = 36_500
MAX_DOWNSAMPLE_POINTS = 10_000_000
MAX_THEORY_POINTS = 100_000
TOKEN_DAYS_CEILING = 2_000_000
"""Bound on DIRCONV_MAX_TOKEN_DAYS itself: today plus more days than this passes year 9999,
which a datetime cannot hold."""


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), not all the machine has."""
    return len(os.sched_getaffinity(0))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DIRCONV_", extra="ignore")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "DIRCONV_DATABASE_URL"),
    )
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, ge=1)
    """Largest request body the API reads; a longer one gets 413 before it is parsed."""
    max_steps: int = Field(default=1_000_000, ge=1)
    """Upper bound on a spec's `steps`."""
    max_sweep_size: int = Field(default=4096, ge=1)
    """Most members one sweep may have."""
    max_batch: int = Field(default=1024, ge=1)
    """Most sweep members one worker trains together."""
    max_run_bytes: int = Field(default=1 << 30, ge=1)
    """Most worker memory one run (or one group of sweep members) may need, estimated at submit."""
    max_run_points: int = Field(default=20_000_000, ge=1)
    """Most metric points one run may store."""
    max_sweep_points: int = Field(default=200_000_000, ge=1)
    """Most metric points all members of one sweep may store together."""
    max_read_points: int = Field(default=2_000_000, ge=1)
    """Most points one JSON metrics answer may hold (CSV and Parquet exports stream instead)."""
    max_aggregate_points: int = Field(default=50_000_000, ge=1)
    """Most stored points one aggregate (GET /metrics/aggregate, /sweeps/{id}/aggregate) reads."""
    max_notes_chars: int = Field(default=10_000, ge=1)
    """Longest `notes` a run may carry (PATCH /experiments/{id}); longer gets 422."""
    max_compare_ids: int = Field(default=MAX_COMPARE_IDS, ge=1)
    """Most experiment ids one GET /metrics/compare or /metrics/aggregate may name."""
    max_list_filter: int = Field(default=MAX_LIST_FILTER, ge=1)
    """Most elements a list-valued `spec.<field>=[...]` filter of GET /experiments may hold."""
    max_page_size: int = Field(default=MAX_PAGE_SIZE, ge=1)
    """Largest `limit` (rows per page) of GET /experiments and GET /sweeps."""
    max_downsample_points: int = Field(default=MAX_DOWNSAMPLE_POINTS, ge=2)
    """Largest `max_points` a metrics read (a run's metrics, compare, aggregate, a sweep's
    metrics or aggregate) may ask for: the downsampling buckets are sized by it."""
    max_theory_points: int = Field(default=MAX_THEORY_POINTS, ge=2)
    """Largest `max_points` of GET /experiments/{id}/theory: the flow is integrated to that
    many steps."""
    max_token_days: int = Field(default=MAX_TOKEN_DAYS, ge=1, le=TOKEN_DAYS_CEILING)
    """Longest lifetime, in days, a new token may be given (POST /tokens, the tokens CLI)."""
    events_seconds: float = Field(default=0.5, gt=0, le=1)
    """How often an open event stream (GET /experiments/{id}/events) reads its run."""
    events_max_seconds: float = Field(default=300.0, gt=0)
    """Longest one event stream stays open; then it closes and the client reconnects with
    Last-Event-ID, so that no connection lives forever."""
    event_points: int = Field(default=10_000, ge=4)
    """Most points of one metric one event carries; more new points are downsampled (M4)."""
    max_arrow_read_points: int = Field(default=10_000_000, ge=1)
    """Most points one Arrow metrics answer may hold (about 25 bytes each in the API)."""
    max_theory_jobs: int = Field(default=2, ge=1)
    """Theory curves the API integrates at once; past it, one not yet computed gets 503."""
    idempotency_hours: float = Field(default=24.0, gt=0)
    """How long an Idempotency-Key keeps answering with its first response."""
    poll_seconds: float = Field(default=0.5, gt=0)
    """How long an idle worker sleeps between looks at the queue."""
    flush_seconds: float = Field(default=0.25, gt=0)
    """How often a worker checks for cancels and lost leases; also the longest it holds
    metrics before writing them, unless its writes are slow (`writer_share`)."""
    flush_points: int = Field(default=4_000_000, ge=1)
    """Metric points a worker buffers before writing them regardless of time."""
    writer_share: float = Field(default=0.1, gt=0, le=1)
    """Most of its time a worker's writer thread spends writing: after a write that took t
    seconds, the next begins t / writer_share after it began, if that is later than
    `flush_seconds` (but within worker.loop.MAX_FLUSH_SECONDS); cancels are still checked
    every `flush_seconds`."""
    torch_threads: int = Field(default=1, ge=1)
    """Intra-op threads per worker; the networks are tiny, so one is fastest."""
    threads: int = Field(default_factory=usable_cores, ge=1)
    """Threads a worker steps one group's members on (members split by data stream)."""
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)
    """Longest a SQLite statement waits for another writer's lock before failing (API: 503)."""
    db_concurrency: int = Field(default=DB_CONCURRENCY, ge=1)
    """Requests one API process lets use the database at once (its pool holds as many
    connections); the others queue without a thread."""
    db_wait_seconds: float = Field(default=DB_WAIT_SECONDS, gt=0)
    """Longest a request queues for its turn at the database before a 503 with Retry-After."""
    heartbeat_seconds: float = Field(default=HEARTBEAT_SECONDS, gt=0)
    """How often a worker tells the database it is alive."""
    lease_seconds: float = Field(default=LEASE_SECONDS, gt=0)
    """Silence after which a worker counts as dead and its running job goes back to the queue."""
    max_attempts: int = Field(default=MAX_ATTEMPTS, ge=1)
    """Claims a run may use up by losing its worker; then it fails."""
    checkpoint_seconds: float = Field(default=CHECKPOINT_SECONDS, ge=0)
    """Longest a worker runs between checkpoints (each is written with a metric flush)."""
    block_seconds: float = Field(default=BLOCK_SECONDS, gt=0)
    """Time a worker aims to spend on one block of steps; between blocks it flushes metrics,
    checks for cancels and checkpoints. A block never has fewer than one step."""
    auth: Literal["tokens", "off"] | None = None
    """`tokens`: every request but /healthz needs a bearer token. Unset: `tokens` when the API
    listens on a non-loopback address, `off` on loopback."""
    max_active_runs: int = Field(default=MAX_ACTIVE_RUNS, ge=1)
    """Most queued plus running runs one user may have (all runs together with auth off)."""
    max_user_points: int = Field(default=MAX_USER_POINTS, ge=1)
    """Most metric points one user's runs may store, counting a new run's planned points."""
    rate_limit: float = Field(default=RATE_LIMIT_PER_SECOND, gt=0)
    """Requests per second one token may make on average (no limit with auth off)."""
    rate_burst: int = Field(default=RATE_BURST, ge=1)
    """Most requests one token may make at once: DIRCONV_RATE_BURST in any window of
    burst / rate seconds."""
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Origins (`https://host:port`) besides the server's own that may make state-changing
    requests and get CORS answers; a JSON list or comma-separated."""
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Host names the API answers besides loopback ones; with auth off, any other `Host` is
    a 400 (DNS rebinding), with auth on only when this is set. A JSON list or comma-separated."""

    @field_validator("cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _json_or_comma_list(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if value.strip().startswith("["):
            return json.loads(value)
        return [item.strip() for item in value.split(",") if item.strip()]

    @model_validator(mode="after")
    def _heartbeats_fit_in_the_lease(self) -> Settings:
        # Otherwise every live worker would look dead between two of its heartbeats.
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError(
                "DIRCONV_HEARTBEAT_SECONDS must be below DIRCONV_LEASE_SECONDS "
                f"({self.heartbeat_seconds} >= {self.lease_seconds})"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
