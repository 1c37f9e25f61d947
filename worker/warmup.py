"""Compile the training kernels when a worker starts, before it claims work, so its first run
steps at once: numba loads them from its on-disk cache (worker/numba_cache.py) in well under a
second, or compiles them (seconds) the first time on a machine. `python -m worker.warmup`
fills the cache ahead of time (an image build)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from numba.core.dispatcher import Dispatcher

from core.spec import ExperimentSpec
from worker import engine, kernels

log = logging.getLogger("dirconv.worker")

WARM_STEPS = 2
"""Steps of each tiny warm-up run: enough to go through logging and updating once."""
WARM_THREADS = 2
"""Threads of the warm-up runs: a lone run with a spare thread draws its batches ahead there
(`kernels.draw_block`), so that path is compiled too."""


@dataclass(frozen=True)
class WarmUp:
    seconds: float
    compiled: int  # kernel signatures numba had to compile (not found in its cache)
    loaded: int  # kernel signatures numba loaded from its cache


def warm_specs(cuda: bool) -> list[ExperimentSpec]:
    """One tiny run for each compiled variant a run may need: both dtypes, fresh batches
    (sgd) and a fixed sample (gd), on the CPU; and the CUDA path where there is one."""
    specs = [
        ExperimentSpec(depth=2, steps=WARM_STEPS, optimizer=optimizer, dtype=dtype, device="cpu")
        for dtype in ("float32", "float64")
        for optimizer in ("sgd", "gd")
    ]
    if cuda:
        specs.append(ExperimentSpec(depth=2, steps=WARM_STEPS, device="cuda"))
    return specs


def warm_up(stopping: Callable[[], bool] = lambda: False) -> WarmUp:
    """Run every warm-up spec once (unless `stopping()` says to give up) and log what it
    took."""
    started = time.perf_counter()
    for spec in warm_specs(torch.cuda.is_available()):
        if stopping():  # a worker stopped while it compiles exits without waiting for it
            break
        engine.run_group([spec], lambda blocks: [True] * len(blocks), threads=WARM_THREADS)
    hits, misses = _cache_counts()
    result = WarmUp(time.perf_counter() - started, compiled=misses, loaded=hits)
    log.info(
        "event=kernels_ready seconds=%.2f compiled=%d loaded=%d cache_dir=%s",
        result.seconds,
        result.compiled,
        result.loaded,
        kernels.train_block.stats.cache_path,
    )
    return result


def _cache_counts() -> tuple[int, int]:
    """(signatures loaded from numba's cache, signatures compiled) over every kernel."""
    hits = misses = 0
    for dispatcher in _cached_kernels():
        hits += sum(dispatcher.stats.cache_hits.values())
        misses += sum(dispatcher.stats.cache_misses.values())
    return hits, misses


def _cached_kernels() -> list[Dispatcher]:
    """The kernels of worker/kernels.py that numba caches on disk."""
    found = [value for value in vars(kernels).values() if isinstance(value, Dispatcher)]
    return [dispatcher for dispatcher in found if dispatcher.stats.cache_path]


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    warm_up()
