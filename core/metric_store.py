"""Metric storage: packed chunks of steps, idempotent bulk writes, range reads, downsampling,
JSON/CSV/Parquet encoding. The layout and its limits are described in docs/metric-store.md.

One row of `metric_chunks` holds the points of one (experiment, metric) whose steps fall in
[chunk * CHUNK_STEPS, (chunk + 1) * CHUNK_STEPS): the steps as uint16 offsets from the chunk's
first step and the values as float64, both little-endian, ascending by step. A write merges
its points into the chunks they touch (a step written again keeps the newest value), so
replaying a flush after a crash leaves exactly one point per step.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Connection, Engine, Insert, Select, bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.models import MetricChunk

CHUNK_STEPS = 4096
"""Steps covered by one chunk row (offsets are uint16, so at most 65536)."""
MAX_CHUNK = 2**31 - 1
"""The largest chunk index (a 32-bit column): steps stay below (MAX_CHUNK + 1) * CHUNK_STEPS."""
SKETCH_STEPS = 64
"""Width of the slices whose first, last, min and max make a chunk's sketch (divides
CHUNK_STEPS): downsampled reads whose buckets are at least this wide read only sketches."""
MAX_CHUNKS_PER_QUERY = 1000
"""Chunks read back in one statement while merging a write (bounds the bound parameters)."""
CSV_BLOCK_ROWS = 8192
"""Rows formatted per piece of a streamed CSV export."""
EXPORT_WINDOW_CHUNKS = 4
"""Chunks of steps an export reads and encodes at a time: its memory stays bounded by about
EXPORT_WINDOW_CHUNKS * CHUNK_STEPS rows, whatever the run's length."""
OFFSET_DTYPE = np.dtype("<u2")
VALUE_DTYPE = np.dtype("<f8")
NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
"""How NaN and infinities are spelled in JSON strings and CSV fields."""

Spacing = Literal["linear", "log"]
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


# Writing


def write_points(connection: Connection, experiment_id: int, points: Points) -> int:
    """Store points inside the caller's transaction; idempotent per (metric, step), the newest
    value of a step wins. Returns how many distinct points were written."""
    parts = {
        (name, chunk): part
        for name, (steps, values) in _as_arrays(points).items()
        for chunk, part in _by_chunk(_sorted_unique(steps, values))
    }
    keys = list(parts)
    for first in range(0, len(keys), MAX_CHUNKS_PER_QUERY):
        group = keys[first : first + MAX_CHUNKS_PER_QUERY]
        old = _existing_chunks(connection, experiment_id, group)
        rows = [
            _pack(experiment_id, name, chunk, _merge(old.get((name, chunk)), parts[name, chunk]))
            for name, chunk in group
        ]
        _upsert(connection, rows)
    return sum(len(part.steps) for part in parts.values())


def delete_points(connection: Connection, experiment_id: int) -> None:
    """Drop every metric point of an experiment."""
    connection.execute(delete(MetricChunk).where(MetricChunk.experiment_id == experiment_id))


