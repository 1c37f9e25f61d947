from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator
from sqlalchemy.orm import Session

from core import metric_store
from core.metrics import METRICS
from core.models import Experiment
from core.settings import get_settings
from core.spec import LOGGED_METRICS, MAX_INT
from service import aggregates, exports
from service.api.deps import (
    ARROW_OR_JSON,
    AcceptHeader,
    ReadSession,
    arrow_response,
    check_answer_size,
    check_metric_name,
    check_step_range,
    get_or_404,
    invalid,
    json_response,
    metric_names,
)
from service.api.errors import documented
from service.schemas import (
    AggregateRead,
    CompareRead,
    MetricDefinition,
    MetricDefinitionList,
    MetricsRead,
)

router = APIRouter(prefix="/experiments", tags=["metrics"])
compare_router = APIRouter(prefix="/metrics", tags=["metrics"])

StepQuery = Annotated[int | None, Query(ge=0, le=MAX_INT)]
NamesQuery = Annotated[str | None, Query(description="comma-separated metric names")]


def _within_downsample_cap(max_points: int | None) -> int | None:
    cap = get_settings().max_downsample_points
    if max_points is not None and max_points > cap:
        raise ValueError(f"max_points must be at most {cap:,} (DIRCONV_MAX_DOWNSAMPLE_POINTS)")
    return max_points


MaxPointsQuery = Annotated[
    int | None,
    Query(ge=2, description="at most DIRCONV_MAX_DOWNSAMPLE_POINTS"),
    AfterValidator(_within_downsample_cap),
]
SpacingQuery = Annotated[
    Literal["linear", "log"], Query(description="downsampling buckets: equal in step or log step")
]
StatsQuery = Annotated[
    str | None, Query(description="comma-separated statistics (default mean,min,max,median)")
]
ArchivedQuery = Annotated[bool, Query(description="include archived runs")]
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"


@router.get(
    "/{experiment_id}/metrics",
    response_model=MetricsRead,
    responses={**ARROW_OR_JSON, **documented(404)},
)
def read_metrics(
    session: ReadSession,
    experiment_id: int,
    names: NamesQuery = None,
    start_step: StepQuery = None,
    end_step: StepQuery = None,
    max_points: MaxPointsQuery = None,
    spacing: SpacingQuery = "linear",
    accept: AcceptHeader = None,
) -> Response:
    """Read metric series (while the run goes on too), optionally a step range, downsampled;
    as JSON, or as an Arrow IPC stream (Accept: application/vnd.apache.arrow.stream)."""
    bounds = {"start_step": start_step, "end_step": end_step}
    arrow = exports.wants_arrow(accept)
    chosen = _checked(session, experiment_id, names, start_step, end_step)
    check_answer_size(session, [experiment_id], chosen, bounds, max_points, arrow=arrow)
    read = {
        name: _read(session, experiment_id, name, bounds, max_points, spacing) for name in chosen
    }
    if arrow:
        return arrow_response([(experiment_id, name, points) for name, points in read.items()])
    series = {name: exports.series_json(points) for name, points in read.items()}
    return json_response({"experiment_id": experiment_id, "series": series})


@router.get(
    "/{experiment_id}/metrics.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}, **documented(404)},
)
def export_csv(
    request: Request,
    session: ReadSession,
    experiment_id: int,
    names: NamesQuery = None,
    start_step: StepQuery = None,
    end_step: StepQuery = None,
) -> StreamingResponse:
    """Export metrics as CSV, streamed: one row per step, one column per metric."""
    chosen = _checked(session, experiment_id, names, start_step, end_step)
    parts = _windows(request, experiment_id, chosen, start_step, end_step)
    return StreamingResponse(
        exports.csv_stream(chosen, parts),
        media_type="text/csv",
        headers=_attachment(experiment_id, "csv"),
    )


@router.get(
    "/{experiment_id}/metrics.parquet",
    response_class=StreamingResponse,
    responses={200: {"content": {PARQUET_MEDIA_TYPE: {}}}, **documented(404)},
)
def export_parquet(
    request: Request,
    session: ReadSession,
    experiment_id: int,
    names: NamesQuery = None,
    start_step: StepQuery = None,
    end_step: StepQuery = None,
) -> StreamingResponse:
    """Export metrics as a Parquet file, streamed a row group at a time: column `step`, then
    one column per metric."""
    chosen = _checked(session, experiment_id, names, start_step, end_step)
    parts = _windows(request, experiment_id, chosen, start_step, end_step)
    return StreamingResponse(
        exports.parquet_stream(chosen, parts),
        media_type=PARQUET_MEDIA_TYPE,
        headers=_attachment(experiment_id, "parquet"),
    )


@compare_router.get("/definitions", response_model=MetricDefinitionList)
def definitions() -> MetricDefinitionList:
    """List every metric a run may log: name, description, chart scale, optimizers logging it."""
    return MetricDefinitionList(
        data=[
            MetricDefinition(
                name=metric.name,
                description=metric.description,
                scale=metric.scale,
                optimizers=list(metric.optimizers),
            )
            for metric in METRICS
        ]
    )


