"""Metric series as the API sends them: JSON bodies, Arrow IPC streams (for clients that ask
with Accept), and CSV and Parquet files streamed from the store's export windows
(`core.metric_store.windows`). Only the API process loads pyarrow."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from core.metric_store.encoding import SeriesArrays, run_starts

CSV_BLOCK_ROWS = 8192
"""Rows formatted per piece of a streamed CSV export."""
NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
"""How NaN and infinities are spelled in JSON strings and CSV fields."""


# JSON


def series_json(series: SeriesArrays) -> dict[str, Any]:
    """{"steps", "values"} for orjson (OPT_SERIALIZE_NUMPY); non-finite values as strings."""
    return {"steps": np.ascontiguousarray(series.steps), "values": values_json(series.values)}


def values_json(values: np.ndarray) -> Any:
    """Float values for orjson: the array itself, or a list with non-finite values as strings."""
    contiguous = np.ascontiguousarray(values, np.float64)
    if np.isfinite(contiguous).all():
        return contiguous
    return [_spell(value) for value in contiguous.tolist()]


def dumps(content: Any) -> bytes:
    """JSON bytes of a response holding numpy arrays."""
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def _spell(value: float) -> float | str:
    return value if value - value == 0 else NON_FINITE[repr(value)]


# Arrow IPC

ARROW_STREAM = "application/vnd.apache.arrow.stream"
JSON_MEDIA_TYPE = "application/json"
ARROW_SCHEMA = pa.schema(
    [
        ("experiment_id", pa.int64()),
        ("metric", pa.dictionary(pa.int8(), pa.string())),
        ("step", pa.int64()),
        ("value", pa.float64()),
    ]
)
"""The long table every metrics read answers in Arrow: one row per point."""


def wants_arrow(accept: str | None) -> bool:
    """Whether an Accept header asks for an Arrow stream over JSON: Arrow named with q > 0 and
    ranked at least as high as JSON (named, or through application/* or */*)."""
    ranks = _accept_ranks(accept or "")
    arrow = ranks.get(ARROW_STREAM, 0.0)
    json = max(ranks.get(JSON_MEDIA_TYPE, 0.0), ranks.get("application/*", 0.0),
               ranks.get("*/*", 0.0))  # fmt: skip
    return arrow > 0 and arrow >= json


def _accept_ranks(accept: str) -> dict[str, float]:
    ranks = {}
    for item in accept.split(","):
        media_type, *parameters = (part.strip() for part in item.split(";"))
        quality = 1.0
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                quality = _quality(value.strip())
        if media_type:
            ranks[media_type.lower()] = max(quality, ranks.get(media_type.lower(), 0.0))
    return ranks


def _quality(text: str) -> float:
    try:
        return min(max(float(text), 0.0), 1.0)
    except ValueError:
        return 0.0


def arrow_stream(series: Iterable[tuple[int, str, SeriesArrays]]) -> memoryview:
    """An Arrow IPC stream of ARROW_SCHEMA, one record batch per (experiment id, metric,
    series); NaN and infinities are IEEE values. The points are copied once, straight into
    a buffer of the stream's exact size (measured by a first, copy-free pass)."""
    items = list(series)
    names = list(dict.fromkeys(name for _, name, _ in items))
    dictionary = pa.array(names, pa.string())
    batches = [_arrow_batch(experiment_id, names.index(name), dictionary, arrays)
               for experiment_id, name, arrays in items]  # fmt: skip
    measure = pa.MockOutputStream()
    _write_stream(measure, batches)
    body = pa.allocate_buffer(measure.size())
    _write_stream(pa.FixedSizeBufferWriter(body), batches)
    return memoryview(body)


def _arrow_batch(
    experiment_id: int, code: int, dictionary: pa.Array, arrays: SeriesArrays
) -> pa.RecordBatch:
    count = len(arrays.steps)
    columns = [
        pa.array(np.full(count, experiment_id, np.int64)),
        pa.DictionaryArray.from_arrays(pa.array(np.full(count, code, np.int8)), dictionary),
        pa.array(np.ascontiguousarray(arrays.steps, np.int64)),
        pa.array(np.ascontiguousarray(arrays.values, np.float64)),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=ARROW_SCHEMA)


def _write_stream(sink: Any, batches: list[pa.RecordBatch]) -> None:
    with pa.ipc.new_stream(sink, ARROW_SCHEMA) as writer:
        for batch in batches:
            writer.write_batch(batch)


# CSV


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


# Parquet


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
    """Every step any of the series has, ascending."""
    arrays = [series.steps for series in named.values()]
    if not arrays:
        return np.empty(0, np.int64)
    if all(np.array_equal(steps, arrays[0]) for steps in arrays[1:]):
        return arrays[0]  # the usual case: every metric logged at the same steps
    steps = np.sort(np.concatenate(arrays))
    return steps[run_starts(steps)]
