"""The job loop: claim queued experiments, run them, stream their metrics, record how each
ended. A claimed sweep member brings along the queued members of its sweep that can train
with it (same batch key), and all of them run as one group."""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

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
RUN_ERRORS = (EngineError, ValueError, RuntimeError, torch.OutOfMemoryError)


@dataclass
class Member:
    """One claimed run inside the worker: its metric blocks not yet written, and what it
    reached."""

    id: int
    spec: ExperimentSpec
    blocks: list[MetricBlock] = field(default_factory=list)
    step: int = 0
    written_step: int = -1
    error_series: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    def add(self, block: MetricBlock) -> None:
        self.blocks.append(block)
        self.error_series.append((block.steps, block.values["directional_error"]))
        self.step = block.step

    def pending_points(self) -> int:
        return sum(len(block.steps) * len(block.values) for block in self.blocks)

    def take_series(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The points held, as {metric: (steps, values)} arrays; the member holds none after."""
        blocks, self.blocks = self.blocks, []
        if not blocks:
            return {}
        steps = np.concatenate([block.steps for block in blocks])
        return {
            name: (steps, np.concatenate([block.values[name] for block in blocks]))
            for name in blocks[0].values
        }


class MetricBuffer:
    """Holds the members' metric blocks and writes them in one transaction, by size or after
    `flush_seconds`; each write also reports which members the user canceled."""

    def __init__(self, db: Engine, members: list[Member], settings: Settings) -> None:
        self.db, self.members, self.settings = db, members, settings
        self.last_flush = time.monotonic()
        self.cancel_requested: set[int] = set()

    def due(self) -> bool:
        overdue = time.monotonic() - self.last_flush >= self.settings.flush_seconds
        buffered = sum(member.pending_points() for member in self.members)
        return overdue or buffered >= self.settings.flush_points

    def flush(self) -> None:
        """Write what changed since the last flush (nothing at all if nothing did)."""
        pending = [m for m in self.members if m.blocks or m.step != m.written_step]
        if pending:
            progress = [(member.id, member.take_series(), member.step) for member in pending]
            self.cancel_requested |= queue.record_progress(self.db, progress)
        for member in pending:
            member.written_step = member.step
        self.last_flush = time.monotonic()


class Worker:
    def __init__(self, db: Engine, settings: Settings) -> None:
        self.db, self.settings = db, settings
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stopping = threading.Event()

    def stop(self) -> None:
        """Ask the loop to end: running jobs go back to the queue, then the loop returns."""
        self.stopping.set()

    def run_forever(self) -> None:
        log.info("event=worker_started worker=%s", self.id)
        while not self.stopping.is_set():
            if not self.run_one():
                self.stopping.wait(self.settings.poll_seconds)
        log.info("event=worker_stopped worker=%s", self.id)

    def run_one(self) -> bool:
        """Claim and run the oldest queued experiment (with its batchable siblings); False if
        the queue was empty."""
        try:
            claimed = queue.claim_next(self.db, self.id)
            if claimed is not None:
                claimed = [claimed, *queue.claim_siblings(self.db, self.id, claimed,
                                                          self.settings.max_batch - 1)]  # fmt: skip
        except (OperationalError, ProgrammingError) as exc:
            log.warning("event=claim_failed error=%r", str(exc)[:200])
            return False
        if claimed is None:
            return False
        log.info("event=claimed experiments=%s worker=%s", [c.id for c in claimed], self.id)
        self._run([self._member(c) for c in claimed if c is not None])
        return True

    def _member(self, claimed: queue.Claimed) -> Member | None:
        try:
            return Member(claimed.id, parse_stored_spec(claimed.spec))
        except ValueError as exc:
            queue.finish(self.db, claimed.id, "failed", error=f"stored spec is invalid: {exc}")
            return None

    def _run(self, members: list[Member | None]) -> None:
        members = [member for member in members if member is not None]
        if not members:
            return
        buffer = MetricBuffer(self.db, members, self.settings)

        def on_block(m: int, block: MetricBlock) -> bool:
            members[m].add(block)
            if buffer.due():
                buffer.flush()
            return not (members[m].id in buffer.cancel_requested or self.stopping.is_set())

        ended: set[int] = set()

        def on_end(m: int, outcome: RunResult | EngineError) -> None:
            buffer.flush()
            self._record_end(members[m], outcome, members[m].id in buffer.cancel_requested)
            ended.add(m)

        try:
            training.run_group([member.spec for member in members], on_block, on_end=on_end)
        except RUN_ERRORS as exc:
            buffer.flush()
            for m in set(range(len(members))) - ended:
                self._record_end(members[m], exc, False)

    def _record_end(self, member: Member, outcome: RunResult | Exception, canceled: bool) -> None:
        if isinstance(outcome, Exception):
            log.warning("event=failed experiment=%d error=%r", member.id, str(outcome)[:200])
            queue.finish(self.db, member.id, "failed", error=str(outcome))
        elif outcome.completed or canceled:
            status = "succeeded" if outcome.completed else "canceled"
            queue.finish(self.db, member.id, status, summary=_summary(member, outcome))
        else:
            queue.requeue(self.db, member.id)
        log.info("event=ended experiment=%d outcome=%s", member.id, type(outcome).__name__)


def _summary(member: Member, result: RunResult) -> dict:
    steps = np.concatenate([steps for steps, _ in member.error_series])
    errors = np.concatenate([errors for _, errors in member.error_series])
    summary = {
        "steps": result.steps_done,
        **{f"final_{name}": value for name, value in result.final.items()},
        **summarize(steps, errors, member.spec.lr, member.spec.optimizer),
    }
    return _json_safe(summary)


def _json_safe(value):  # noqa: ANN001, ANN202
    """JSON columns (PostgreSQL's above all) take no NaN: store the API's spelling of it."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value
