from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core import cost, lifecycle
from core.models import STATUSES, Experiment, Sweep, key_range
from core.settings import get_settings
from core.spec import MAX_INT, ExperimentSpec
from service import events, idempotency, quotas, run_filters, store
from service.api.auth import CurrentPrincipal, Principal, check_may_change
from service.api.deps import (
    ReadSession,
    WriteSession,
    brief_read,
    get_or_404,
    invalid,
    metric_names,
    refuse_overruns,
    reused_key_refused,
)
from service.api.errors import documented
from service.api.paging import PageSize
from service.idempotency import BodyDigest, KeyHeader
from service.schemas import ExperimentList, ExperimentPatch, ExperimentRead

router = APIRouter(prefix="/experiments", tags=["experiments"])

StatusFilter = Literal[STATUSES]  # type: ignore[valid-type]
ERROR_SCHEMA = "#/components/schemas/ErrorMessage"
LIMIT_SCHEMA = "#/components/schemas/LimitMessage"
SORT_HELP = (
    "a time (created_at, started_at, finished_at), id, name or numeric summary field "
    "(e.g. final_directional_error); prefix - for descending"
)
PAPER_RUN = {
    "name": "paper-depth4",
    "tags": ["paper"],
    "depth": 4,
    "dim": 2,
    "distribution": "uniform_sphere",
    "teacher": [0.0, 1.0],
    "loss": "logistic",
    "optimizer": "sgd",
    "lr": 0.001,
    "batch_size": 1000,
    "steps": 20000,
    "init": "paper",
    "init_vector": [0.6, 0.8],
    "seed": 0,
}
"""Lin, Sun, Zhang (NeurIPS 2021), the experiment of their figure at depth 4, with the fields
that define it spelled out (all but `depth`, `name` and `tags` are the defaults)."""
SPEC_EXAMPLES = {
    "paper": {"summary": "The paper's run at depth 4", "value": PAPER_RUN},
    "defaults": {"summary": "Every default: the paper's run at depth 1", "value": {}},
    "gd": {
        "summary": "Full-batch gradient descent on 200 points, depth 3",
        "value": {"depth": 3, "optimizer": "gd", "n_samples": 200, "lr": 0.01},
    },
}
NO_NUL = r"^[^\x00]*$"
OWNER_PATTERN = r"^[^\x00]{1,100}$"
"""No stored tag holds NUL, and PostgreSQL refuses to compare with one."""


@router.post("", status_code=201, response_model=ExperimentRead)
def create_experiment(
    session: WriteSession,
    principal: CurrentPrincipal,
    spec: Annotated[ExperimentSpec, Body(openapi_examples=SPEC_EXAMPLES)],
    digest: BodyDigest,
    idempotency_key: KeyHeader = None,
) -> dict:
    """Create an experiment from a spec and queue it: every field is optional, and `{}` is
    the paper's run at depth 1. A request without a body is refused (422)."""
    return _queue_once(session, principal, spec, "experiments", idempotency_key, digest)


def _queue_once(
    session: Session,
    principal: Principal,
    spec: ExperimentSpec,
    scope: str,
    key: str | None,
    digest: str,
) -> dict:
    """Queue a run of `spec` for `principal`, limits and quotas checked, once per
    idempotency key in `scope` (the answer first given to a key that comes again)."""
    settings = get_settings()
    refuse_overruns(cost.run_overruns(spec, settings))

    def create() -> ExperimentRead:
        quotas.check_run_quotas(session, principal.user, 1, cost.stored_points(spec), settings)
        return store.to_read(lifecycle.create_experiment(session, spec, principal.user))

    with reused_key_refused():
        return idempotency.once(session, scope, key, digest, create)


@router.get("", response_model=ExperimentList)
def list_experiments(
    request: Request,
    session: ReadSession,
    limit: PageSize,
    status: StatusFilter | None = None,
    tag: Annotated[str | None, Query(max_length=100, pattern=NO_NUL)] = None,
    sweep_id: Annotated[int | None, Query(ge=1, le=key_range(Sweep)[-1])] = None,
    archived: Annotated[bool, Query(description="list archived runs too")] = False,
    sort: Annotated[str, Query(description=SORT_HELP, max_length=100)] = "-created_at",
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    owner: Annotated[str | None, Query(pattern=OWNER_PATTERN)] = None,
) -> ExperimentList:
    """List experiments (newest first unless `sort` says otherwise), filtered by status, tag,
    owner, sweep, archived, and `spec.<field>=value` (exact match, repeatable)."""
    wanted = store.RunQuery(
        status=status,
        tag=tag,
        owner=owner,
        sweep_id=sweep_id,
        archived=archived,
        conditions=run_filters.spec_filters(request.query_params.multi_items()),
        order=run_filters.sort_order(sort),
    )
    rows, count = store.list_experiments(session, wanted, limit=limit, offset=offset)
    return ExperimentList(data=[store.to_read(row) for row in rows], count=count)


@router.get("/{experiment_id}", response_model=ExperimentRead, responses=documented(404))
def read_experiment(session: ReadSession, experiment_id: int) -> ExperimentRead:
    """Read one experiment with its status, progress and summary."""
    return store.to_read(get_or_404(session, Experiment, experiment_id))