def delete_points_from(connection: Connection, experiment_id: int, step: int) -> None:
    """Drop an experiment's points at `step` and after (a run resuming from a checkpoint at
    `step` writes them again); the chunk holding `step` is rewritten with what precedes it."""
    first = min(step // CHUNK_STEPS, MAX_CHUNK)
    mine = MetricChunk.experiment_id == experiment_id
    connection.execute(delete(MetricChunk).where(mine, MetricChunk.chunk > first))
    boundary = connection.execute(
        select(MetricChunk.name, MetricChunk.chunk, MetricChunk.offsets_u16, MetricChunk.values_f64)
        .where(mine, MetricChunk.chunk == first)
        .with_for_update()
    ).all()
    connection.execute(delete(MetricChunk).where(mine, MetricChunk.chunk == first))
    kept = [(row[0], _clip(_unpack([row[1:]]), end_step=step - 1)) for row in boundary]
    rows = [_pack(experiment_id, name, first, part) for name, part in kept if len(part.steps)]
    if rows:
        _upsert(connection, rows)


def count_points(connection: Connection | Session, experiment_id: int) -> int:
    """How many points an experiment has stored, over all metrics."""
    query = select(func.coalesce(func.sum(MetricChunk.n_points), 0))
    return int(connection.scalar(query.where(MetricChunk.experiment_id == experiment_id)) or 0)


def count_in_range(
    connection: Connection | Session,
    experiment_ids: Sequence[int],
    names: Sequence[str],
    *,
    start_step: int | None = None,
    end_step: int | None = None,
) -> dict[tuple[int, str], int]:
    """{(experiment, metric): points with start_step <= step <= end_step}, known before any
    point is read: whole chunks count by their `n_points`, only the chunks the range cuts
    are unpacked (their offsets alone)."""
    cut = [step // CHUNK_STEPS for step in (start_step, end_step) if step is not None]
    cut = [chunk for chunk in cut if chunk <= MAX_CHUNK]
    mine = (MetricChunk.experiment_id.in_(experiment_ids), MetricChunk.name.in_(names))
    whole = (
        select(MetricChunk.experiment_id, MetricChunk.name, func.sum(MetricChunk.n_points))
        .where(*mine, MetricChunk.chunk.not_in(cut))
        .group_by(MetricChunk.experiment_id, MetricChunk.name)
    )
    counts = {
        (i, name): int(n) for i, name, n in connection.execute(_range(whole, start_step, end_step))
    }
    edges = select(
        MetricChunk.experiment_id, MetricChunk.name, MetricChunk.chunk, MetricChunk.offsets_u16
    ).where(*mine, MetricChunk.chunk.in_(cut))
    for experiment_id, name, chunk, offsets in connection.execute(edges):
        steps = chunk * CHUNK_STEPS + np.frombuffer(offsets, OFFSET_DTYPE).astype(np.int64)
        inside = _clip(SeriesArrays(steps, steps), start_step, end_step).steps.size
        counts[experiment_id, name] = counts.get((experiment_id, name), 0) + inside
    return counts


def last_chunk(connection: Connection | Session, experiment_id: int) -> int | None:
    """The highest chunk index any metric of the experiment has stored, or None."""
    query = select(func.max(MetricChunk.chunk)).where(MetricChunk.experiment_id == experiment_id)
    return connection.scalar(query)


def _as_arrays(points: Points) -> dict[str, tuple[np.ndarray, np.ndarray]]:
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


def _sorted_unique(steps: np.ndarray, values: np.ndarray) -> SeriesArrays:
    """Sort by step; of repeated steps keep the last one given."""
    if steps.shape != values.shape or steps.ndim != 1:
        raise ValueError("steps and values must be 1-d arrays of one length")
    if len(steps) and not 0 <= steps.min() <= steps.max() < (MAX_CHUNK + 1) * CHUNK_STEPS:
        raise ValueError(f"steps must lie in [0, {(MAX_CHUNK + 1) * CHUNK_STEPS})")
    if len(steps) > 1 and not (np.diff(steps) > 0).all():
        order = np.argsort(steps, kind="stable")
        steps, values = steps[order], values[order]
        last_of_run = np.append(steps[1:] != steps[:-1], True)
        steps, values = steps[last_of_run], values[last_of_run]
    return SeriesArrays(steps, values)


def _run_starts(keys: np.ndarray) -> np.ndarray:
    """Where each run of equal keys begins."""
    if not len(keys):
        return np.empty(0, np.int64)
    return np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))


def _by_chunk(series: SeriesArrays) -> list[tuple[int, SeriesArrays]]:
    chunk_ids = series.steps // CHUNK_STEPS
    starts = _run_starts(chunk_ids).tolist()
    ends = [*starts[1:], len(chunk_ids)] if starts else []
    return [
        (int(chunk_ids[start]), SeriesArrays(series.steps[start:end], series.values[start:end]))
        for start, end in zip(starts, ends, strict=True)
    ]


_EXISTING = (
    select(MetricChunk.name, MetricChunk.chunk, MetricChunk.offsets_u16, MetricChunk.values_f64)
    .where(
        MetricChunk.experiment_id == bindparam("experiment_id"),
        MetricChunk.name.in_(bindparam("names", expanding=True)),
        MetricChunk.chunk.in_(bindparam("chunks", expanding=True)),
    )
    .with_for_update()
)
"""The stored chunks a write touches (a superset), locked on PostgreSQL until commit; built
once, as statement construction would cost more than the merge itself."""


def _existing_chunks(
    connection: Connection, experiment_id: int, keys: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], SeriesArrays]:
    params = {
        "experiment_id": experiment_id,
        "names": sorted({name for name, _ in keys}),
        "chunks": sorted({chunk for _, chunk in keys}),
    }
    return {(row[0], row[1]): _unpack([row[1:]]) for row in connection.execute(_EXISTING, params)}


