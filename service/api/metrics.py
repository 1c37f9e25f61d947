from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service import store
from service.api.deps import ReadSession, get_experiment_or_404, invalid
from service.schemas import MetricsRead
from service.spec import LOGGED_METRICS, MAX_INT, METRIC_NAMES

router = APIRouter(prefix="/experiments", tags=["metrics"])

StepQuery = Annotated[int | None, Query(ge=0, le=MAX_INT)]


@router.get("/{experiment_id}/metrics", response_model=MetricsRead)
def read_metrics(
    session: ReadSession,
    experiment_id: int,
    names: Annotated[str | None, Query(description="comma-separated metric names")] = None,
    start_step: StepQuery = None,
    end_step: StepQuery = None,
    max_points: Annotated[int | None, Query(ge=2, le=10_000_000)] = None,
) -> MetricsRead:
    """Read metric series (while the run goes on too), optionally a step range, thinned."""
    chosen = _parse_names(names)
    if start_step is not None and end_step is not None and end_step < start_step:
        raise invalid(("query", "end_step"), "end_step must not be below start_step")
    experiment = get_experiment_or_404(session, experiment_id)
    chosen = chosen or list(LOGGED_METRICS[experiment.spec["optimizer"]])
    series = {
        name: store.read_series(
            session,
            experiment_id,
            name,
            start_step=start_step,
            end_step=end_step,
            max_points=max_points,
        )
        for name in chosen
    }
    return MetricsRead(experiment_id=experiment_id, series=series)


def _parse_names(names: str | None) -> list[str] | None:
    """The metric names asked for; None means those the run logs."""
    if names is None:
        return None
    chosen = list(dict.fromkeys(n.strip() for n in names.split(",") if n.strip()))
    unknown = [n for n in chosen if n not in METRIC_NAMES]
    if unknown or not chosen:
        raise invalid(
            ("query", "names"),
            f"unknown metric name(s) {unknown}; known: {', '.join(METRIC_NAMES)}",
        )
    return chosen
