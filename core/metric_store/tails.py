"""A writer's memory of the last chunk it wrote of each series, so that appending to a run's
tail costs the new points only: no re-reading the stored chunk, no re-sketching its closed
slices. The rows it packs are byte for byte those of `encoding.pack`.

The memory holds only while its owner is the one writer of these series and every write it
took part in committed: `clear()` it when a transaction fails. A writer without memory (a
resumed run) reads each tail from the database once.
"""

from __future__ import annotations

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


class _Tail:
    """One chunk's points in buffers that grow in place, with the sketch of its closed slices
    (all but the last one, which later points may still join)."""

    def __init__(self, chunk: int, part: SeriesArrays) -> None:
        self.chunk = chunk
        self.offsets = np.empty(CHUNK_STEPS, OFFSET_DTYPE)
        self.values = np.empty(CHUNK_STEPS, VALUE_DTYPE)
        self.count = self.open_from = 0
        self.closed_sketch = self.open_sketch = np.empty(0, np.int64)
        self.append(part)

    def last_step(self) -> int:
        return self.chunk * CHUNK_STEPS + int(self.offsets[self.count - 1])

    def series(self) -> SeriesArrays:
        steps = self.chunk * CHUNK_STEPS + self.offsets[: self.count].astype(np.int64)
        return SeriesArrays(steps, self.values[: self.count].astype(np.float64))

    def append(self, part: SeriesArrays) -> None:
        """Add points that all come after the held ones."""
        end = self.count + len(part.steps)
        self.offsets[self.count : end] = part.steps - self.chunk * CHUNK_STEPS
        self.values[self.count : end] = part.values
        self.count = end
        slices = self.offsets[self.open_from : end] // SKETCH_STEPS
        sketch = self.open_from + m4_indices(self.values[self.open_from : end], run_starts(slices))
        last_open = self.open_from + int(run_starts(slices)[-1])
        self.closed_sketch = np.concatenate([self.closed_sketch, sketch[sketch < last_open]])
        self.open_sketch, self.open_from = sketch[sketch >= last_open], last_open

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

    def holds(self, experiment_id: int, name: str, chunk: int) -> bool:
        tail = self._tails.get((experiment_id, name))
        return tail is not None and tail.chunk == chunk

    def pack(
        self,
        experiment_id: int,
        name: str,
        chunk: int,
        stored: SeriesArrays | None,
        new: SeriesArrays,
    ) -> dict[str, Any]:
        """The row of `chunk` once `new` joins it, remembered as the series' tail; `stored`
        is the chunk as read from the database, when this memory does not hold it."""
        tail = self._tails.get((experiment_id, name))
        if tail is not None and tail.chunk == chunk and tail.last_step() < new.steps[0]:
            tail.append(new)
        else:
            held = tail.series() if tail is not None and tail.chunk == chunk else stored
            tail = _Tail(chunk, merge(held, new))
            self._tails[experiment_id, name] = tail
        return tail.row(experiment_id, name)

    def clear(self) -> None:
        self._tails.clear()