def _merge(old: SeriesArrays | None, new: SeriesArrays) -> SeriesArrays:
    if old is None:
        return new
    steps = np.concatenate([old.steps, new.steps])
    values = np.concatenate([old.values, new.values])
    if old.steps[-1] < new.steps[0]:  # the common case: a run appends to its tail chunk
        return SeriesArrays(steps, values)
    return _sorted_unique(steps, values)


def _pack(experiment_id: int, name: str, chunk: int, part: SeriesArrays) -> dict:
    offsets = (part.steps - chunk * CHUNK_STEPS).astype(OFFSET_DTYPE)
    values = part.values.astype(VALUE_DTYPE)
    slices = offsets // SKETCH_STEPS
    sketch = _m4_indices(values, _run_starts(slices))
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


def _upsert(connection: Connection, rows: list[dict]) -> None:
    """INSERT ... ON CONFLICT DO UPDATE: one statement per batch on SQLite and PostgreSQL."""
    connection.execute(_upsert_statement(connection.dialect.name), rows)


@functools.cache
def _upsert_statement(dialect: str) -> Insert:
    inserts = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
    if dialect not in inserts:
        raise NotImplementedError(f"metric store: unsupported database {dialect}")
    statement = inserts[dialect](MetricChunk)
    columns = ("n_points", "sketch_offsets_u16", "sketch_values_f64", "offsets_u16", "values_f64")
    return statement.on_conflict_do_update(
        index_elements=["experiment_id", "name", "chunk"],
        set_={column: statement.excluded[column] for column in columns},
    )


# Reading


def read_series(
    connection: Connection | Session,
    experiment_id: int,
    name: str,
    *,
    start_step: int | None = None,
    end_step: int | None = None,
) -> SeriesArrays:
    """One metric's points with start_step <= step <= end_step (bounds optional)."""
    query = _range(_chunk_query(experiment_id, name), start_step, end_step)
    return _clip(_unpack(connection.execute(query).all()), start_step, end_step)


def read_many(
    connection: Connection | Session,
    experiment_ids: Sequence[int],
    name: str,
    *,
    start_step: int | None = None,
    end_step: int | None = None,
) -> dict[int, SeriesArrays]:
    """One metric of many experiments in one query; experiments without points are absent."""
    query = (
        select(
            MetricChunk.experiment_id,
            MetricChunk.chunk,
            MetricChunk.offsets_u16,
            MetricChunk.values_f64,
        )
        .where(MetricChunk.experiment_id.in_(experiment_ids), MetricChunk.name == name)
        .order_by(MetricChunk.experiment_id, MetricChunk.chunk)
    )
    rows = connection.execute(_range(query, start_step, end_step)).all()
    return {
        experiment_id: _clip(_unpack([row[1:] for row in group]), start_step, end_step)
        for experiment_id, group in itertools.groupby(rows, key=lambda row: row[0])
    }


def _chunk_query(experiment_id: int, name: str) -> Select:
    return (
        select(MetricChunk.chunk, MetricChunk.offsets_u16, MetricChunk.values_f64)
        .where(MetricChunk.experiment_id == experiment_id, MetricChunk.name == name)
        .order_by(MetricChunk.chunk)
    )


