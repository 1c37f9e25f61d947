"""The metric store's SQL: idempotent merged writes, deletes, counts, range reads, downsampled
reads from sketches, and the windows exports stream from."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import Connection, Engine, Select, bindparam, delete, func, select
from sqlalchemy.orm import Session

from core.db import upsert
from core.metric_store.downsampling import (
    Spacing,
    combine,
    downsample,
    m4_fitting,
    sketch_threshold,
)
from core.metric_store.encoding import (
    CHUNK_STEPS,
    MAX_CHUNK,
    OFFSET_DTYPE,
    Points,
    SeriesArrays,
    chunked,
    clip,
    merge,
    pack,
    unpack,
    unpack_steps,
)
from core.metric_store.tails import Tails, Write
from core.models import MetricChunk

AnySelect = Select[*tuple[Any, ...]]
SelectT = TypeVar("SelectT", bound=AnySelect)
Bounds = dict[str, int | None]
"""{"start_step": ..., "end_step": ...}: a step range, either end optional."""
MAX_CHUNKS_PER_QUERY = 1000
"""Chunks read back in one statement while merging a write (bounds the bound parameters)."""
ROWS_PER_STATEMENT = 256
"""Chunk rows a write sends in one batch: a tail row holds up to 40 KB, so about 10 MB."""
EXPORT_WINDOW_CHUNKS = 4
"""Chunks of steps an export reads and encodes at a time: its memory stays bounded by about
EXPORT_WINDOW_CHUNKS * CHUNK_STEPS rows, whatever the run's length."""
CHUNK_KEY = ("experiment_id", "name", "chunk")
CHUNK_CONTENT = ("n_points", "sketch_offsets_u16", "sketch_values_f64", "offsets_u16", "values_f64")
"""The columns a write replaces in a stored chunk row."""


# Writing


def write_points(
    connection: Connection, experiment_id: int, points: Points, tails: Tails | None = None
) -> int:
    """Store points inside the caller's transaction; idempotent per (metric, step), the newest
    value of a step wins. Returns how many distinct points were written. With `tails` (the
    caller's memory of what it wrote last), the chunks it holds are not read back."""
    return write_many(connection, [(experiment_id, points)], tails)


def write_many(
    connection: Connection, batches: Sequence[tuple[int, Points]], tails: Tails | None = None
) -> int:
    """`write_points` for several experiments (a worker's group), their chunk rows sent in
    batches of about ROWS_PER_STATEMENT."""
    written, batch, size = 0, [], 0
    for experiment_id, points in batches:
        parts = chunked(points)
        written += sum(len(part.steps) for part in parts.values())
        stored = _stored(connection, experiment_id, list(parts), tails)
        batch.append(
            (experiment_id, [(*key, stored.get(key), part) for key, part in parts.items()])
        )
        size += len(parts)
        if size >= ROWS_PER_STATEMENT:
            _upsert_chunks(connection, batch, tails)
            batch, size = [], 0
    if size:
        _upsert_chunks(connection, batch, tails)
    return written


def _stored(
    connection: Connection, experiment_id: int, keys: list[tuple[str, int]], tails: Tails | None
) -> dict[tuple[str, int], SeriesArrays]:
    """The stored chunks among `keys` that `tails` does not know."""
    unknown = [key for key in keys if tails is None or not tails.knows(experiment_id, *key)]
    stored: dict[tuple[str, int], SeriesArrays] = {}
    for first in range(0, len(unknown), MAX_CHUNKS_PER_QUERY):
        group = unknown[first : first + MAX_CHUNKS_PER_QUERY]
        stored.update(_existing_chunks(connection, experiment_id, group))
    return stored


