"""The numba trainer: members on the CPU, stepping together in one compiled call per block
(worker/kernels.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.inits import DATA_SALT, SAMPLE_SALT, initial_layers, stream_key
from core.metrics import LOGGED_METRICS, METRIC_NAMES
from core.spec import ExperimentSpec, data_key
from worker import kernels
from worker.trainers import parts as threading_parts
from worker.trainers.base import (
    MetricBlock,
    common_step,
    diverged,
    load_snapshot,
    metric_blocks,
    save_snapshot,
)
from worker.trainers.prefetch import Prefetcher


class Group:
    """Members that train together, all at the same step, on the CPU (numba kernels)."""

    def __init__(
        self, specs: list[ExperimentSpec], resumes: list[bytes | None], threads: int = 1
    ) -> None:
        self.specs = specs
        first = specs[0]
        self.dtype = np.float32 if first.dtype == "float32" else np.float64
        self.metric_names = LOGGED_METRICS[first.optimizer]
        self.total_steps, self.log_every = first.steps, first.log_every
        layers = [initial_layers(spec) for spec in specs]
        for m, resume in enumerate(resumes):
            if resume is not None:
                layers[m] = load_snapshot(resume)[1]
        self.step = common_step(resumes)
        self._pack(layers)
        self._make_streams(first)
        self.parts = [
            self._part(members) for members in threading_parts.split(self.stream_of, threads)
        ]
        self.threads = threads
        lone = len(self.parts) == 1 and threads > 1  # one part: the other threads are idle
        self.prefetch = self._prefetcher() if self.resample and lone else None
        self._tables: dict[int, np.ndarray] = {}
        self.active = np.ones(len(specs), dtype=np.bool_)
        self.errors: list[str | None] = [None] * len(specs)

    def _pack(self, layers: list[list[np.ndarray]]) -> None:
        members, depth_max = len(layers), max(len(member) for member in layers)
        self.depth = np.array([len(member) for member in layers], dtype=np.int64)
        self.rows = np.zeros((members, depth_max), dtype=np.int64)
        self.cols = np.zeros((members, depth_max), dtype=np.int64)
        self.offset = np.zeros((members, depth_max), dtype=np.int64)
        position, self.spans = 0, []
        for m, member in enumerate(layers):
            start = position
            for i, layer in enumerate(member):
                self.rows[m, i], self.cols[m, i] = layer.shape
                self.offset[m, i] = position
                position += layer.size
            self.spans.append((start, position))
        self.params = np.empty(position, dtype=self.dtype)
        for m, member in enumerate(layers):
            for i, layer in enumerate(member):
                self.params[self.offset[m, i] : self.offset[m, i] + layer.size] = layer.ravel()
        self.lr = np.array([spec.lr for spec in self.specs], dtype=np.float64)
        self.loss = np.array(
            [kernels.LOGISTIC if s.loss == "logistic" else kernels.EXPONENTIAL for s in self.specs]
        )

    def _make_streams(self, first: ExperimentSpec) -> None:
        streams: dict[tuple, int] = {}
        self.stream_of = np.array(
            [streams.setdefault(data_key(spec), len(streams)) for spec in self.specs]
        )
        salt = SAMPLE_SALT if first.optimizer == "gd" else DATA_SALT
        by_stream = {index: key for key, index in streams.items()}
        self.keys = np.array(
            [stream_key(by_stream[s][0], salt) for s in range(len(streams))], dtype=np.uint64
        )
        self.teachers = np.array([by_stream[s][1] for s in range(len(streams))])
        size = first.n_samples if first.optimizer == "gd" else first.batch_size
        self.x = np.empty((1, len(streams), first.dim, size), dtype=self.dtype)
        self.y = np.empty((1, len(streams), size), dtype=self.dtype)
        self.distribution = (
            kernels.UNIFORM_SPHERE if first.distribution == "uniform_sphere" else kernels.GAUSSIAN
        )
        self.resample = first.optimizer == "sgd"
        if not self.resample:
            for s in range(len(streams)):
                kernels.fill_batch(
                    self.x[0, s], self.y[0, s], self.teachers[s], self.keys[s], 0, self.distribution
                )

    def _part(self, members: np.ndarray) -> _Part:
        """Inputs of the members `members` that stay the same from block to block; a part
        has its own copy of its streams' batches, as its thread draws them itself."""
        if len(members) == len(self.specs):
            return _Part(
                members, self.offset, self.rows, self.cols, self.depth, self.lr, self.loss,
                self.stream_of, self.keys, self.teachers, self.x, self.y,
            )  # fmt: skip
        streams, stream_of = np.unique(self.stream_of[members], return_inverse=True)
        return _Part(
            members, self.offset[members], self.rows[members], self.cols[members],
            self.depth[members], self.lr[members], self.loss[members], stream_of,
            self.keys[streams], self.teachers[streams], self.x[:, streams], self.y[:, streams],
        )  # fmt: skip

    def _prefetcher(self) -> Prefetcher:
        """Draws the batches ahead on a spare thread."""
        return Prefetcher(
            self.keys, self.teachers, self.distribution, self.x.shape[2:], self.dtype,
            self.total_steps, threading_parts.pool(self.threads),
        )  # fmt: skip

    def advance(self, count: int) -> list[MetricBlock]:
        """Up to `count` iterations: log when due, then update (the final step only logs)."""
        out = self._table(-1, count + 1, len(self.specs))
        out_steps = np.empty(count + 1, dtype=np.int64)
        if self.prefetch is not None:
            logged = self._advance_drawn_ahead(count, out, out_steps)
        elif len(self.parts) == 1:
            logged, self.step = kernels.train_block(self._inputs(count, out, out_steps))
        else:
            logged, self.step = self._advance_parts(count, out, out_steps)
        self._check_finite()
        steps = out_steps[:logged].copy()
        return metric_blocks(self.metric_names, steps, out[:logged], self.step, self.snapshot)

    def _table(self, key: int, rows: int, members: int) -> np.ndarray:
        """A NaN-filled (rows, members, metrics) table, reusing the memory of earlier blocks:
        fresh pages cost more than filling them."""
        table = self._tables.get(key)
        if table is None or len(table) < rows:
            table = self._tables[key] = np.empty((rows, members, len(METRIC_NAMES)))
        table[:rows] = np.nan
        return table[:rows]

    def _advance_drawn_ahead(self, count: int, out: np.ndarray, out_steps: np.ndarray) -> int:
        """The block in windows of batches drawn ahead (self.prefetch); returns rows logged."""
        logged = done = 0
        while done < count:
            x, y = self.prefetch.batches(self.step, count - done)
            inputs = self._inputs(len(x), out[logged:], out_steps[logged:])
            rows, self.step = kernels.train_block(inputs._replace(x=x, y=y, drawn=True))
            logged, done = logged + rows, done + len(x)
        return logged

    def _advance_parts(self, count: int, out: np.ndarray, out_steps: np.ndarray) -> tuple[int, int]:
        """Each part's block on its own thread (the kernels release the GIL); every part logs
        the same steps and reaches the same step."""
        part_outs = [self._table(i, count + 1, len(p.members)) for i, p in enumerate(self.parts)]
        # every part logs the same steps: the first writes them, the others into scratch
        steps_outs = [out_steps] + [np.empty_like(out_steps) for _ in self.parts[1:]]
        inputs = [
            self._inputs(count, part_out, steps_out, part, self.active[part.members])
            for part, part_out, steps_out in zip(self.parts, part_outs, steps_outs, strict=True)
        ]
        results = list(threading_parts.pool(self.threads).map(kernels.train_block, inputs))
        for part, part_out in zip(self.parts, part_outs, strict=True):
            out[:, part.members] = part_out
        return results[0]

    def _inputs(
        self,
        count: int,
        out: np.ndarray,
        out_steps: np.ndarray,
        part: _Part | None = None,
        active: np.ndarray | None = None,
    ) -> kernels.BlockInputs:
        part = part or self.parts[0]
        return kernels.BlockInputs(
            self.params, part.offset, part.rows, part.cols, part.depth, part.lr, part.loss,
            self.active if active is None else active, part.stream_of, part.keys,
            part.teachers, part.x, part.y, self.distribution, self.resample, False, self.step,
            count, self.total_steps, self.log_every, out, out_steps, kernels.COLUMNS,
        )  # fmt: skip

    def _check_finite(self) -> None:
        if np.isfinite(self.params).all():  # the usual case, in one pass
            return
        for m in np.flatnonzero(self.active):
            start, end = self.spans[m]
            if not np.isfinite(self.params[start:end]).all():
                self.active[m] = False
                self.errors[m] = diverged(self.step)

    def layers(self, m: int) -> list[np.ndarray]:
        return [
            self.params[self.offset[m, i] : self.offset[m, i] + self.rows[m, i] * self.cols[m, i]]
            .reshape(self.rows[m, i], self.cols[m, i])
            .copy()
            for i in range(self.depth[m])
        ]

    def snapshot(self, m: int) -> bytes:
        return save_snapshot(self.step, self.layers(m))


@dataclass
class _Part:
    """Members that one thread steps, with their rows of the group's layout and their own
    copies of the batches of the streams they read (`stream_of` indexes those)."""

    members: np.ndarray
    offset: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    depth: np.ndarray
    lr: np.ndarray
    loss: np.ndarray
    stream_of: np.ndarray
    keys: np.ndarray
    teachers: np.ndarray
    x: np.ndarray
    y: np.ndarray
