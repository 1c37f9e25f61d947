from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, HTTPException, Query

from core import cost, lifecycle
from core.models import STATUSES, Experiment
from core.settings import get_settings
from core.spec import MAX_INT, ExperimentSpec
from service import idempotency, store
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
"""No stored tag holds NUL, and PostgreSQL refuses to compare with one."""


@router.post("", status_code=201, response_model=ExperimentRead)
def create_experiment(
    session: WriteSession,
    spec: Annotated[ExperimentSpec, Body(openapi_examples=SPEC_EXAMPLES)],
    digest: BodyDigest,
    idempotency_key: KeyHeader = None,
) -> dict:
    """Create an experiment from a spec and queue it: every field is optional, and `{}` is
    the paper's run at depth 1. A request without a body is refused (422)."""
    refuse_overruns(cost.run_overruns(spec, get_settings()))
    with reused_key_refused():
        return idempotency.once(
            session,
            "experiments",
            idempotency_key,
            digest,
            lambda: store.to_read(lifecycle.create_experiment(session, spec)),
        )


@router.get("", response_model=ExperimentList)
def list_experiments(
    session: ReadSession,
    status: StatusFilter | None = None,
    tag: Annotated[str | None, Query(max_length=100, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> ExperimentList:
    """List experiments, newest first, filtered by status and tag."""
    rows, count = store.list_experiments(
        session, status=status, tag=tag, limit=limit, offset=offset
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
def cancel_experiment(session: WriteSession, experiment_id: int) -> ExperimentRead:
    """Cancel a queued run at once; ask a running run's worker to stop it."""
    experiment = get_or_404(session, Experiment, experiment_id)
    if not lifecycle.request_cancel(session, experiment_id):
        raise HTTPException(
            status_code=409, detail=f"experiment {experiment_id} is already {experiment.status}"
        )
    session.commit()
    session.refresh(experiment)
    return store.to_read(experiment)
