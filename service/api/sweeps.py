from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError

from core import cost, lifecycle, metric_store
from core.models import Experiment, Sweep
from core.settings import get_settings
from core.spec import MAX_INT
from service import aggregates, exports, idempotency, quotas, sweep_store
from service.api.auth import CurrentPrincipal, check_may_change
from service.api.deps import (
    ARROW_OR_JSON,
    AcceptHeader,
    ReadSession,
    WriteSession,
    arrow_response,
    check_answer_size,
    check_metric_name,
    check_step_range,
    get_or_404,
    json_response,
    reused_key_refused,
)
from service.api.errors import documented
from service.api.metrics import ArchivedQuery, MaxPointsQuery, StatsQuery, StepQuery
from service.api.paging import PageSize
from service.idempotency import BodyDigest, KeyHeader
from service.schemas import (
    SweepAggregate,
    SweepCreate,
    SweepCreated,
    SweepList,
    SweepMetrics,
    SweepRead,
)

router = APIRouter(prefix="/sweeps", tags=["sweeps"])


@router.post("", status_code=201, response_model=SweepCreated)
def create_sweep(
    session: WriteSession,
    principal: CurrentPrincipal,
    request: SweepCreate,
    digest: BodyDigest,
    idempotency_key: KeyHeader = None,
) -> dict:
    """Expand a grid into member experiments, validate every one, then queue them all."""
    settings = get_settings()
    try:
        members = sweep_store.expand(request, settings)
    except sweep_store.SweepInvalid as exc:
        raise RequestValidationError(exc.errors) from None

    def create() -> SweepCreated:
        points = sum(cost.stored_points(spec) for _, spec in members)
        quotas.check_run_quotas(session, principal.user, len(members), points, settings)
        sweep, ids = sweep_store.create_sweep(session, request, members, principal.user)
        return SweepCreated(id=sweep.id, experiment_ids=ids)

    with reused_key_refused():
        return idempotency.once(session, "sweeps", idempotency_key, digest, create)


@router.get("", response_model=SweepList)
def list_sweeps(
    session: ReadSession,
    limit: PageSize,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> SweepList:
    """List sweeps, newest first, with member counts by status."""
    rows, count = sweep_store.list_sweeps(session, limit, offset)
    return SweepList(data=sweep_store.to_reads(session, rows), count=count)


@router.get("/{sweep_id}", response_model=SweepRead, responses=documented(404))
def read_sweep(session: ReadSession, sweep_id: int) -> SweepRead:
    """Read a sweep: its grid, member ids and member counts by status."""
    return sweep_store.to_read(session, get_or_404(session, Sweep, sweep_id))


@router.post(
    "/{sweep_id}/cancel", status_code=202, response_model=SweepRead, responses=documented(404, 409)
)
def cancel_sweep(session: WriteSession, principal: CurrentPrincipal, sweep_id: int) -> SweepRead:
    """Cancel every queued or running member (running ones stop at their worker's next flush)."""
    sweep = get_or_404(session, Sweep, sweep_id)
    check_may_change(principal, sweep.owner, f"sweep {sweep_id}")
    if not lifecycle.request_cancel_where(session, Experiment.sweep_id == sweep_id):
        raise HTTPException(status_code=409, detail=f"sweep {sweep_id} has no run left to cancel")
    session.commit()
    return sweep_store.to_read(session, sweep)


@router.get(
    "/{sweep_id}/metrics",
    response_model=SweepMetrics,
    responses={**ARROW_OR_JSON, **documented(404)},
)
def read_sweep_metrics(
    session: ReadSession,
    sweep_id: int,
    name: str = "directional_error",
    max_points: MaxPointsQuery = None,
    spacing: Literal["linear", "log"] = "linear",
    accept: AcceptHeader = None,
) -> Response:
    """One metric of every member, with the member's status and grid values (JSON), or its
    points as an Arrow IPC stream (Accept: application/vnd.apache.arrow.stream)."""
    arrow = exports.wants_arrow(accept)
    check_metric_name(name)
    get_or_404(session, Sweep, sweep_id)
    rows = sweep_store.member_rows(session, sweep_id)
    ids = [row.id for row in rows]
    check_answer_size(session, ids, [name], {}, max_points, arrow=arrow)
    if max_points is None:
        stored = metric_store.read_many(session, ids, name)
    else:
        stored = metric_store.read_many_downsampled(
            session, ids, name, max_points=max_points, spacing=spacing
        )
    empty = metric_store.SeriesArrays.empty()
    if arrow:
        return arrow_response([(row.id, name, stored.get(row.id, empty)) for row in rows])
    members = [
        {
            "experiment_id": row.id,
            "status": row.status,
            "grid_values": row.grid_values or {},
            **exports.series_json(stored.get(row.id, empty)),
        }
        for row in rows
    ]
    content = {"sweep_id": sweep_id, "name": name, "members": members}
    return json_response(content)


@router.get("/{sweep_id}/aggregate", response_model=SweepAggregate, responses=documented(404))
def aggregate_sweep(
    session: ReadSession,
    sweep_id: int,
    name: str = "directional_error",
    by: Annotated[str | None, Query(description="comma-separated grid fields")] = None,
    stats: StatsQuery = None,
    start_step: StepQuery = None,
    end_step: StepQuery = None,
    max_points: MaxPointsQuery = None,
    archived: ArchivedQuery = False,
) -> Response:
    """One group per distinct combination of the `by` grid fields, each aggregating one
    metric over its members (typically the seeds), groups ordered by their values."""
    check_metric_name(name)
    check_step_range(start_step, end_step)
    chosen_stats = aggregates.parse_stats(stats)
    sweep = get_or_404(session, Sweep, sweep_id)
    fields = aggregates.parse_by(by, sweep.grid)
    rows = [
        row for row in sweep_store.member_rows(session, sweep_id) if archived or not row.archived
    ]
    bounds = {"start_step": start_step, "end_step": end_step}
    grouped = aggregates.groups(rows, fields)
    results = aggregates.aggregate_groups(
        session, [ids for _, ids in grouped], name, chosen_stats, bounds, max_points
    )
    groups = [
        {"values": values, "ids": ids, **result}
        for (values, ids), result in zip(grouped, results, strict=True)
    ]
    content = {"sweep_id": sweep_id, "name": name, "by": fields, "groups": groups}
    return json_response(content)