def _range(query: Select, start_step: int | None = None, end_step: int | None = None) -> Select:
    # `chunk` is a 32-bit column: PostgreSQL refuses larger bounds rather than compare them.
    if start_step is not None:
        query = query.where(MetricChunk.chunk >= min(start_step // CHUNK_STEPS, MAX_CHUNK))
    if end_step is not None:
        query = query.where(MetricChunk.chunk <= min(end_step // CHUNK_STEPS, MAX_CHUNK))
    return query


def _unpack(rows: Sequence[Sequence[Any]]) -> SeriesArrays:
    """Chunk rows (chunk, offsets, values), ascending by chunk, into one pair of arrays."""
    if not rows:
        return SeriesArrays.empty()
    offsets = np.frombuffer(b"".join(row[1] for row in rows), OFFSET_DTYPE)
    values = np.frombuffer(b"".join(row[2] for row in rows), VALUE_DTYPE)
    counts = [len(row[1]) // OFFSET_DTYPE.itemsize for row in rows]
    bases = np.repeat(np.array([row[0] for row in rows], np.int64) * CHUNK_STEPS, counts)
    return SeriesArrays(bases + offsets, values.astype(np.float64, copy=False))


def _clip(
    series: SeriesArrays, start_step: int | None = None, end_step: int | None = None
) -> SeriesArrays:
    first = 0 if start_step is None else np.searchsorted(series.steps, start_step, "left")
    last = len(series.steps)
    if end_step is not None:
        last = np.searchsorted(series.steps, end_step, "right")
    if first == 0 and last == len(series.steps):
        return series
    return SeriesArrays(series.steps[first:last], series.values[first:last])


# Downsampling


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
    return series.take(_m4_fitting(series, max_points, spacing))


def _m4_fitting(series: SeriesArrays, max_points: int, spacing: Spacing) -> np.ndarray:
    """M4 indices over max_points // 4 buckets, or // 2 when that still fits."""
    low, high = int(series.steps[0]), int(series.steps[-1])
    snap_from = _sketch_threshold(low, high, max_points, spacing)
    kept = _m4(series, _bucket_starts(low, high, max_points // 4, spacing, snap_from))
    if 2 * len(kept) <= max_points:
        # Smooth stretches need only first and last per bucket: spend the room on resolution.
        starts = _bucket_starts(low, high, max_points // 2, spacing, snap_from)
        finer = _m4(series, starts)
        kept = finer if len(finer) <= max_points else kept
    return kept


def read_downsampled(
    connection: Connection | Session,
    experiment_id: int,
    name: str,
    *,
    max_points: int,
    spacing: Spacing = "linear",
    start_step: int | None = None,
    end_step: int | None = None,
) -> SeriesArrays:
    """`downsample(read_series(...))`, the same points, reading raw chunks only where buckets
    are narrower than SKETCH_STEPS or cut by the range, and sketches elsewhere."""
    bounds = {"start_step": start_step, "end_step": end_step}
    many = read_many_downsampled(
        connection, [experiment_id], name, max_points=max_points, spacing=spacing, **bounds
    )
    return many.get(experiment_id, SeriesArrays.empty())


def read_many_downsampled(
    connection: Connection | Session,
    experiment_ids: Sequence[int],
    name: str,
    *,
    max_points: int,
    spacing: Spacing = "linear",
    start_step: int | None = None,
    end_step: int | None = None,
) -> dict[int, SeriesArrays]:
    """`read_downsampled` for many experiments in two queries (sketches, then the raw chunks
    they need); experiments without points are absent."""
    bounds = {"start_step": start_step, "end_step": end_step}
    query = _range(_sketch_query(experiment_ids, name), **bounds)
    sketches = {
        experiment_id: [row[1:] for row in group]
        for experiment_id, group in itertools.groupby(connection.execute(query), lambda r: r[0])
    }
    plans = {i: _raw_plan(rows, bounds, max_points, spacing) for i, rows in sketches.items()}
    raws = _raw_rows(connection, name, plans, bounds)
    result = {}
    for experiment_id, rows in sketches.items():
        raw = _clip(_unpack(raws.get(experiment_id, [])), **bounds)
        if len(plans[experiment_id]) == len(rows):  # read whole: too few points for sketches
            result[experiment_id] = downsample(raw, max_points, spacing)
            continue
        points = len(raw.steps) + sum(r[3] for r in rows if r[0] not in plans[experiment_id])
        if points <= max_points:  # a narrow range: every point goes out
            result[experiment_id] = read_series(connection, experiment_id, name, **bounds)
            continue
        combined = _combine(_clip(_unpack(rows), **bounds), raw, plans[experiment_id])
        result[experiment_id] = combined.take(_m4_fitting(combined, max_points, spacing))
    return result


def _sketch_query(experiment_ids: Sequence[int], name: str) -> Select:
    columns = (MetricChunk.sketch_offsets_u16, MetricChunk.sketch_values_f64, MetricChunk.n_points)
    return (
        select(MetricChunk.experiment_id, MetricChunk.chunk, *columns)
        .where(MetricChunk.experiment_id.in_(experiment_ids), MetricChunk.name == name)
        .order_by(MetricChunk.experiment_id, MetricChunk.chunk)
    )


def _raw_plan(
    rows: Sequence[Sequence[Any]], bounds: dict, max_points: int, spacing: Spacing
) -> list[int]:
    """The chunks to read raw: all of them for a series too short for sketches; otherwise
    those where buckets are narrower than a sketch slice (plus one chunk, as the exact first
    and last steps may move that border), and the range's first and last chunk (they hold its
    exact first and last step)."""
    sketch = _clip(_unpack(rows), **bounds)
    if max_points < 4 or sum(row[3] for row in rows) <= max_points or not len(sketch.steps):
        return [row[0] for row in rows]
    low, high = int(sketch.steps[0]), int(sketch.steps[-1])
    below = _sketch_threshold(low, high, max_points, spacing) + CHUNK_STEPS
    narrow = [row[0] for row in rows if row[0] * CHUNK_STEPS < below]
    return list(dict.fromkeys([*narrow, rows[0][0], rows[-1][0]]))


def _raw_rows(
    connection: Connection | Session, name: str, plans: dict[int, list[int]], bounds: dict
) -> dict[int, list]:
    """The planned raw chunks of every experiment, in one query (over the union of chunk
    indices, then filtered)."""
    chunks = sorted({chunk for plan in plans.values() for chunk in plan})
    if not chunks:
        return {}
    query = (
        select(
            MetricChunk.chunk,
            MetricChunk.offsets_u16,
            MetricChunk.values_f64,
            MetricChunk.experiment_id,
        )
        .where(MetricChunk.experiment_id.in_(list(plans)), MetricChunk.name == name)
        .where(MetricChunk.chunk.in_(chunks))
        .order_by(MetricChunk.experiment_id, MetricChunk.chunk)
    )
    wanted = {i: set(plan) for i, plan in plans.items()}
    grouped: dict[int, list] = {}
    for row in connection.execute(_range(query, **bounds)):
        if row[0] in wanted[row[3]]:
            grouped.setdefault(row[3], []).append(row[:3])
    return grouped


def _combine(sketch: SeriesArrays, raw: SeriesArrays, raw_chunks: list[int]) -> SeriesArrays:
    """The sketch's points outside `raw_chunks` and the raw points, in step order."""
    from_sketch = ~np.isin(sketch.steps // CHUNK_STEPS, raw_chunks)
    steps = np.concatenate([sketch.steps[from_sketch], raw.steps])
    values = np.concatenate([sketch.values[from_sketch], raw.values])
    order = np.argsort(steps, kind="stable")
    return SeriesArrays(steps[order], values[order])


def _sketch_threshold(low: int, high: int, max_points: int, spacing: Spacing) -> float:
    """The step from which the finest bucket layout tried is at least SKETCH_STEPS wide."""
    starts = _raw_bucket_starts(low, high, max(max_points // 2, 1), spacing)
    narrow = np.flatnonzero(np.diff(starts, append=high + 1.0) < SKETCH_STEPS)
    if not len(narrow):
        return float(low)
    return float(starts[narrow[-1] + 1]) if narrow[-1] + 1 < len(starts) else math.inf


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
    return _m4_indices(series.values, starts)


def _m4_indices(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    counts = np.diff(starts, append=len(values))
    lows = _first_hit(values, starts, counts, np.fmin)
    highs = _first_hit(values, starts, counts, np.fmax)
    return np.unique(np.concatenate([starts, starts + counts - 1, lows, highs]))


def _first_hit(
    values: np.ndarray, starts: np.ndarray, counts: np.ndarray, reducer: np.ufunc
) -> np.ndarray:
    """Index of each bucket's first value equal to its reduction (none for all-NaN buckets)."""
    extremes = reducer.reduceat(values, starts)
    hits = np.flatnonzero(values == np.repeat(extremes, counts))
    owners = np.searchsorted(starts, hits, "right")
    return hits[_run_starts(owners)]


def _evenly_spaced(count: int, keep: int) -> np.ndarray:
    """`keep` indices spread evenly over range(count), first and last included."""
    return np.unique(np.linspace(0, count - 1, keep).round().astype(np.int64))


# Encoding


def series_json(series: SeriesArrays) -> dict[str, Any]:
    """{"steps", "values"} for orjson (OPT_SERIALIZE_NUMPY); non-finite values as strings."""
    values: Any = np.ascontiguousarray(series.values)
    if not np.isfinite(values).all():
        values = [_spell(value) for value in values.tolist()]
    return {"steps": np.ascontiguousarray(series.steps), "values": values}


def dumps(content: Any) -> bytes:
    """JSON bytes of a response holding numpy arrays."""
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def _spell(value: float) -> float | str:
    return value if value - value == 0 else NON_FINITE[repr(value)]


def windows(
    engine: Engine,
    experiment_id: int,
    names: Sequence[str],
    *,
    start_step: int | None = None,
    end_step: int | None = None,
) -> Iterator[dict[str, SeriesArrays]]:
    """The named series of one experiment, EXPORT_WINDOW_CHUNKS chunks of steps at a time,
    each window read on a short connection of its own: what exports stream from."""
    with engine.connect() as connection:
        last = last_chunk(connection, experiment_id)
    if last is None:
        return
    span = EXPORT_WINDOW_CHUNKS * CHUNK_STEPS
    low = start_step or 0
    high = (
        (last + 1) * CHUNK_STEPS - 1
        if end_step is None
        else min(end_step, (last + 1) * CHUNK_STEPS - 1)
    )
    for window_start in range(low - low % span, high + 1, span):
        bounds = {
            "start_step": max(low, window_start),
            "end_step": min(high, window_start + span - 1),
        }
        with engine.connect() as connection:
            named = {name: read_series(connection, experiment_id, name, **bounds) for name in names}
        yield named


def csv_stream(
    names: Sequence[str], parts: Iterable[Mapping[str, SeriesArrays]]
) -> Iterator[bytes]:
    """CSV text in pieces: a header `step,<name>...`, then one row per step that any metric
    logged; an empty field means that metric has no point at that step."""
    yield (",".join(["step", *names]) + "\r\n").encode()
    for named in parts:
        steps, columns = _aligned(named, lambda series: _csv_fields(series.values))
        step_text = [str(step) for step in steps.tolist()]
        for start in range(0, len(step_text), CSV_BLOCK_ROWS):
            block = slice(start, start + CSV_BLOCK_ROWS)
            rows = zip(step_text[block], *(column[block] for column in columns), strict=True)
            yield "".join(",".join(row) + "\r\n" for row in rows).encode()


def parquet_stream(
    names: Sequence[str], parts: Iterable[Mapping[str, SeriesArrays]]
) -> Iterator[bytes]:
    """A Parquet file in pieces, one row group per part: column `step` (int64) and one float64
    column per metric; null where a metric has no point at that step, NaN and infinities
    stored as IEEE values."""
    schema = pa.schema([("step", pa.int64()), *((name, pa.float64()) for name in names)])
    sink = _Sink()
    with pq.ParquetWriter(sink, schema) as writer:
        for named in parts:
            writer.write_table(_parquet_table(named, schema))
            yield sink.take()
    yield sink.take()


def _parquet_table(named: Mapping[str, SeriesArrays], schema: pa.Schema) -> pa.Table:
    steps = _union_steps(named)
    columns = [pa.array(steps, pa.int64())]
    for series in named.values():
        if np.array_equal(series.steps, steps):
            columns.append(pa.array(series.values, pa.float64()))
            continue
        present = np.zeros(len(steps), bool)
        present[np.searchsorted(steps, series.steps)] = True
        column = np.full(len(steps), np.nan)
        column[present] = series.values
        columns.append(pa.array(column, pa.float64(), mask=~present))
    return pa.Table.from_arrays(columns, schema=schema)


class _Sink(io.RawIOBase):
    """A write-only file that hands over what was written since the last `take()`."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # noqa: ANN001 (any bytes-like object)
        piece = bytes(data)
        self._pieces.append(piece)
        self._position += len(piece)
        return len(piece)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        taken, self._pieces = b"".join(self._pieces), []
        return taken


def _union_steps(named: Mapping[str, SeriesArrays]) -> np.ndarray:
    arrays = [series.steps for series in named.values()]
    if not arrays:
        return np.empty(0, np.int64)
    if all(np.array_equal(steps, arrays[0]) for steps in arrays[1:]):
        return arrays[0]  # the usual case: every metric logged at the same steps
    steps = np.sort(np.concatenate(arrays))
    return steps[_run_starts(steps)]


def _aligned(named: Mapping[str, SeriesArrays], fields: Any) -> tuple[np.ndarray, list[list]]:
    steps = _union_steps(named)
    columns = []
    for series in named.values():
        if np.array_equal(series.steps, steps):
            columns.append(fields(series))
            continue
        column = [""] * len(steps)
        for position, field in zip(
            np.searchsorted(steps, series.steps).tolist(), fields(series), strict=True
        ):
            column[position] = field
        columns.append(column)
    return steps, columns


def _csv_fields(values: np.ndarray) -> list[str]:
    """Each value as the shortest text that reads back as the same float64 (orjson formats
    them in C, many times faster than repr); non-finite values spelled as in JSON."""
    if not len(values):
        return []
    fields = dumps(np.ascontiguousarray(values))[1:-1].decode().split(",")
    for index in np.flatnonzero(~np.isfinite(values)).tolist():
        fields[index] = NON_FINITE[repr(float(values[index]))]
    return fields
