from __future__ import annotations

import threading
from functools import cache
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import AfterValidator

from core import theory
from core.models import Experiment
from core.settings import get_settings
from service.api.deps import ReadSession, get_or_404, invalid
from service.api.errors import RETRY_AFTER, ErrorMessage, documented
from service.schemas import TheoryRead

router = APIRouter(prefix="/experiments", tags=["theory"])

DEFAULT_THEORY_POINTS = 500
SLOT_WAIT_SECONDS = 1.0
"""How long a request for a curve not yet computed waits for a free slot before its 503."""
_curves = theory.CurveCache()
BUSY = {
    "model": ErrorMessage,
    "description": "Database unavailable, or DIRCONV_MAX_THEORY_JOBS curves are being computed; "
    "retry after Retry-After seconds",
    "headers": RETRY_AFTER,
}


def _within_theory_cap(max_points: int) -> int:
    cap = get_settings().max_theory_points
    if max_points > cap:
        raise ValueError(f"max_points must be at most {cap:,} (DIRCONV_MAX_THEORY_POINTS)")
    return max_points


@router.get(
    "/{experiment_id}/theory",
    response_model=TheoryRead,
    responses={**documented(404), 503: BUSY},
)
def read_theory(
    session: ReadSession,
    experiment_id: int,
    max_points: Annotated[
        int,
        Query(ge=2, description="at most DIRCONV_MAX_THEORY_POINTS"),
        AfterValidator(_within_theory_cap),
    ] = DEFAULT_THEORY_POINTS,
    spacing: Literal["linear", "log"] = "linear",
) -> TheoryRead:
    """The population gradient flow's directional error for this run's spec and init."""
    spec = get_or_404(session, Experiment, experiment_id).spec
    if spec["init"] == "gaussian":
        raise invalid(
            ("path", "experiment_id"),
            "no theory curve: the flow describes balanced networks and init 'gaussian' is not",
        )
    # Only the default can pass the cap (a value given is checked): it gives way to the cap.
    points = min(max_points, get_settings().max_theory_points)
    steps, errors = _curve(theory.FlowProblem.of(spec), points, spacing)
    return TheoryRead(
        experiment_id=experiment_id,
        steps=steps,
        directional_error=errors,
        complete=steps[-1] == spec["steps"],
    )


def _curve(problem: theory.FlowProblem, points: int, spacing: str) -> theory.Curve:
    """The curve from the cache, or computed in one of DIRCONV_MAX_THEORY_JOBS slots."""
    key = (problem, points, spacing)
    curve = _curves.get(key)
    if curve is not None:
        return curve
    slots = _slots()
    if not slots.acquire(timeout=SLOT_WAIT_SECONDS):
        raise HTTPException(
            status_code=503,
            detail="theory curves are being computed for other requests "
            "(DIRCONV_MAX_THEORY_JOBS); retry shortly",
            headers={"Retry-After": "2"},
        )
    try:
        curve = theory.theory_curve(problem, points, spacing)
    finally:
        slots.release()
    _curves.put(key, curve)
    return curve


_SLOTS_MADE = threading.Lock()


def _slots() -> threading.BoundedSemaphore:
    # functools.cache alone can build two semaphores when the first requests race.
    with _SLOTS_MADE:
        return _semaphore()


@cache
def _semaphore() -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(get_settings().max_theory_jobs)
