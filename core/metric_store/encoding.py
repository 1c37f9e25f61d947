"""Chunk encoding: a metric's points as arrays, and one chunk row's packed bytes and sketch.

A chunk row holds the points of one (experiment, metric) whose steps fall in
[chunk * CHUNK_STEPS, (chunk + 1) * CHUNK_STEPS): the steps as uint16 offsets from the chunk's
first step and the values as float64, both little-endian, ascending by step. Its sketch keeps,
of every SKETCH_STEPS-wide slice, the first, last, smallest and largest point (M4).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CHUNK_STEPS = 4096
"""Steps covered by one chunk row (offsets are uint16, so at most 65536)."""
MAX_CHUNK = 2**31 - 1
"""The largest chunk index (a 32-bit column): steps stay below (MAX_CHUNK + 1) * CHUNK_STEPS."""
SKETCH_STEPS = 64
"""Width of the slices whose first, last, min and max make a chunk's sketch (divides
CHUNK_STEPS): downsampled reads whose buckets are at least this wide read only sketches."""
OFFSET_DTYPE = np.dtype("<u2")
VALUE_DTYPE = np.dtype("<f8")

Points = Mapping[str, tuple[Any, Any]] | Iterable[tuple[str, int, float | None]]
"""Either {name: (steps, values)} arrays, or (name, step, value) tuples; None means NaN."""


@dataclass(frozen=True)
class SeriesArrays:
    """One metric's points: int64 steps, strictly ascending, and their float64 values."""

    steps: np.ndarray
    values: np.ndarray

    @classmethod
    def empty(cls) -> SeriesArrays:
        return cls(np.empty(0, np.int64), np.empty(0, np.float64))

    def take(self, indices: np.ndarray) -> SeriesArrays:
        return SeriesArrays(self.steps[indices], self.values[indices])


def as_arrays(points: Points) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (int64 steps, float64 values)} of either form of `Points`."""
    if isinstance(points, Mapping):
        return {
            name: (np.asarray(steps, np.int64), np.asarray(values, np.float64))
            for name, (steps, values) in points.items()
        }
    grouped: dict[str, tuple[list[int], list[float | None]]] = {}
    for name, step, value in points:
        steps, values = grouped.setdefault(name, ([], []))
        steps.append(step)
        values.append(value)
    return {
        name: (np.asarray(steps, np.int64), np.asarray(values, np.float64))
        for name, (steps, values) in grouped.items()
    }


def sorted_unique(steps: np.ndarray, values: np.ndarray) -> SeriesArrays:
    """Sort by step; of repeated steps keep the last one given."""
    if steps.shape != values.shape or steps.ndim != 1:
        raise ValueError("steps and values must be 1-d arrays of one length")
    take = _ascending(steps)
    return SeriesArrays(steps, values) if take is None else SeriesArrays(steps[take], values[take])


def _ascending(steps: np.ndarray) -> np.ndarray | None:
    """The indices that sort 1-d `steps` keeping the last of repeated steps, or None if they
    ascend strictly already; raises ValueError for a step out of range."""
    if len(steps) and not 0 <= steps.min() <= steps.max() < (MAX_CHUNK + 1) * CHUNK_STEPS:
        raise ValueError(f"steps must lie in [0, {(MAX_CHUNK + 1) * CHUNK_STEPS})")
    if len(steps) < 2 or (np.diff(steps) > 0).all():
        return None
    order = np.argsort(steps, kind="stable")
    ordered = steps[order]
    last_of_run: np.ndarray = order[np.append(ordered[1:] != ordered[:-1], True)]
    return last_of_run


def run_starts(keys: np.ndarray) -> np.ndarray:
    """Where each run of equal keys begins."""
    if not len(keys):
        return np.empty(0, np.int64)
    return np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))


def by_chunk(series: SeriesArrays) -> list[tuple[int, SeriesArrays]]:
    """The series cut at chunk borders: (chunk index, its points), ascending."""
    return [
        (chunk, SeriesArrays(series.steps[start:end], series.values[start:end]))
        for chunk, start, end in _chunk_cuts(series.steps)
    ]


def _chunk_cuts(steps: np.ndarray) -> list[tuple[int, int, int]]:
    """(chunk, start, end) of each chunk's slice of ascending `steps`."""
    chunk_ids = steps // CHUNK_STEPS
    starts = run_starts(chunk_ids).tolist()
    ends = [*starts[1:], len(chunk_ids)] if starts else []
    return [(int(chunk_ids[start]), start, end) for start, end in zip(starts, ends, strict=True)]


def chunked(points: Points) -> dict[tuple[str, int], SeriesArrays]:
    """Each metric's points sorted, deduplicated (the last value of a step wins) and cut at
    chunk borders, by (metric, chunk). Metrics that share one steps array (a worker's
    blocks) are sorted and cut once."""
    parts: dict[tuple[str, int], SeriesArrays] = {}
    plans: dict[int, _Plan] = {}
    for name, (steps, values) in as_arrays(points).items():
        plan = plans.get(id(steps)) or plans.setdefault(id(steps), _Plan(steps))
        parts.update(((name, chunk), part) for chunk, part in plan.cut(values))
    return parts


