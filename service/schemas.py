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


class CompareRun(BaseModel):
    """One experiment's series in a compare answer (non-finite values as in `Series`)."""

    model_config = ConfigDict(ser_json_inf_nan="strings")

    experiment_id: int
    steps: list[int]
    values: list[float]


class CompareRead(BaseModel):
    """One metric of many runs, in the order asked; ids that name no experiment are in
    `missing`, and a known run without points has empty lists."""

    name: str
    runs: list[CompareRun]
    missing: list[int]


class Health(BaseModel):
    status: str
