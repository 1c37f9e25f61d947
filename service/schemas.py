"""API response schemas (the request schema is `service.spec.ExperimentSpec`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class Progress(BaseModel):
    step: int
    total_steps: int


class ExperimentRead(BaseModel):
    id: int
    name: str
    tags: list[str]
    status: str
    spec: dict
    progress: Progress
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    summary: dict | None
    attempts: int
    """Claims that counted against DIRCONV_MAX_ATTEMPTS (a graceful worker stop does not)."""


class ExperimentList(BaseModel):
    data: list[ExperimentRead]
    count: int


class Series(BaseModel):
    """One metric's points. Non-finite values are sent as "NaN", "Infinity", "-Infinity"."""

    model_config = ConfigDict(ser_json_inf_nan="strings")

    steps: list[int]
    values: list[float]


class MetricsRead(BaseModel):
    experiment_id: int
    series: dict[str, Series]


class WorkerRead(BaseModel):
    id: str
    host: str
    pid: int
    device: str
    started_at: datetime
    last_heartbeat: datetime
    experiment_id: int | None
    """The run it is training now, if any."""


class WorkerList(BaseModel):
    data: list[WorkerRead]
    count: int


class Health(BaseModel):
    status: str