class _Plan:
    """`sorted_unique` then `by_chunk` for any values given with one steps array."""

    def __init__(self, steps: np.ndarray) -> None:
        if steps.ndim != 1:
            raise ValueError("steps and values must be 1-d arrays of one length")
        self.size, self.take = len(steps), _ascending(steps)
        self.steps = steps if self.take is None else steps[self.take]
        self.cuts = _chunk_cuts(self.steps)

    def cut(self, values: np.ndarray) -> list[tuple[int, SeriesArrays]]:
        if values.shape != (self.size,):
            raise ValueError("steps and values must be 1-d arrays of one length")
        kept = values if self.take is None else values[self.take]
        return [
            (chunk, SeriesArrays(self.steps[start:end], kept[start:end]))
            for chunk, start, end in self.cuts
        ]


def merge(old: SeriesArrays | None, new: SeriesArrays) -> SeriesArrays:
    """A chunk's stored points with new ones; a step given again keeps the new value."""
    if old is None:
        return new
    steps = np.concatenate([old.steps, new.steps])
    values = np.concatenate([old.values, new.values])
    if old.steps[-1] < new.steps[0]:  # the common case: a run appends to its tail chunk
        return SeriesArrays(steps, values)
    return sorted_unique(steps, values)


def pack(experiment_id: int, name: str, chunk: int, part: SeriesArrays) -> dict[str, Any]:
    """The `metric_chunks` row of one chunk's points, sketch included."""
    offsets = (part.steps - chunk * CHUNK_STEPS).astype(OFFSET_DTYPE)
    values = part.values.astype(VALUE_DTYPE)
    slices = offsets // SKETCH_STEPS
    sketch = m4_indices(values, run_starts(slices))
    return {
        "experiment_id": experiment_id,
        "name": name,
        "chunk": chunk,
        "n_points": len(offsets),
        "sketch_offsets_u16": offsets[sketch].tobytes(),
        "sketch_values_f64": values[sketch].tobytes(),
        "offsets_u16": offsets.tobytes(),
        "values_f64": values.tobytes(),
    }


def unpack(rows: Sequence[Sequence[Any]]) -> SeriesArrays:
    """Chunk rows (chunk, offsets, values), ascending by chunk, into one pair of arrays."""
    if not rows:
        return SeriesArrays.empty()
    offsets = np.frombuffer(b"".join(row[1] for row in rows), OFFSET_DTYPE)
    values = np.frombuffer(b"".join(row[2] for row in rows), VALUE_DTYPE)
    counts = [len(row[1]) // OFFSET_DTYPE.itemsize for row in rows]
    bases = np.repeat(np.array([row[0] for row in rows], np.int64) * CHUNK_STEPS, counts)
    return SeriesArrays(bases + offsets, values.astype(np.float64, copy=False))


def unpack_steps(chunk: int, offsets: bytes) -> np.ndarray:
    """One chunk's steps, from its offsets alone."""
    return chunk * CHUNK_STEPS + np.frombuffer(offsets, OFFSET_DTYPE).astype(np.int64)


def clip(
    series: SeriesArrays, start_step: int | None = None, end_step: int | None = None
) -> SeriesArrays:
    """The points with start_step <= step <= end_step (bounds optional)."""
    first = 0 if start_step is None else int(np.searchsorted(series.steps, start_step, "left"))
    last = len(series.steps)
    if end_step is not None:
        last = int(np.searchsorted(series.steps, end_step, "right"))
    if first == 0 and last == len(series.steps):
        return series
    return SeriesArrays(series.steps[first:last], series.values[first:last])


def m4_indices(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Indices of each bucket's first, last, smallest and largest value, ascending; buckets
    begin at `starts`. NaN never counts as an extreme; +-Infinity does."""
    counts = np.diff(starts, append=len(values))
    lows = _first_hit(values, starts, counts, np.fmin)
    highs = _first_hit(values, starts, counts, np.fmax)
    picked = np.zeros(len(values), np.bool_)  # a mask, not np.unique: linear, no sort or hash
    for indices in (starts, starts + counts - 1, lows, highs):
        picked[indices] = True
    return np.flatnonzero(picked)


def _first_hit(
    values: np.ndarray, starts: np.ndarray, counts: np.ndarray, reducer: np.ufunc
) -> np.ndarray:
    """Index of each bucket's first value equal to its reduction (none for all-NaN buckets)."""
    extremes = reducer.reduceat(values, starts)
    hits = np.flatnonzero(values == np.repeat(extremes, counts))
    owners = np.searchsorted(starts, hits, "right")
    found: np.ndarray = hits[run_starts(owners)]
    return found