@router.post(
    "/{experiment_id}/cancel",
    status_code=202,
    response_model=ExperimentRead,
    responses=documented(404, 409),
)
def cancel_experiment(
    session: WriteSession, principal: CurrentPrincipal, experiment_id: int
) -> ExperimentRead:
    """Cancel a queued run at once; ask a running run's worker to stop it."""
    experiment = _run_for_change(session, principal, experiment_id)
    if not lifecycle.request_cancel(session, experiment_id):
        raise HTTPException(
            status_code=409, detail=f"experiment {experiment_id} is already {experiment.status}"
        )
    session.commit()
    session.refresh(experiment)
    return store.to_read(experiment)


def _run_for_change(session: Session, principal: Principal, experiment_id: int) -> Experiment:
    """The run a request may change (404 if none, 403 if another user's), locked for this
    transaction: every endpoint that changes a run fetches it here."""
    run = get_or_404(session, Experiment, experiment_id, lock=True)
    check_may_change(principal, run.owner, f"experiment {experiment_id}")
    return run


@router.patch("/{experiment_id}", response_model=ExperimentRead, responses=documented(404))
def update_experiment(
    session: WriteSession,
    principal: CurrentPrincipal,
    experiment_id: int,
    changes: ExperimentPatch,
) -> ExperimentRead:
    """Rename, retag or annotate a run (its spec never changes: rerun instead)."""
    run = _run_for_change(session, principal, experiment_id)
    if changes.name is not None:
        run.name = changes.name
    if changes.tags is not None:
        lifecycle.retag(session, run, changes.tags)
    if changes.notes is not None:
        run.notes = changes.notes
    session.commit()
    session.refresh(run)
    return store.to_read(run)


@router.delete("/{experiment_id}", status_code=204, responses=documented(404))
def archive_experiment(
    session: WriteSession, principal: CurrentPrincipal, experiment_id: int
) -> Response:
    """Archive a run (canceling it first if queued or running): it leaves lists but stays
    readable by id."""
    lifecycle.archive(session, _run_for_change(session, principal, experiment_id))
    session.commit()
    return Response(status_code=204)


@router.post("/{experiment_id}/restore", response_model=ExperimentRead, responses=documented(404))
def restore_experiment(
    session: WriteSession, principal: CurrentPrincipal, experiment_id: int
) -> ExperimentRead:
    """Bring an archived run back into lists."""
    run = _run_for_change(session, principal, experiment_id)
    lifecycle.restore(run)
    session.commit()
    session.refresh(run)
    return store.to_read(run)


@router.post(
    "/{experiment_id}/rerun",
    status_code=201,
    response_model=ExperimentRead,
    responses=documented(404),
)
def rerun_experiment(
    session: WriteSession,
    principal: CurrentPrincipal,
    experiment_id: int,
    digest: BodyDigest,
    idempotency_key: KeyHeader = None,
) -> dict:
    """Queue a new run with the same spec as this one (whatever its status)."""
    # The stored spec was validated at submit and holds every default filled in, which
    # validation would refuse as "given but not applicable": take it as it is.
    spec = ExperimentSpec.model_construct(**_run_for_change(session, principal, experiment_id).spec)
    per_run = hashlib.sha256(f"{experiment_id}:{digest}".encode()).hexdigest()
    return _queue_once(session, principal, spec, "rerun", idempotency_key, per_run)


async def _existing_run(request: Request, experiment_id: int) -> int:
    """404 before a stream opens for a run that does not exist."""
    if not await brief_read(request, lambda engine: _exists(engine, experiment_id)):
        raise HTTPException(status_code=404, detail=f"experiment {experiment_id} not found")
    return experiment_id


def _exists(engine: Engine, experiment_id: int) -> bool:
    if experiment_id not in key_range(Experiment):
        return False
    with Session(bind=engine) as session:
        return session.get(Experiment, experiment_id) is not None


def _event_names(
    names: Annotated[str | None, Query(description="comma-separated metric names")] = None,
) -> list[str] | None:
    """The metrics whose points events carry (default: those the run logs); checked before
    the stream opens."""
    return metric_names(names)


def _event_cursor(
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=1000,
            description="resume after the event with this id (sent by EventSource itself)",
        ),
    ] = None,
) -> dict[str, int]:
    sent = events.parse_cursor(last_event_id)
    if sent is None:
        raise invalid(("header", "Last-Event-ID"), "not the id of an event of this stream")
    return sent


def _json_error(status: int) -> dict:
    declared = documented(status)[status]
    schema = LIMIT_SCHEMA if status == 429 else ERROR_SCHEMA
    return {
        "description": declared["description"],
        "headers": declared.get("headers", {}),
        "content": {"application/json": {"schema": {"$ref": schema}}},
    }


JSON_ERRORS = {status: _json_error(status) for status in (400, 401, 403, 404, 413, 429, 503)}
"""An event stream's errors are JSON, not events (FastAPI would document its media type)."""


@router.get(
    "/{experiment_id}/events",
    response_class=EventSourceResponse,
    responses=JSON_ERRORS,
)
async def experiment_events(
    request: Request,
    experiment_id: Annotated[int, Depends(_existing_run)],
    chosen: Annotated[list[str] | None, Depends(_event_names)],
    sent: Annotated[dict[str, int], Depends(_event_cursor)],
) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: the run's status (first and on each change), and its progress with
    the points stored since the last event every DIRCONV_EVENTS_SECONDS while it is active;
    ends after its terminal status."""
    async for event in events.stream(request, experiment_id, chosen, sent):
        yield event
