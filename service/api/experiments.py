from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, HTTPException, Query

from core import cost, lifecycle
from core.models import STATUSES, Experiment
from core.settings import get_settings
from core.spec import MAX_INT, ExperimentSpec
from service import idempotency, quotas, store
from service.api.auth import CurrentPrincipal, check_may_change
from service.api.deps import (
    ReadSession,
    WriteSession,
    get_or_404,
    refuse_overruns,
    reused_key_refused,
)
from service.api.errors import documented
from service.idempotency import BodyDigest, KeyHeader
from service.schemas import ExperimentList, ExperimentRead

router = APIRouter(prefix="/experiments", tags=["experiments"])

StatusFilter = Literal[STATUSES]  # type: ignore[valid-type]
NO_NUL = r"^[^\x00]*$"
OWNER_PATTERN = r"^[^\x00]{1,100}$"
"""No stored tag holds NUL, and PostgreSQL refuses to compare with one."""


@router.post("", status_code=201, response_model=ExperimentRead)
def create_experiment(
    session: WriteSession,
    principal: CurrentPrincipal,
    digest: BodyDigest,
    idempotency_key: KeyHeader = None,
    spec: Annotated[ExperimentSpec | None, Body()] = None,
) -> dict:
    """Create an experiment from a spec (every field optional) and queue it."""
    spec = spec or ExperimentSpec()
    settings = get_settings()
    refuse_overruns(cost.run_overruns(spec, settings))

    def create() -> ExperimentRead:
        quotas.check_run_quotas(session, principal.user, 1, cost.stored_points(spec), settings)
        return store.to_read(lifecycle.create_experiment(session, spec, principal.user))

    with reused_key_refused():
        return idempotency.once(session, "experiments", idempotency_key, digest, create)


@router.get("", response_model=ExperimentList)
def list_experiments(
    session: ReadSession,
    status: StatusFilter | None = None,
    tag: Annotated[str | None, Query(max_length=100, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    owner: Annotated[str | None, Query(pattern=OWNER_PATTERN)] = None,
) -> ExperimentList:
    """List experiments, newest first, filtered by status, tag and owner."""
    rows, count = store.list_experiments(
        session, status=status, tag=tag, limit=limit, offset=offset, owner=owner
    )
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
    experiment = get_or_404(session, Experiment, experiment_id)
    check_may_change(principal, experiment.owner, f"experiment {experiment_id}")
    if not lifecycle.request_cancel(session, experiment_id):
        raise HTTPException(
            status_code=409, detail=f"experiment {experiment_id} is already {experiment.status}"
        )
    session.commit()
    session.refresh(experiment)
    return store.to_read(experiment)
