"""A writer's memory of the last chunk it wrote of each series, so that appending to a run's
tail costs the new points only: no re-reading the stored chunk, no re-sketching its closed
slices, and one sketch computation for all the series of a write. The rows it packs are byte
for byte those of `encoding.pack`.

The memory holds only while its owner is the one writer of these series and every write it
took part in committed: `clear()` it when a transaction fails. A writer without memory (a
resumed run) reads each tail from the database once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from core.metric_store.encoding import (
    CHUNK_STEPS,
    OFFSET_DTYPE,
    SKETCH_STEPS,
    VALUE_DTYPE,
    SeriesArrays,
    m4_indices,
    merge,
    run_starts,
)

SLICES = CHUNK_STEPS // SKETCH_STEPS
Write = tuple[str, int, SeriesArrays | None, SeriesArrays]
"""(metric, chunk, the chunk as stored when the memory does not hold it, the new points)."""


class _Tail:
    """One chunk's points in buffers that grow in place, with the sketch of its closed slices
    (all but the last one, which later points may still join)."""

    def __init__(self, chunk: int) -> None:
        self.chunk = chunk
        self.offsets = np.empty(0, OFFSET_DTYPE)
        self.values = np.empty(0, VALUE_DTYPE)
        self.count = self.open_from = 0
        self.closed_sketch = self.open_sketch = np.empty(0, np.int64)

    def last_step(self) -> int:
        return self.chunk * CHUNK_STEPS + int(self.offsets[self.count - 1])

    def series(self) -> SeriesArrays:
        steps = self.chunk * CHUNK_STEPS + self.offsets[: self.count].astype(np.int64)
        return SeriesArrays(steps, self.values[: self.count].astype(np.float64))

    def append(self, part: SeriesArrays) -> None:
        """Add points that all come after the held ones (their sketch comes with `sketch`)."""
        end = self.count + len(part.steps)
        if end > len(self.offsets):
            self._grow(end)
        self.offsets[self.count : end] = part.steps - self.chunk * CHUNK_STEPS
        self.values[self.count : end] = part.values
        self.count = end

    def _grow(self, needed: int) -> None:
        # Doubling keeps copies rare while a tail chunk that is mostly empty stays small.
        size = min(max(needed, 2 * len(self.offsets)), CHUNK_STEPS)
        self.offsets = np.concatenate(
            [self.offsets[: self.count], np.empty(size - self.count, OFFSET_DTYPE)]
        )
        self.values = np.concatenate(
            [self.values[: self.count], np.empty(size - self.count, VALUE_DTYPE)]
        )

    def open_slices(self) -> np.ndarray:
        return self.offsets[self.open_from : self.count] // SKETCH_STEPS

    def sketch(self, open_indices: np.ndarray, open_slices: np.ndarray) -> None:
        """Take the sketch of the points from `open_from` on (indices counted from there)."""
        last_open = int(np.searchsorted(open_slices, open_slices[-1]))
        closed = open_indices[open_indices < last_open] + self.open_from
        self.closed_sketch = np.concatenate([self.closed_sketch, closed])
        self.open_sketch = open_indices[open_indices >= last_open] + self.open_from
        self.open_from += last_open

    def row(self, experiment_id: int, name: str) -> dict[str, Any]:
        sketch = np.concatenate([self.closed_sketch, self.open_sketch])
        offsets, values = self.offsets[: self.count], self.values[: self.count]
        return {
            "experiment_id": experiment_id,
            "name": name,
            "chunk": self.chunk,
            "n_points": self.count,
            "sketch_offsets_u16": offsets[sketch].tobytes(),
            "sketch_values_f64": values[sketch].tobytes(),
            "offsets_u16": offsets.tobytes(),
            "values_f64": values.tobytes(),
        }


class Tails:
    """The last chunk written of each (experiment, metric), as its stored row holds it."""

    def __init__(self) -> None:
        self._tails: dict[tuple[int, str], _Tail] = {}

    def knows(self, experiment_id: int, name: str, chunk: int) -> bool:
        """Whether the stored chunk needs no reading back: it is the tail held, or a later one,
        which cannot be stored yet (a series is written in ascending chunks, by one writer)."""
        tail = self._tails.get((experiment_id, name))
        return tail is not None and tail.chunk <= chunk

    def pack(self, experiment_id: int, writes: Sequence[Write]) -> list[dict[str, Any]]:
        """The rows of the written chunks once the new points join them, each remembered as
        its series' tail (a series' chunks come in ascending order)."""
        return self.pack_many([(experiment_id, writes)])

    def pack_many(self, batch: Sequence[tuple[int, Sequence[Write]]]) -> list[dict[str, Any]]:
        """`pack` for several experiments, sketched together."""
        touched = [
            (experiment_id, write[0], self._joined(experiment_id, *write))
            for experiment_id, writes in batch
            for write in writes
        ]
        _sketch_all([tail for _, _, tail in touched])
        return [tail.row(experiment_id, name) for experiment_id, name, tail in touched]

    def clear(self) -> None:
        self._tails.clear()

    def _joined(
        self,
        experiment_id: int,
        name: str,
        chunk: int,
        stored: SeriesArrays | None,
        new: SeriesArrays,
    ) -> _Tail:
        tail = self._tails.get((experiment_id, name))
        if tail is not None and tail.chunk == chunk and tail.last_step() < new.steps[0]:
            tail.append(new)
            return tail
        held = tail.series() if tail is not None and tail.chunk == chunk else stored
        tail = self._tails[experiment_id, name] = _Tail(chunk)
        tail.append(merge(held, new))
        return tail


def _sketch_all(tails: list[_Tail]) -> None:
    """Sketch the open points of every tail with one M4 over all of them: numpy's cost per
    call, not per point, is what a write of many short series pays."""
    slices = [tail.open_slices() for tail in tails]
    sizes = np.array([len(piece) for piece in slices])
    bases = np.concatenate([[0], np.cumsum(sizes)])
    # Bucket keys unique across tails: a slice index plus SLICES times the tail's position.
    owners = np.repeat(np.arange(len(tails)) * SLICES, sizes)
    keys = np.concatenate(slices).astype(np.int64) + owners
    values = np.concatenate([tail.values[tail.open_from : tail.count] for tail in tails])
    picked = m4_indices(values, run_starts(keys))
    bounds = np.searchsorted(picked, bases)
    for at, (tail, piece) in enumerate(zip(tails, slices, strict=True)):
        tail.sketch(picked[bounds[at] : bounds[at + 1]] - bases[at], piece)