@compare_router.get("/compare", response_model=CompareRead, responses=ARROW_OR_JSON)
def compare(
    session: ReadSession,
    ids: Annotated[str, Query(description="comma-separated experiment ids")],
    name: Annotated[str, Query(description="one metric name")] = "directional_error",
    start_step: StepQuery = None,
    end_step: StepQuery = None,
    max_points: MaxPointsQuery = None,
    spacing: SpacingQuery = "linear",
    archived: ArchivedQuery = False,
    accept: AcceptHeader = None,
) -> Response:
    """Read one metric of many experiments at once; unknown ids (and archived ones, unless
    `archived=true`) are listed in `missing` (JSON only: an Arrow answer has the rows of the
    runs found)."""
    arrow = exports.wants_arrow(accept)
    chosen = _parse_ids(ids)
    check_metric_name(name)
    check_step_range(start_step, end_step)
    known = set(aggregates.included_ids(session, chosen, archived))
    found = [i for i in chosen if i in known]
    bounds = {"start_step": start_step, "end_step": end_step}
    check_answer_size(session, found, [name], bounds, max_points, arrow=arrow)
    if max_points is None:
        stored = metric_store.read_many(session, found, name, **bounds)
    else:
        stored = metric_store.read_many_downsampled(
            session, found, name, max_points=max_points, spacing=spacing, **bounds
        )
    empty = metric_store.SeriesArrays.empty()
    if arrow:
        return arrow_response([(i, name, stored.get(i, empty)) for i in found])
    runs = [{"experiment_id": i, **exports.series_json(stored.get(i, empty))} for i in found]
    content = {"name": name, "runs": runs, "missing": [i for i in chosen if i not in known]}
    return json_response(content)


@compare_router.get("/aggregate", response_model=AggregateRead)
def aggregate(
    session: ReadSession,
    ids: Annotated[str, Query(description="comma-separated experiment ids")],
    name: Annotated[str, Query(description="one metric name")] = "directional_error",
    stats: StatsQuery = None,
    start_step: StepQuery = None,
    end_step: StepQuery = None,
    max_points: MaxPointsQuery = None,
    archived: ArchivedQuery = False,
) -> Response:
    """Statistics of one metric over many runs at each step (mean, std, quantiles...), with
    `n` runs per step; the step grid is thinned to every k-th step by `max_points`."""
    chosen = _parse_ids(ids)
    chosen_stats = aggregates.parse_stats(stats)
    check_metric_name(name)
    check_step_range(start_step, end_step)
    found = aggregates.included_ids(session, chosen, archived)
    bounds = {"start_step": start_step, "end_step": end_step}
    content = {
        "name": name,
        "ids": found,
        "missing": [i for i in chosen if i not in found],
        **aggregates.aggregate_groups(session, [found], name, chosen_stats, bounds, max_points)[0],
    }
    return Response(exports.dumps(content), media_type="application/json")


def _windows(
    request: Request,
    experiment_id: int,
    names: list[str],
    start_step: int | None,
    end_step: int | None,
) -> Iterator[dict[str, metric_store.SeriesArrays]]:
    bounds = {"start_step": start_step, "end_step": end_step}
    return metric_store.windows(request.app.state.engine, experiment_id, names, **bounds)


def _checked(
    session: Session,
    experiment_id: int,
    names: str | None,
    start_step: int | None,
    end_step: int | None,
) -> list[str]:
    """The metric names asked for (by default those the run logs), once the query and the
    experiment are known good."""
    chosen = metric_names(names)
    check_step_range(start_step, end_step)
    experiment = get_or_404(session, Experiment, experiment_id)
    return chosen or list(LOGGED_METRICS[experiment.spec["optimizer"]])


def _read(
    session: Session,
    experiment_id: int,
    name: str,
    bounds: dict,
    max_points: int | None,
    spacing: metric_store.Spacing,
) -> metric_store.SeriesArrays:
    if max_points is None:
        return metric_store.read_series(session, experiment_id, name, **bounds)
    return metric_store.read_downsampled(
        session, experiment_id, name, max_points=max_points, spacing=spacing, **bounds
    )


def _parse_ids(ids: str) -> list[int]:
    parts = [part.strip() for part in ids.split(",") if part.strip()]
    cap = get_settings().max_compare_ids
    if not parts or len(parts) > cap:
        message = f"give 1 to {cap:,} comma-separated ids (DIRCONV_MAX_COMPARE_IDS)"
        raise invalid(("query", "ids"), message)
    if not all(part.isascii() and part.isdigit() and 1 <= int(part) <= MAX_INT for part in parts):
        raise invalid(("query", "ids"), f"ids must be integers from 1 to {MAX_INT}")
    return list(dict.fromkeys(int(part) for part in parts))


def _attachment(experiment_id: int, suffix: str) -> dict[str, str]:
    filename = f"experiment-{experiment_id}-metrics.{suffix}"
    return {"Content-Disposition": f'attachment; filename="{filename}"'}
