"""Metric storage: packed chunks of steps, idempotent bulk writes, range reads, downsampling.
The layout and its limits are described in docs/metric-store.md.

The package is split by concern: `encoding` (a chunk row's packed bytes and sketch),
`downsampling` (M4 over linear or log buckets, arrays only) and `storage` (all the SQL).
The exports (JSON, CSV, Parquet) live with the API, in service/exports.py.
"""

from core.metric_store.downsampling import Spacing, downsample
from core.metric_store.encoding import (
    CHUNK_STEPS,
    MAX_CHUNK,
    SKETCH_STEPS,
    Points,
    SeriesArrays,
)
from core.metric_store.storage import (
    EXPORT_WINDOW_CHUNKS,
    MAX_CHUNKS_PER_QUERY,
    chunk_parts,
    count_in_range,
    count_points,
    delete_points,
    delete_points_from,
    last_chunk,
    read_downsampled,
    read_many,
    read_many_downsampled,
    read_series,
    step_grid,
    windows,
    write_many,
    write_points,
)
from core.metric_store.tails import Tails

__all__ = [
    "CHUNK_STEPS",
    "EXPORT_WINDOW_CHUNKS",
    "MAX_CHUNK",
    "MAX_CHUNKS_PER_QUERY",
    "SKETCH_STEPS",
    "Points",
    "SeriesArrays",
    "Spacing",
    "Tails",
    "chunk_parts",
    "count_in_range",
    "count_points",
    "delete_points",
    "delete_points_from",
    "downsample",
    "last_chunk",
    "read_downsampled",
    "read_many",
    "read_many_downsampled",
    "read_series",
    "step_grid",
    "windows",
    "write_many",
    "write_points",
]
