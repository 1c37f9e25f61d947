"""One settings object for the service, the worker and Alembic."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./data/dirconv.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DIRCONV_", extra="ignore")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "DIRCONV_DATABASE_URL"),
    )
    max_steps: int = Field(default=1_000_000, ge=1)
    """Upper bound on a spec's `steps`."""
    max_sweep_size: int = Field(default=4096, ge=1)
    """Most members one sweep may have."""
    max_batch: int = Field(default=1024, ge=1)
    """Most sweep members one worker trains together."""
    poll_seconds: float = Field(default=0.5, gt=0)
    """How long an idle worker sleeps between looks at the queue."""
    flush_seconds: float = Field(default=0.25, gt=0)
    """Longest a worker holds metrics before writing them (also its cancel-check period)."""
    flush_points: int = Field(default=50_000, ge=1)
    """Metric points a worker buffers before writing them regardless of time."""
    torch_threads: int = Field(default=1, ge=1)
    """Intra-op threads per worker; the networks are tiny, so one is fastest."""
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)


@lru_cache
def get_settings() -> Settings:
    return Settings()
