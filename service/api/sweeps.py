from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.exceptions import RequestValidationError

from core import metric_store
from core.models import Sweep
from core.settings import get_settings
from core.spec import MAX_INT, METRIC_NAMES
from service import exports, idempotency, sweep_store
from service.api.deps import (
    ARROW_OR_JSON,
    AcceptHeader,
    ReadSession,
    WriteSession,
    arrow_response,
    check_answer_size,
    get_or_404,
    json_response,
    reused_key_refused,
)
from service.api.errors import documented
from service.idempotency import BodyDigest, KeyHeader
from service.schemas import (
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
    request: SweepCreate,
    digest: BodyDigest,
    idempotency_key: KeyHeader = None,
) -> dict:
    """Expand a grid into member experiments, validate every one, then queue them all."""
    try:
        members = sweep_store.expand(request, get_settings())
    except sweep_store.SweepInvalid as exc:
        raise RequestValidationError(exc.errors) from None

    def create() -> SweepCreated:
        sweep, ids = sweep_store.create_sweep(session, request, members)
        return SweepCreated(id=sweep.id, experiment_ids=ids)

    with reused_key_refused():
        return idempotency.once(session, "sweeps", idempotency_key, digest, create)


@router.get("", response_model=SweepList)
def list_sweeps(
    session: ReadSession,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> SweepList:
    """List sweeps, newest first, with member counts by status."""
    rows, count = sweep_store.list_sweeps(session, limit, offset)
    return SweepList(data=[sweep_store.to_read(session, row) for row in rows], count=count)


@router.get("/{sweep_id}", response_model=SweepRead, responses=documented(404))
def read_sweep(session: ReadSession, sweep_id: int) -> SweepRead:
    """Read a sweep: its grid, member ids and member counts by status."""
    return sweep_store.to_read(session, get_or_404(session, Sweep, sweep_id))


@router.get(
    "/{sweep_id}/metrics",
    response_model=SweepMetrics,
    responses={**ARROW_OR_JSON, **documented(404)},
)
def read_sweep_metrics(
    session: ReadSession,
    sweep_id: int,
    name: str = "directional_error",
    max_points: Annotated[int | None, Query(ge=2, le=10_000_000)] = None,
    spacing: Literal["linear", "log"] = "linear",
    accept: AcceptHeader = None,
) -> Response:
    """One metric of every member, with the member's status and grid values (JSON), or its
    points as an Arrow IPC stream (Accept: application/vnd.apache.arrow.stream)."""
    arrow = exports.wants_arrow(accept)
    if name not in METRIC_NAMES:
        raise RequestValidationError(
            [{"loc": ("query", "name"), "msg": f"unknown metric {name!r}", "type": "value_error"}]
        )
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
