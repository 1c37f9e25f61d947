"""Downsampling that keeps a curve's shape (M4), over step buckets equal in step or log step,
snapped to sketch slices where they are wide enough for sketches to answer them."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from core.metric_store.encoding import CHUNK_STEPS, SKETCH_STEPS, SeriesArrays, m4_indices

Spacing = Literal["linear", "log"]


def downsample(series: SeriesArrays, max_points: int, spacing: Spacing = "linear") -> SeriesArrays:
    """At most `max_points` points that keep the curve's shape (M4: in each step bucket, the
    first, last, smallest and largest value). Buckets are equal in step, or in log(1 + step)
    for `spacing="log"`; buckets at least SKETCH_STEPS wide start on multiples of SKETCH_STEPS.
    NaN never counts as an extreme; +-Infinity does."""
    count = len(series.steps)
    if count <= max_points:
        return series
    if max_points < 4:
        return series.take(_evenly_spaced(count, max_points))
    return series.take(m4_fitting(series, max_points, spacing))


def m4_fitting(series: SeriesArrays, max_points: int, spacing: Spacing) -> np.ndarray:
    """M4 indices over max_points // 4 buckets, or // 2 when that still fits."""
    low, high = int(series.steps[0]), int(series.steps[-1])
    snap_from = sketch_threshold(low, high, max_points, spacing)
    kept = _m4(series, _bucket_starts(low, high, max_points // 4, spacing, snap_from))
    if 2 * len(kept) <= max_points:
        # Smooth stretches need only first and last per bucket: spend the room on resolution.
        starts = _bucket_starts(low, high, max_points // 2, spacing, snap_from)
        finer = _m4(series, starts)
        kept = finer if len(finer) <= max_points else kept
    return kept


def sketch_threshold(low: int, high: int, max_points: int, spacing: Spacing) -> float:
    """The step from which the finest bucket layout tried is at least SKETCH_STEPS wide."""
    starts = _raw_bucket_starts(low, high, max(max_points // 2, 1), spacing)
    narrow = np.flatnonzero(np.diff(starts, append=high + 1.0) < SKETCH_STEPS)
    if not len(narrow):
        return float(low)
    return float(starts[narrow[-1] + 1]) if narrow[-1] + 1 < len(starts) else math.inf


def combine(sketch: SeriesArrays, raw: SeriesArrays, raw_chunks: list[int]) -> SeriesArrays:
    """The sketch's points outside `raw_chunks` and the raw points, in step order."""
    from_sketch = ~np.isin(sketch.steps // CHUNK_STEPS, raw_chunks)
    steps = np.concatenate([sketch.steps[from_sketch], raw.steps])
    values = np.concatenate([sketch.values[from_sketch], raw.values])
    order = np.argsort(steps, kind="stable")
    return SeriesArrays(steps[order], values[order])


def _raw_bucket_starts(low: int, high: int, buckets: int, spacing: Spacing) -> np.ndarray:
    if spacing == "log":
        return np.expm1(np.linspace(np.log1p(low), np.log1p(high + 1.0), buckets + 1))[:-1]
    return np.linspace(low, high + 1.0, buckets + 1)[:-1]


def _bucket_starts(
    low: int, high: int, buckets: int, spacing: Spacing, snap_from: float
) -> np.ndarray:
    starts = _raw_bucket_starts(low, high, buckets, spacing)
    wide = starts >= snap_from
    starts[wide] = np.floor(starts[wide] / SKETCH_STEPS) * SKETCH_STEPS
    return starts


def _m4(series: SeriesArrays, bucket_starts: np.ndarray) -> np.ndarray:
    """Indices of each bucket's first, last, smallest and largest point, ascending."""
    starts = np.unique(np.searchsorted(series.steps, bucket_starts, "left"))
    starts = starts[starts < len(series.steps)]
    starts[0] = 0  # rounding in expm1 or snapping must not drop the first point
    return m4_indices(series.values, starts)


def _evenly_spaced(count: int, keep: int) -> np.ndarray:
    """`keep` indices spread evenly over range(count), first and last included."""
    return np.unique(np.linspace(0, count - 1, keep).round().astype(np.int64))
