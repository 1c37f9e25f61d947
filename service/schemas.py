"""API response schemas (the request schema is `core.spec.ExperimentSpec`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.settings import get_settings
from core.spec import StorableName, clean_tags, is_storable_text
from service.tokens import USER_PATTERN


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
    duration_seconds: float | None = None
    """From start to finish, or to now while running; null before a run starts."""
    archived: bool = False
    notes: str = ""
    sweep_id: int | None = None
    owner: str | None = None
    """The user whose token submitted it; null when auth was off."""


class ExperimentPatch(BaseModel):
    """The body of `PATCH /experiments/{id}`: any of these; the spec itself never changes."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: StorableName | None = Field(default=None, min_length=1, max_length=200)
    tags: list[str] | None = Field(default=None, max_length=50)
    notes: str | None = None

    @field_validator("tags")
    @classmethod
    def _tags_are_clean(cls, tags: list[str] | None) -> list[str] | None:
        return None if tags is None else clean_tags(tags)

    @field_validator("notes")
    @classmethod
    def _notes_fit(cls, notes: str | None) -> str | None:
        limit = get_settings().max_notes_chars
        if notes is not None and len(notes) > limit:
            raise ValueError(
                f"notes must be at most {limit:,} characters (DIRCONV_MAX_NOTES_CHARS)"
            )
        if notes is not None and not is_storable_text(notes):
            raise ValueError("notes must not contain NUL characters or lone surrogates")
        return notes


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
    owner: str | None = None


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


class AggregateStats(BaseModel):
    """Step-by-step statistics over runs: `n` runs have a point at each step; only the
    statistics asked for are present. Non-finite values as in `Series`."""

    model_config = ConfigDict(ser_json_inf_nan="strings")

    steps: list[int]
    n: list[int]
    mean: list[float] | None = None
    std: list[float] | None = None
    min: list[float] | None = None
    max: list[float] | None = None
    median: list[float] | None = None
    q10: list[float] | None = None
    q25: list[float] | None = None
    q75: list[float] | None = None
    q90: list[float] | None = None
    gmean: list[float] | None = None


class AggregateRead(AggregateStats):
    """One metric aggregated over runs; `missing` lists the ids asked for that were left out
    (no such run, or archived without `archived=true`)."""

    name: str
    ids: list[int]
    missing: list[int]


class SweepGroup(AggregateStats):
    values: dict
    """The group's values of the `by` fields."""
    ids: list[int]


class SweepAggregate(BaseModel):
    sweep_id: int
    name: str
    by: list[str]
    groups: list[SweepGroup]


class TokenCreate(BaseModel):
    """The body of `POST /tokens`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user: str = Field(pattern=USER_PATTERN, description="1-100 of A-Z a-z 0-9 . _ @ + -")
    role: Literal["reader", "member", "admin"]
    expires_days: int | None = Field(
        default=None, ge=1, description="days the token lives, at most DIRCONV_MAX_TOKEN_DAYS"
    )

    @field_validator("expires_days")
    @classmethod
    def _lifetime_fits(cls, days: int | None) -> int | None:
        limit = get_settings().max_token_days
        if days is not None and days > limit:
            raise ValueError(f"expires_days must be at most {limit:,} (DIRCONV_MAX_TOKEN_DAYS)")
        return days


class TokenRead(BaseModel):
    """A token without its secret."""

    id: int
    user: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenRead):
    token: str
    """The secret, shown this once; only its hash is stored."""


class TokenList(BaseModel):
    data: list[TokenRead]
    count: int


class Me(BaseModel):
    user: str | None
    """None with auth off."""
    role: str
