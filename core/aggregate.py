"""Statistics of one metric over many runs, step by step: what seed bands are drawn from.

At each step of the grid the statistics run over the runs that logged a point there (`n`).
A run's NaN at a step counts as a point and makes that step's statistics NaN, as numpy's do:
a diverged seed shows instead of vanishing from the band.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from core.metric_store.encoding import SeriesArrays

QUANTILES = {"median": 0.5, "q10": 0.1, "q25": 0.25, "q75": 0.75, "q90": 0.9}
STATS = ("mean", "std", "min", "max", "median", "q10", "q25", "q75", "q90", "gmean")
DEFAULT_STATS = ("mean", "min", "max", "median")
FILL_BATCH_POINTS = 1 << 18
"""Points placed into the runs x steps table per numpy call."""
MAX_LOOKUP_STEPS = 1 << 24
"""Widest step span located through a lookup table (8 bytes a step); wider ones search."""


@dataclass(frozen=True)
class Aggregate:
    steps: np.ndarray
    """The (thinned) grid: int64, ascending."""
    n: np.ndarray
    """Runs with a point at each step."""
    stats: dict[str, np.ndarray]


def thinned(grid: np.ndarray, max_points: int | None) -> np.ndarray:
    """Every k-th step of `grid`, the smallest k leaving at most `max_points` steps."""
    if max_points is None or len(grid) <= max_points:
        return grid
    return np.ascontiguousarray(grid[:: -(-len(grid) // max_points)])


def aggregate(
    grid: np.ndarray,
    runs: int,
    parts: Iterable[tuple[int, SeriesArrays]],
    stats: Sequence[str],
) -> Aggregate:
    """`stats` at each step of `grid` over `runs` runs whose points come as (run index,
    points) parts, in any order; points off the grid are skipped."""
    values = np.full((runs, len(grid)), np.nan)
    present = np.zeros((runs, len(grid)), bool)
    locate = _locator(grid)
    batch: list[tuple[int, SeriesArrays]] = []
    size = 0
    for run, part in parts:  # placed in batches: numpy's per-call cost dominates small parts
        batch.append((run, part))
        size += len(part.steps)
        if size >= FILL_BATCH_POINTS:
            _place(values, present, locate, batch)
            batch, size = [], 0
    _place(values, present, locate, batch)
    return Aggregate(grid, present.sum(axis=0), statistics(values, present, stats))


def _locator(grid: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A function giving each step's column in `grid`, or -1 off it: a lookup table over the
    grid's span when that is small enough, else a binary search."""
    if not len(grid) or grid[-1] - grid[0] >= MAX_LOOKUP_STEPS:
        return lambda steps: _searched(grid, steps)
    base, span = int(grid[0]), int(grid[-1] - grid[0]) + 1
    table = np.full(span + 1, -1, np.int64)  # the last entry answers for steps outside
    table[grid - base] = np.arange(len(grid))
    return lambda steps: table[np.clip(steps - base, -1, span)]


def _searched(grid: np.ndarray, steps: np.ndarray) -> np.ndarray:
    at = np.searchsorted(grid, steps)
    on_grid = at < len(grid)
    on_grid[on_grid] = grid[at[on_grid]] == steps[on_grid]
    return np.where(on_grid, at, -1)


def _place(
    values: np.ndarray,
    present: np.ndarray,
    locate: Callable[[np.ndarray], np.ndarray],
    batch: list[tuple[int, SeriesArrays]],
) -> None:
    if not batch:
        return
    steps = np.concatenate([part.steps for _, part in batch])
    columns = locate(steps)
    keep = columns >= 0
    rows = np.repeat([run for run, _ in batch], [len(part.steps) for _, part in batch])[keep]
    values[rows, columns[keep]] = np.concatenate([part.values for _, part in batch])[keep]
    present[rows, columns[keep]] = True


def statistics(
    values: np.ndarray, present: np.ndarray, stats: Sequence[str]
) -> dict[str, np.ndarray]:
    """Column-wise `stats` of `values` (runs x steps) over the entries `present` marks."""
    if not len(values):  # no run found: NaN at every step (numpy's min and max refuse 0 rows)
        return {stat: np.full(values.shape[1], np.nan) for stat in stats}
    with np.errstate(all="ignore"):
        n = present.sum(axis=0)
        ordered = np.sort(values, axis=0) if any(s in QUANTILES for s in stats) else None
        return {stat: _one(stat, values, present, n, ordered) for stat in stats}


def _one(
    stat: str, values: np.ndarray, present: np.ndarray, n: np.ndarray, ordered: np.ndarray | None
) -> np.ndarray:
    if stat in QUANTILES:
        assert ordered is not None
        return _quantile(ordered, present, n, QUANTILES[stat])
    if stat == "mean":
        return _mean(values, present, n)
    if stat == "std":
        deviations = np.where(present, values - _mean(values, present, n), 0.0)
        return np.asarray(np.sqrt(np.sum(deviations * deviations, axis=0) / n))
    if stat == "min":
        return np.asarray(np.min(np.where(present, values, np.inf), axis=0))
    if stat == "max":
        return np.asarray(np.max(np.where(present, values, -np.inf), axis=0))
    if stat == "gmean":
        return np.asarray(np.exp(_mean(np.log(values), present, n)))
    raise ValueError(f"unknown statistic {stat!r}")


def _mean(values: np.ndarray, present: np.ndarray, n: np.ndarray) -> np.ndarray:
    return np.asarray(np.sum(np.where(present, values, 0.0), axis=0) / n)


def _quantile(ordered: np.ndarray, present: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """numpy's default ("linear") quantile over each column's first n sorted entries; absent
    entries are NaN and sort last, so a column holding a real NaN (sorted among them) is NaN."""
    columns = np.arange(ordered.shape[1])
    position = (np.maximum(n, 1) - 1) * q
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, np.maximum(n, 1) - 1)
    fraction = position - below
    low, high = ordered[below, columns], ordered[above, columns]
    step = high - low
    # numpy's _lerp: from the nearer end, so q=1 gives the maximum exactly.
    result = np.where(fraction >= 0.5, high - step * (1 - fraction), low + step * fraction)
    has_nan = np.isnan(ordered[np.maximum(n, 1) - 1, columns]) | (n == 0)
    return np.where(has_nan, np.nan, result)