def _upsert_chunks(
    connection: Connection, batch: list[tuple[int, list[Write]]], tails: Tails | None
) -> None:
    if tails is not None:
        rows = tails.pack_many(batch)
    else:
        rows = [
            pack(experiment_id, name, chunk, merge(stored, new))
            for experiment_id, writes in batch
            for name, chunk, stored, new in writes
        ]
    upsert(connection, MetricChunk, rows, CHUNK_KEY, CHUNK_CONTENT)


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
    kept = [(row[0], clip(unpack([row[1:]]), end_step=step - 1)) for row in boundary]
    rows = [pack(experiment_id, name, first, part) for name, part in kept if len(part.steps)]
    if rows:
        upsert(connection, MetricChunk, rows, CHUNK_KEY, CHUNK_CONTENT)


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
    return {(row[0], row[1]): unpack([row[1:]]) for row in connection.execute(_EXISTING, params)}


# Counting


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
        steps = unpack_steps(chunk, offsets)
        inside = clip(SeriesArrays(steps, steps), start_step, end_step).steps.size
        counts[experiment_id, name] = counts.get((experiment_id, name), 0) + inside
    return counts


def last_chunk(connection: Connection | Session, experiment_id: int) -> int | None:
    """The highest chunk index any metric of the experiment has stored, or None."""
    query = select(func.max(MetricChunk.chunk)).where(MetricChunk.experiment_id == experiment_id)
    return connection.scalar(query)


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
    return clip(unpack(connection.execute(query).all()), start_step, end_step)


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
        experiment_id: clip(unpack([row[1:] for row in group]), start_step, end_step)
        for experiment_id, group in itertools.groupby(rows, key=lambda row: row[0])
    }


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


def _chunk_query(experiment_id: int, name: str) -> AnySelect:
    return (
        select(MetricChunk.chunk, MetricChunk.offsets_u16, MetricChunk.values_f64)
        .where(MetricChunk.experiment_id == experiment_id, MetricChunk.name == name)
        .order_by(MetricChunk.chunk)
    )


