"""The job loop: claim a queued experiment, run it, stream its metrics and checkpoints, record
how it ended. A timer thread sends heartbeats; the loop reaps the jobs of silent workers."""

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
from sqlalchemy.exc import DBAPIError

from service.settings import Settings
from service.spec import parse_stored_spec
from worker import engine as training
from worker import queue
from worker.engine import EngineError, MetricBlock, RunResult

log = logging.getLogger("dirconv.worker")

FORGET_WORKERS_AFTER_LEASES = 20
"""A registry row silent for this many leases is dropped when another worker starts."""


class MetricBuffer:
    """Holds one run's metric points and writes them in bulk, by size or after
    `flush_seconds`, with a checkpoint at least every `checkpoint_seconds`."""

    def __init__(self, db: Engine, claimed: queue.Claimed, settings: Settings) -> None:
        self.db, self.lease, self.settings = db, claimed.lease, settings
        self.points: list[tuple[str, int, float]] = []
        self.last_flush = self.last_checkpoint = time.monotonic()
        self.verdict = queue.RUNNING
        self.step = claimed.resume_step
        self.min_error = claimed.min_directional_error

    def add(self, block: MetricBlock) -> None:
        steps = block.steps.tolist()
        for name, values in block.values.items():
            self.points.extend(zip([name] * len(steps), steps, values.tolist(), strict=True))
        errors = block.values["directional_error"]
        self.min_error = min(
            self.min_error, float(errors[np.isfinite(errors)].min(initial=math.inf))
        )
        self.step = block.step

    def due(self) -> bool:
        overdue = time.monotonic() - self.last_flush >= self.settings.flush_seconds
        return overdue or len(self.points) >= self.settings.flush_points

    def checkpoint_due(self) -> bool:
        return time.monotonic() - self.last_checkpoint >= self.settings.checkpoint_seconds

    def flush(self, snapshot: bytes | None = None) -> None:
        """Write the points held; with `snapshot` (the state after the last block added), the
        checkpoint goes in the same transaction, so it never runs ahead of its metrics."""
        checkpoint = None if snapshot is None else (snapshot, self.min_error)
        try:
            self.verdict = queue.record_progress(
                self.db, self.lease, self.points, self.step, checkpoint
            )
        except DBAPIError as exc:
            # Keep the points for the next flush: writes are idempotent, and a lasting outage
            # ends in the lease running out and another worker resuming the checkpoint.
            log.warning(
                "event=flush_failed experiment=%d error=%r",
                self.lease.experiment_id,
                str(exc)[:200],
            )
            self.last_flush = time.monotonic()
            return
        self.points, self.last_flush = [], time.monotonic()
        if snapshot is not None:
            self.last_checkpoint = self.last_flush

    def drain(self) -> None:
        """Flush until every point is written or the lease is lost; give up (raise) after
        `lease_seconds`, by when the run is another worker's anyway."""
        deadline = time.monotonic() + self.settings.lease_seconds
        self.flush()
        while self.points and self.verdict != queue.LOST:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"could not write metrics of experiment {self.lease.experiment_id}"
                )
            time.sleep(self.settings.poll_seconds)
            self.flush()


class Heartbeat:
    """Tells the database every `seconds` that the worker lives, from its own thread, so a
    long block of training never looks like a dead worker."""

    def __init__(self, db: Engine, info: queue.WorkerInfo, seconds: float) -> None:
        self.db, self.info, self.seconds = db, info, seconds
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        self.thread.join()

    def _beat(self) -> None:
        while not self.done.wait(self.seconds):
            try:
                queue.heartbeat(self.db, self.info)
            except DBAPIError as exc:
                log.warning(
                    "event=heartbeat_failed worker=%s error=%r", self.info.id, str(exc)[:200]
                )


