from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from service import theory
from service.api.deps import ReadSession, get_experiment_or_404, invalid
from service.api.errors import documented
from service.schemas import TheoryRead

router = APIRouter(prefix="/experiments", tags=["theory"])


@router.get("/{experiment_id}/theory", response_model=TheoryRead, responses=documented(404))
def read_theory(
    session: ReadSession,
    experiment_id: int,
    max_points: Annotated[int, Query(ge=2, le=100_000)] = 500,
    spacing: Literal["linear", "log"] = "linear",
) -> TheoryRead:
    """The population gradient flow's directional error for this run's spec and init."""
    spec = get_experiment_or_404(session, experiment_id).spec
    if spec["init"] == "gaussian":
        raise invalid(
            ("path", "experiment_id"),
            "no theory curve: the flow describes balanced networks and init 'gaussian' is not",
        )
    steps, errors = theory.theory_curve(json.dumps(spec, sort_keys=True), max_points, spacing)
    return TheoryRead(
        experiment_id=experiment_id,
        steps=steps,
        directional_error=errors,
        complete=steps[-1] == spec["steps"],
    )
