"""The job loop: claim a queued experiment, run it, stream its metrics, record how it ended."""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid

import numpy as np
import torch
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from service.settings import Settings
from service.spec import parse_stored_spec
from worker import engine as training
from worker import queue
from worker.engine import EngineError, MetricBlock, RunResult

log = logging.getLogger("dirconv.worker")


class MetricBuffer:
    """Holds metric blocks as arrays and writes them in bulk, by size or after `flush_seconds`."""

    def __init__(self, db: Engine, experiment_id: int, settings: Settings) -> None:
        self.db, self.experiment_id, self.settings = db, experiment_id, settings
        self.blocks: list[MetricBlock] = []
        self.pending = 0
        self.last_flush = time.monotonic()
        self.cancel_requested = False
        self.step = 0

    def add(self, block: MetricBlock) -> None:
        self.blocks.append(block)
        self.pending += len(block.steps) * len(block.values)
        self.step = block.step

    def due(self) -> bool:
        overdue = time.monotonic() - self.last_flush >= self.settings.flush_seconds
        return overdue or self.pending >= self.settings.flush_points

    def flush(self) -> None:
        self.cancel_requested = queue.record_progress(
            self.db, self.experiment_id, self._series(), self.step
        )
        self.blocks, self.pending, self.last_flush = [], 0, time.monotonic()

    def _series(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if not self.blocks:
            return {}
        steps = np.concatenate([block.steps for block in self.blocks])
        names = self.blocks[0].values
        return {
            name: (steps, np.concatenate([block.values[name] for block in self.blocks]))
            for name in names
        }


class Worker:
    def __init__(self, db: Engine, settings: Settings) -> None:
        self.db, self.settings = db, settings
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stopping = threading.Event()

    def stop(self) -> None:
        """Ask the loop to end: a running job is put back in the queue, then the loop returns."""
        self.stopping.set()

    def run_forever(self) -> None:
        log.info("event=worker_started worker=%s", self.id)
        while not self.stopping.is_set():
            if not self.run_one():
                self.stopping.wait(self.settings.poll_seconds)
        log.info("event=worker_stopped worker=%s", self.id)

    def run_one(self) -> bool:
        """Claim and run one queued experiment; False if there was none."""
        try:
            claimed = queue.claim_next(self.db, self.id)
        except (OperationalError, ProgrammingError) as exc:
            log.warning("event=claim_failed error=%r", str(exc)[:200])
            return False
        if claimed is None:
            return False
        log.info("event=claimed experiment=%d worker=%s", claimed.id, self.id)
        self._run(claimed)
        return True

    def _run(self, claimed: queue.Claimed) -> None:
        buffer = MetricBuffer(self.db, claimed.id, self.settings)

        def on_block(block: MetricBlock) -> bool:
            buffer.add(block)
            if buffer.due():
                buffer.flush()
            return not (buffer.cancel_requested or self.stopping.is_set())

        try:
            spec = parse_stored_spec(claimed.spec)
            result = training.run(spec, on_block)
            buffer.flush()
        except (EngineError, ValueError, RuntimeError, torch.OutOfMemoryError) as exc:
            buffer.flush()
            log.warning("event=failed experiment=%d error=%r", claimed.id, str(exc)[:200])
            queue.finish(self.db, claimed.id, "failed", error=str(exc))
            return
        self._record_end(claimed.id, result, buffer.cancel_requested)

    def _record_end(self, experiment_id: int, result: RunResult, canceled: bool) -> None:
        if result.completed:
            queue.finish(self.db, experiment_id, "succeeded", summary=_summary(result))
        elif canceled:
            queue.finish(self.db, experiment_id, "canceled", summary=_summary(result))
        else:
            queue.requeue(self.db, experiment_id)
        log.info("event=ended experiment=%d completed=%s", experiment_id, result.completed)


def _summary(result: RunResult) -> dict:
    summary = {
        "steps": result.steps_done,
        **{f"final_{name}": value for name, value in result.final.items()},
        "min_directional_error": result.min_directional_error,
    }
    # JSON columns (PostgreSQL's above all) take no NaN: store the API's spelling of it.
    return {key: value if math.isfinite(value) else _spell(value) for key, value in summary.items()}


def _spell(value: float) -> str:
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
