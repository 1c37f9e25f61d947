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
from service.spec import ExperimentSpec, parse_stored_spec
from worker import engine as training
from worker import queue
from worker.engine import EngineError, MetricBlock, RunResult
from worker.summary import summarize

log = logging.getLogger("dirconv.worker")


class MetricBuffer:
    """Holds metric points and writes them in bulk, by size or after `flush_seconds`."""

    def __init__(self, db: Engine, experiment_id: int, settings: Settings) -> None:
        self.db, self.experiment_id, self.settings = db, experiment_id, settings
        self.points: list[tuple[str, int, float]] = []
        self.last_flush = time.monotonic()
        self.cancel_requested = False
        self.step = 0
        self.error_series: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, block: MetricBlock) -> None:
        self.error_series.append((block.steps, block.values["directional_error"]))
        steps = block.steps.tolist()
        for name, values in block.values.items():
            self.points.extend(zip([name] * len(steps), steps, values.tolist(), strict=True))
        self.step = block.step

    def due(self) -> bool:
        overdue = time.monotonic() - self.last_flush >= self.settings.flush_seconds
        return overdue or len(self.points) >= self.settings.flush_points

    def flush(self) -> None:
        self.cancel_requested = queue.record_progress(
            self.db, self.experiment_id, self.points, self.step
        )
        self.points, self.last_flush = [], time.monotonic()


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
        self._record_end(claimed.id, spec, result, buffer)

    def _record_end(
        self, experiment_id: int, spec: ExperimentSpec, result: RunResult, buffer: MetricBuffer
    ) -> None:
        if result.completed or buffer.cancel_requested:
            status = "succeeded" if result.completed else "canceled"
            summary = _summary(spec, result, buffer.error_series)
            queue.finish(self.db, experiment_id, status, summary=summary)
        else:
            queue.requeue(self.db, experiment_id)
        log.info("event=ended experiment=%d completed=%s", experiment_id, result.completed)


def _summary(
    spec: ExperimentSpec, result: RunResult, error_series: list[tuple[np.ndarray, np.ndarray]]
) -> dict:
    steps = np.concatenate([steps for steps, _ in error_series])
    errors = np.concatenate([errors for _, errors in error_series])
    summary = {
        "steps": result.steps_done,
        **{f"final_{name}": value for name, value in result.final.items()},
        **summarize(steps, errors, spec.lr, spec.optimizer),
    }
    return _json_safe(summary)


def _json_safe(value):  # noqa: ANN001, ANN202
    """JSON columns (PostgreSQL's above all) take no NaN: store the API's spelling of it."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value
