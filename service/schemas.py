"""API response schemas (the request schema is `core.spec.ExperimentSpec`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.spec import StorableName


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


class MetricDefinition(BaseModel):
    """One metric a run may log (core/metrics.py): `scale` is how to chart its values."""

    name: str
    description: str
    scale: Literal["log", "linear"]
    optimizers: list[str]


class MetricDefinitionList(BaseModel):
    data: list[MetricDefinition]


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


class SweepCreate(BaseModel):
    """The body of `POST /sweeps`: members are `base` with each combination of `grid` values."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: StorableName | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The sweep's name (1-200 characters); default `sweep-<id>`.",
        examples=["depths"],
    )
    base: dict[str, Any] = Field(
        default_factory=dict,
        description="An experiment spec (the body of POST /experiments) every member shares.",
        examples=[{"steps": 20000, "tags": ["paper"]}],
    )
    grid: dict[str, list[Any]] = Field(
        min_length=1,
        description="Spec field to its values; one member per combination, each validated "
        "like POST /experiments before any is queued.",
        examples=[{"depth": [1, 2, 3, 4]}],
    )


class SweepCreated(BaseModel):
    id: int
    experiment_ids: list[int]


class SweepRead(BaseModel):
    id: int
    name: str
    base: dict
    grid: dict
    created_at: datetime
    experiment_ids: list[int]
    total: int
    counts: dict[str, int]


class SweepList(BaseModel):
    data: list[SweepRead]
    count: int


class SweepMember(BaseModel):
    """Documents the response; it is written by `service.exports.dumps`."""

    experiment_id: int
    status: str
    grid_values: dict
    steps: list[int]
    values: list[float]


class SweepMetrics(BaseModel):
    sweep_id: int
    name: str
    members: list[SweepMember]


class TheoryRead(BaseModel):
    """The population gradient flow (t = lr x step) from the run's initial end-to-end vector."""

    model_config = ConfigDict(ser_json_inf_nan="strings")

    experiment_id: int
    steps: list[int]
    directional_error: list[float]
    complete: bool
    """False if the flow turned too stiff to follow to the last step in the time allowed."""