class Worker:
    def __init__(self, db: Engine, settings: Settings) -> None:
        self.db, self.settings = db, settings
        host, pid = socket.gethostname(), os.getpid()
        self.id = f"{host}:{pid}:{uuid.uuid4().hex[:8]}"
        device = training.resolve_device("auto").type
        self.info = queue.WorkerInfo(id=self.id, host=host, pid=pid, device=device)
        self.stopping = threading.Event()
        self.last_reap = -math.inf

    def stop(self) -> None:
        """Ask the loop to end: a running job checkpoints and goes back to the queue, then the
        worker unregisters and the loop returns."""
        self.stopping.set()

    def run_forever(self) -> None:
        forget_after = FORGET_WORKERS_AFTER_LEASES * self.settings.lease_seconds
        queue.register_worker(self.db, self.info, forget_after)
        heartbeat = Heartbeat(self.db, self.info, self.settings.heartbeat_seconds)
        heartbeat.start()
        log.info("event=worker_started worker=%s device=%s", self.id, self.info.device)
        try:
            while not self.stopping.is_set():
                if not self.run_one():
                    self.stopping.wait(self.settings.poll_seconds)
        finally:
            heartbeat.stop()
            queue.unregister_worker(self.db, self.id)
            log.info("event=worker_stopped worker=%s", self.id)

    def run_one(self) -> bool:
        """Reap silent workers' jobs if due, then claim and run one queued experiment; False if
        there was none."""
        try:
            self._reap_if_due()
            claimed = queue.claim_next(self.db, self.id)
        except DBAPIError as exc:
            log.warning("event=claim_failed worker=%s error=%r", self.id, str(exc)[:200])
            return False
        if claimed is None:
            return False
        log.info(
            "event=claimed experiment=%d worker=%s attempt=%d resume_step=%d",
            claimed.id,
            self.id,
            claimed.lease.attempt,
            claimed.resume_step,
        )
        self._run(claimed)
        return True

    def _reap_if_due(self) -> None:
        # Every worker reaps, at most once per heartbeat period: one cheap UPDATE.
        if time.monotonic() - self.last_reap < self.settings.heartbeat_seconds:
            return
        self.last_reap = time.monotonic()
        moved = queue.reap(self.db, self.settings.lease_seconds, self.settings.max_attempts)
        if moved:
            log.info("event=reaped jobs=%d worker=%s", moved, self.id)

    def _run(self, claimed: queue.Claimed) -> None:
        buffer = MetricBuffer(self.db, claimed, self.settings)

        def on_block(block: MetricBlock) -> bool:
            buffer.add(block)
            stopping = self.stopping.is_set()
            if stopping or buffer.due():
                # A block that ended the run is not worth resuming from: the run is done.
                wanted = stopping or buffer.checkpoint_due()
                buffer.flush(block.snapshot() if wanted and block.step < spec.steps else None)
            return buffer.verdict == queue.RUNNING and not stopping

        try:
            spec = parse_stored_spec(claimed.spec)
            result = training.run(spec, on_block, resume=claimed.resume)
        except (EngineError, ValueError, RuntimeError, torch.OutOfMemoryError) as exc:
            buffer.drain()
            log.warning("event=failed experiment=%d error=%r", claimed.id, str(exc)[:200])
            queue.finish(self.db, claimed.lease, "failed", error=str(exc))
            return
        buffer.drain()
        self._record_end(claimed.lease, result, buffer)

    def _record_end(self, lease: queue.Lease, result: RunResult, buffer: MetricBuffer) -> None:
        if buffer.verdict == queue.LOST:
            log.warning("event=lease_lost experiment=%d worker=%s", lease.experiment_id, self.id)
            return
        summary = _summary(result, buffer.min_error)
        if result.completed:
            queue.finish(self.db, lease, "succeeded", summary=summary)
        elif buffer.verdict == queue.CANCEL:
            queue.finish(self.db, lease, "canceled", summary=summary)
        else:
            queue.requeue(self.db, lease)
        log.info(
            "event=ended experiment=%d completed=%s step=%d",
            lease.experiment_id,
            result.completed,
            result.steps_done,
        )


def _summary(result: RunResult, min_error: float) -> dict:
    summary = {
        "steps": result.steps_done,
        **{f"final_{name}": value for name, value in result.final.items()},
        "min_directional_error": min_error,
    }
    # JSON columns (PostgreSQL's above all) take no NaN: store the API's spelling of it.
    return {key: value if math.isfinite(value) else _spell(value) for key, value in summary.items()}


def _spell(value: float) -> str:
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
