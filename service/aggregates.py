"""Aggregate answers (`GET /metrics/aggregate`, `GET /sweeps/{id}/aggregate`): runs chosen,
bounds checked, statistics from core/aggregate.py, JSON with non-finite values as strings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import aggregate, metric_store
from core.models import Experiment, key_range
from core.settings import get_settings
from service import exports
from service.api.deps import comma_list, invalid

Bounds = dict[str, int | None]


def parse_stats(stats: str | None) -> list[str]:
    """The statistics asked for (default mean, min, max, median); 422 naming `stats`."""
    if stats is None:
        return list(aggregate.DEFAULT_STATS)
    chosen = comma_list(stats)
    unknown = [s for s in chosen if s not in aggregate.STATS]
    if unknown or not chosen:
        known = ", ".join(aggregate.STATS)
        raise invalid(("query", "stats"), f"unknown statistic(s) {unknown}; known: {known}")
    return chosen


def parse_by(by: str | None, grid: dict[str, Any]) -> list[str]:
    """The grid fields to group by; 422 naming `by` for any that is not one."""
    chosen = comma_list(by or "")
    unknown = [field for field in chosen if field not in grid]
    if unknown:
        raise invalid(
            ("query", "by"), f"not grid fields of this sweep: {unknown}; grid fields: {list(grid)}"
        )
    return chosen


def included_ids(session: Session, experiment_ids: Sequence[int], archived: bool) -> list[int]:
    """Those of `experiment_ids` that name a run, archived ones only if `archived`, in order."""
    storable = [i for i in experiment_ids if i in key_range(Experiment)]
    query = select(Experiment.id).where(Experiment.id.in_(storable))
    if not archived:
        query = query.where(Experiment.archived.is_(False))
    found = set(session.scalars(query))
    return [i for i in experiment_ids if i in found]


def aggregate_groups(
    session: Session,
    id_groups: list[list[int]],
    name: str,
    stats: list[str],
    bounds: Bounds,
    max_points: int | None,
) -> list[dict[str, Any]]:
    """{"steps", "n", <stat>...} of `name` over each group of runs, once both read bounds
    are checked over all groups together (before any value is read)."""
    _check_read(session, [i for ids in id_groups for i in ids], name, bounds)
    grids = [
        aggregate.thinned(metric_store.step_grid(session, ids, name, **bounds), max_points)
        for ids in id_groups
    ]
    _check_answer(sum(len(grid) for grid in grids), len(stats))
    return [
        _aggregate(session, ids, grid, name, stats, bounds)
        for ids, grid in zip(id_groups, grids, strict=True)
    ]


def _aggregate(
    session: Session,
    experiment_ids: list[int],
    grid: np.ndarray,
    name: str,
    stats: list[str],
    bounds: Bounds,
) -> dict[str, Any]:
    position = {experiment_id: row for row, experiment_id in enumerate(experiment_ids)}
    parts = (
        (position[i], part)
        for i, part in metric_store.chunk_parts(session, experiment_ids, name, **bounds)
    )
    result = aggregate.aggregate(grid, len(experiment_ids), parts, stats)
    return {
        "steps": result.steps,
        "n": result.n,
        **{stat: exports.values_json(values) for stat, values in result.stats.items()},
    }


def groups(members: Sequence[Experiment], by: list[str]) -> list[tuple[dict, list[int]]]:
    """Members grouped by their values of the `by` fields, groups ordered by those values."""
    grouped: dict[str, tuple[dict, list[int]]] = {}
    for member in members:
        values = {field: (member.grid_values or {}).get(field) for field in by}
        key = json.dumps(values, sort_keys=True)
        grouped.setdefault(key, (values, []))[1].append(member.id)
    return sorted(grouped.values(), key=lambda group: [_order(group[0][f]) for f in by])


def _order(value: Any) -> tuple[int, Any]:
    """Numbers before strings before anything else, each kind in its own order."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    return (2, json.dumps(value, sort_keys=True))


def _check_read(session: Session, experiment_ids: list[int], name: str, bounds: Bounds) -> None:
    total = sum(metric_store.count_in_range(session, experiment_ids, [name], **bounds).values())
    limit = get_settings().max_aggregate_points
    if total > limit:
        raise invalid(
            ("query", "ids"),
            f"the runs hold {total:,} points in range; one aggregate reads at most {limit:,} "
            "(DIRCONV_MAX_AGGREGATE_POINTS): name fewer runs or narrow start_step/end_step",
        )


def _check_answer(steps: int, stats: int) -> None:
    total = steps * (stats + 2)
    limit = get_settings().max_read_points
    if total > limit:
        raise invalid(
            ("query", "max_points"),
            f"the answer would hold {total:,} numbers; at most {limit:,} "
            "(DIRCONV_MAX_READ_POINTS): pass max_points or narrow start_step/end_step",
        )
