"""Batches drawn ahead on a spare thread: while a numba group's members train on one window of
steps, a second thread draws the batches of the next window (`kernels.draw_block` releases the
GIL), and the training thread draws the rest of it once it has trained. The split follows the
measured times, so both threads finish together. Every batch is a pure function of
(stream key, step), so the members read exactly what they would have drawn themselves."""

from __future__ import annotations

import time
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import numpy as np

from core.cost import PREFETCH_WINDOW_BYTES
from worker import kernels

WINDOW_BYTES = PREFETCH_WINDOW_BYTES
"""Size of one window's batches: two windows live at once, one trained on, one drawn."""
MAX_WINDOW_STEPS = 256


def window_steps(streams: int, dim: int, batch: int, itemsize: int) -> int:
    """Steps in a window: as many as fit in WINDOW_BYTES, at least one."""
    per_step = streams * (dim + 1) * batch * itemsize
    return max(1, min(MAX_WINDOW_STEPS, WINDOW_BYTES // per_step))


@dataclass
class _Window:
    start: int  # the step of slot 0
    x: np.ndarray  # (steps, streams, dim, batch)
    y: np.ndarray  # (steps, streams, batch)

    @property
    def end(self) -> int:
        return self.start + len(self.x)


@dataclass
class _Ahead:
    """A window being drawn: slots [0, split) on the spare thread, the rest by the trainer."""

    window: _Window
    split: int
    spare: Future[float]  # the spare thread's seconds


class Prefetcher:
    """Two windows of batches for the streams `keys`, taken in turn: one handed out to the
    members, the other drawn meanwhile."""

    def __init__(
        self,
        keys: np.ndarray,
        teachers: np.ndarray,
        distribution: int,
        shape: tuple[int, int],
        dtype: type,
        total_steps: int,
        pool: Executor,
    ) -> None:
        self.keys, self.teachers, self.distribution = keys, teachers, distribution
        self.total_steps, self.pool = total_steps, pool
        dim, batch = shape
        self.steps = window_steps(len(keys), dim, batch, np.dtype(dtype).itemsize)
        self._buffers = [
            (
                np.empty((self.steps, len(keys), dim, batch), dtype),
                np.empty((self.steps, len(keys), batch), dtype),
            )
            for _ in range(2)
        ]
        self._next_buffer = 0
        self.spare_share = 0.5
        """Of a window, the part the spare thread draws; follows the measured times."""
        self._window: _Window | None = None
        self._ahead: _Ahead | None = None
        self._handed_out = 0.0

    def nbytes(self) -> int:
        return sum(x.nbytes + y.nbytes for x, y in self._buffers)

    def batches(self, step: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The batches of the steps from `step` on, at most `count` of them, as slot arrays
        (x, y) for `kernels.train_block`. Handing out the last steps of a window starts the
        drawing of the next one."""
        window = self._window_at(step)
        offset = step - window.start
        size = min(count, window.end - step)
        if step + size == window.end and window.end <= self.total_steps:
            self._draw_ahead(window.end)
        self._handed_out = time.perf_counter()
        return window.x[offset : offset + size], window.y[offset : offset + size]

    def _window_at(self, step: int) -> _Window:
        if self._ahead is not None:
            self._window = self._finish(self._ahead)
            self._ahead = None
        if self._window is None or not self._window.start <= step < self._window.end:
            self._window = self._new_window(step)
            self._draw(self._window, 0, len(self._window.x))
        return self._window

    def _new_window(self, start: int) -> _Window:
        # Never the buffer being trained on: a draw begins only once its window is handed out.
        steps = min(self.steps, self.total_steps + 1 - start)
        x, y = self._buffers[self._next_buffer]
        self._next_buffer ^= 1
        return _Window(start, x[:steps], y[:steps])

    def _draw_ahead(self, start: int) -> None:
        window = self._new_window(start)
        split = max(1, round(self.spare_share * len(window.x)))
        spare = self.pool.submit(self._draw, window, 0, split)
        self._ahead = _Ahead(window, split, spare)

    def _finish(self, ahead: _Ahead) -> _Window:
        """Draw the trainer's part of the window ahead, wait for the spare thread's, and move
        the split towards both taking equally long."""
        trained = time.perf_counter() - self._handed_out
        window, steps = ahead.window, len(ahead.window.x)
        own = self._draw(window, ahead.split, steps)
        spare = ahead.spare.result()
        per_step = (own + spare) / steps
        if per_step > 0:
            balanced = (trained + steps * per_step) / (2 * steps * per_step)
            self.spare_share = min(1.0, max(0.5, (self.spare_share + balanced) / 2))
        return window

    def _draw(self, window: _Window, first: int, end: int) -> float:
        """Draw slots [first, end) of `window`; returns the seconds it took."""
        started = time.perf_counter()
        if first < end:
            kernels.draw_block(
                window.x[first:end], window.y[first:end], self.keys, self.teachers,
                self.distribution, window.start + first,
            )  # fmt: skip
        return time.perf_counter() - started