def _range(query: SelectT, start_step: int | None = None, end_step: int | None = None) -> SelectT:
    # `chunk` is a 32-bit column: PostgreSQL refuses larger bounds rather than compare them.
    if start_step is not None:
        query = query.where(MetricChunk.chunk >= min(start_step // CHUNK_STEPS, MAX_CHUNK))
    if end_step is not None:
        query = query.where(MetricChunk.chunk <= min(end_step // CHUNK_STEPS, MAX_CHUNK))
    return query


# Downsampled reads


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
        raw = clip(unpack(raws.get(experiment_id, [])), **bounds)
        if len(plans[experiment_id]) == len(rows):  # read whole: too few points for sketches
            result[experiment_id] = downsample(raw, max_points, spacing)
            continue
        points = len(raw.steps) + sum(r[3] for r in rows if r[0] not in plans[experiment_id])
        if points <= max_points:  # a narrow range: every point goes out
            result[experiment_id] = read_series(connection, experiment_id, name, **bounds)
            continue
        combined = combine(clip(unpack(rows), **bounds), raw, plans[experiment_id])
        result[experiment_id] = combined.take(m4_fitting(combined, max_points, spacing))
    return result


def _sketch_query(experiment_ids: Sequence[int], name: str) -> AnySelect:
    columns = (MetricChunk.sketch_offsets_u16, MetricChunk.sketch_values_f64, MetricChunk.n_points)
    return (
        select(MetricChunk.experiment_id, MetricChunk.chunk, *columns)
        .where(MetricChunk.experiment_id.in_(experiment_ids), MetricChunk.name == name)
        .order_by(MetricChunk.experiment_id, MetricChunk.chunk)
    )


def _raw_plan(
    rows: Sequence[Sequence[Any]], bounds: Bounds, max_points: int, spacing: Spacing
) -> list[int]:
    """The chunks to read raw: all of them for a series too short for sketches; otherwise
    those where buckets are narrower than a sketch slice (plus one chunk, as the exact first
    and last steps may move that border), and the range's first and last chunk (they hold its
    exact first and last step)."""
    sketch = clip(unpack(rows), **bounds)
    if max_points < 4 or sum(row[3] for row in rows) <= max_points or not len(sketch.steps):
        return [row[0] for row in rows]
    low, high = int(sketch.steps[0]), int(sketch.steps[-1])
    below = sketch_threshold(low, high, max_points, spacing) + CHUNK_STEPS
    narrow = [row[0] for row in rows if row[0] * CHUNK_STEPS < below]
    return list(dict.fromkeys([*narrow, rows[0][0], rows[-1][0]]))


def _raw_rows(
    connection: Connection | Session, name: str, plans: dict[int, list[int]], bounds: Bounds
) -> dict[int, list[Any]]:
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
    grouped: dict[int, list[Any]] = {}
    for row in connection.execute(_range(query, **bounds)):
        if row[0] in wanted[row[3]]:
            grouped.setdefault(row[3], []).append(row[:3])
    return grouped


# Aggregate reads


def step_grid(
    connection: Connection | Session,
    experiment_ids: Sequence[int],
    name: str,
    *,
    start_step: int | None = None,
    end_step: int | None = None,
) -> np.ndarray:
    """Every step in range at which any of the experiments stored `name`, ascending. Full
    chunks are known from their row count; only the others' offsets are read."""
    mine = (MetricChunk.experiment_id.in_(experiment_ids), MetricChunk.name == name)
    full = MetricChunk.n_points == CHUNK_STEPS
    marks: dict[int, np.ndarray] = {}
    whole = select(MetricChunk.chunk).where(*mine, full).distinct()
    for chunk in connection.scalars(_range(whole, start_step, end_step)):
        marks[chunk] = np.ones(CHUNK_STEPS, bool)
    partial = select(MetricChunk.chunk, MetricChunk.offsets_u16).where(*mine, ~full)
    for chunk, offsets in connection.execute(_range(partial, start_step, end_step)):
        if chunk not in marks:
            marks[chunk] = np.zeros(CHUNK_STEPS, bool)
        marks[chunk][np.frombuffer(offsets, OFFSET_DTYPE)] = True
    if not marks:
        return np.empty(0, np.int64)
    steps = np.concatenate([c * CHUNK_STEPS + np.flatnonzero(marks[c]) for c in sorted(marks)])
    return clip(SeriesArrays(steps, steps), start_step, end_step).steps


AGGREGATE_ROWS_PER_FETCH = 64
"""Chunk rows an aggregate read holds in memory at once (PostgreSQL streams the rest)."""


def chunk_parts(
    connection: Connection | Session,
    experiment_ids: Sequence[int],
    name: str,
    *,
    start_step: int | None = None,
    end_step: int | None = None,
) -> Iterator[tuple[int, SeriesArrays]]:
    """(experiment id, one chunk's points in range) of every experiment, streamed a few rows
    at a time, in no particular order."""
    query = select(
        MetricChunk.experiment_id,
        MetricChunk.chunk,
        MetricChunk.offsets_u16,
        MetricChunk.values_f64,
    ).where(MetricChunk.experiment_id.in_(experiment_ids), MetricChunk.name == name)
    query = _range(query, start_step, end_step)
    for experiment_id, *row in _streamed(connection, query):
        yield experiment_id, clip(unpack([row]), start_step, end_step)


def _streamed(connection: Connection | Session, query: AnySelect) -> Iterator[Sequence[Any]]:
    """The query's rows, AGGREGATE_ROWS_PER_FETCH at a time. On PostgreSQL through a
    server-side cursor in binary format: bytea then arrives as bytes, not hex text, which
    makes reading many large chunks several times faster."""
    outer = connection.connection() if isinstance(connection, Session) else connection
    if outer.dialect.name != "postgresql":
        yield from outer.execute(query.execution_options(yield_per=AGGREGATE_ROWS_PER_FETCH))
        return
    compiled = query.compile(dialect=outer.dialect, compile_kwargs={"render_postcompile": True})
    raw: Any = outer.connection.dbapi_connection  # a psycopg connection
    with raw.cursor(name="aggregate_chunks", binary=True) as cursor:
        cursor.itersize = AGGREGATE_ROWS_PER_FETCH
        cursor.execute(str(compiled), compiled.params)
        yield from cursor
