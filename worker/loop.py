"""The job loop: claim queued experiments, train them, stream their metrics and checkpoints,
record how each ended. A claimed sweep member brings along the queued members of its sweep
that can train with it (same batch key), and all of them run as one group. A timer thread
sends heartbeats; the loop reaps the jobs of silent workers."""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from core import lifecycle, metric_store
from core.settings import Settings
from core.spec import ExperimentSpec, parse_stored_spec
from core.status import Status
from worker import engine as training
from worker import queue
from worker.engine import EngineError, MetricBlock, RunResult
from worker.summary import summarize
from worker.warmup import warm_up

log = logging.getLogger("dirconv.worker")
PLAIN_ERRORS = (EngineError, ValueError, RuntimeError)
"""Errors whose message alone tells the user why their run failed."""

SUMMARY_READ_POINTS = 2_000_000
"""Directional errors read at once to summarise runs that end together (about 16 bytes each)."""
MAX_FLUSH_SECONDS = 5.0
"""However slow its writes, a worker writes at least this often (it checks for cancels every
`flush_seconds` in between)."""
GIL_SWITCH_SECONDS = 0.0005
"""How soon a thread running Python hands the GIL to one that waits for it (Python's default:
5 ms), set for the worker's process by `python -m worker`. Training threads need it back
after every kernel call while the writer thread runs Python; at 5 ms those waits cost a
64-member sweep on 2 threads about 8 % (measured)."""
FORGET_WORKERS_AFTER_LEASES = 20
"""A registry row silent for this many leases is dropped when another worker starts."""


@dataclass
class Member:
    """One claimed run inside the worker: its metric blocks not yet written, the step it
    reached, and how its last write went."""

    lease: lifecycle.Lease
    spec: ExperimentSpec
    step: int = 0
    blocks: list[MetricBlock] = field(default_factory=list)
    last_block: MetricBlock | None = None
    written_step: int = -1
    verdict: str = queue.RUNNING
    pending: int = 0
    """Points in `blocks`: counted as they come, as a large group holds many blocks."""

    @property
    def id(self) -> int:
        return self.lease.experiment_id

    def add(self, block: MetricBlock) -> None:
        self.blocks.append(block)
        self.pending += _points(block)
        self.last_block, self.step = block, block.step

    def pending_points(self) -> int:
        return self.pending

    def take_blocks(self) -> list[MetricBlock]:
        blocks, self.blocks, self.pending = self.blocks, [], 0
        return blocks

    def series(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The points held, as {metric: (steps, values)} arrays."""
        return _series(self.blocks)


def _points(block: MetricBlock) -> int:
    return len(block.steps) * len(block.values)


def _series(blocks: list[MetricBlock]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not blocks:
        return {}
    steps = np.concatenate([block.steps for block in blocks])
    return {
        name: (steps, np.concatenate([block.values[name] for block in blocks]))
        for name in blocks[0].values
    }


@dataclass
class _Pending:
    """One member's share of a write: its blocks, the step reached, maybe its state."""

    member: Member
    blocks: list[MetricBlock]
    step: int
    state: bytes | None

    def progress(self) -> queue.Progress:
        return queue.Progress(self.member.lease, _series(self.blocks), self.step, self.state)


class MetricBuffer:
    """Holds the members' metric blocks and writes them in one transaction, by size or after
    `flush_seconds`, with checkpoints at least every `checkpoint_seconds`. The writes (series
    assembly, chunk encoding, the database) run on a writer thread while training goes on;
    the training thread only hands blocks and snapshots over. `close()` ends the thread.

    A write rewrites the open chunk of each series whole, so its cost barely depends on how
    many steps it brings: a large group whose writes take long writes less often
    (`writer_share`), leaving the cores to training."""

    def __init__(self, db: Engine, members: list[Member], settings: Settings) -> None:
        self.db, self.members, self.settings = db, members, settings
        self.last_flush = self.last_checkpoint = time.monotonic()
        self._retry: dict[int, list[MetricBlock]] = {}
        self._written = True
        self._write_seconds = self._seconds_per_point = 0.0
        self._pace: tuple[float, int] | None = None
        self._last_asked: float | None = None
        self._caught_up = False
        self.last_check = self.last_flush
        self._tails = metric_store.Tails()
        self._writer = _Writer()

    def due(self) -> bool:
        """Whether to write now; asked once after every block."""
        now = time.monotonic()
        block = 0.0 if self._last_asked is None else now - self._last_asked
        self._last_asked = now
        overdue = now - self.last_flush >= self.flush_interval()
        buffered = sum(member.pending_points() for member in self.members)
        # The next chance to write is a block away: if the runs end before it has come and
        # gone, the held points are written now, so their end waits only for the last block.
        # Once only: every write rewrites the open chunks whole, and a second catch-up costs
        # that again to save a few blocks' points. A busy writer leaves it to the next block.
        write = buffered * self._seconds_per_point
        catch_up = buffered > 0 and not self._caught_up and not self._writer.busy()
        ending = catch_up and self._end_within(now, write + block)
        self._caught_up |= ending
        return overdue or buffered >= self.settings.flush_points or ending

    def _end_within(self, now: float, seconds: float) -> bool:
        """Whether the runs, at their pace so far, end within `seconds` of `now`."""
        step = max(member.step for member in self.members)
        if self._pace is None:
            self._pace = (now, step)
        started, first_step = self._pace
        if step == first_step or now == started:
            return False
        left = max(member.spec.steps - member.step for member in self.members)
        return left * (now - started) / (step - first_step) <= seconds

    def flush_interval(self) -> float:
        """Seconds from one write's start to the next's."""
        paced = min(self._write_seconds / self.settings.writer_share, MAX_FLUSH_SECONDS)
        return max(self.settings.flush_seconds, paced)

    def check(self) -> None:
        """Between writes spaced out by their cost, learn every `flush_seconds` whether each
        run is canceled or its lease lost, without writing (if the writer is free)."""
        self._raise_writer_error()
        now = time.monotonic()
        if now - self.last_check >= self.settings.flush_seconds and not self._writer.busy():
            held = [member for member in self.members if member.verdict == queue.RUNNING]
            self._writer.hand(lambda: self._check(held))
            self.last_check = now

    def _check(self, members: list[Member]) -> None:
        try:
            verdicts = queue.check_leases(self.db, [member.lease for member in members])
        except DBAPIError as exc:
            if not is_transient(exc):
                raise
            return
        for member in members:
            if member.verdict == queue.RUNNING:  # a write may have told more meanwhile
                member.verdict = verdicts[member.id]

    def checkpoint_due(self) -> bool:
        return time.monotonic() - self.last_checkpoint >= self.settings.checkpoint_seconds

    def flush(self, checkpoint: bool = False) -> None:
        """Hand what changed since the last write to the writer thread, unless a write is
        still under way (then it goes with the next one). With `checkpoint`, each member's
        state after its last block goes in the same transaction as the metrics before it, so
        a checkpoint never runs ahead of its metrics."""
        self._raise_writer_error()
        if not self._writer.busy():  # else still due: handed at the first block it is free
            self._hand(checkpoint)
            self.last_flush = time.monotonic()

    def flush_now(self, checkpoint: bool = False) -> bool:
        """Write everything held and wait for it; False if a passing database error stopped
        the write. A failed write keeps everything for the next flush: writes are
        idempotent."""
        self._writer.wait()
        self._raise_writer_error()
        self._caught_up = False  # the runs that go on after this end may catch up again
        if self._hand(checkpoint):
            self._writer.wait()
            self._raise_writer_error()
        self.last_flush = time.monotonic()
        return self._written

    def close(self) -> None:
        self._writer.close()

    def _hand(self, checkpoint: bool) -> bool:
        """Give the writer the unwritten blocks (those of a failed write first) of every
        member that still holds its lease; False if nothing changed. A member canceled while
        its last write was under way has trained on meanwhile: those steps are written too."""
        retry, self._retry = self._retry, {}
        pending = []
        for member in self.members:
            if member.verdict == queue.LOST:
                continue
            blocks = retry.get(member.id, []) + member.take_blocks()
            if not (blocks or self._moved(member)):
                continue
            pending.append(_Pending(member, blocks, member.step, self._state(member, checkpoint)))
        if pending:
            self._writer.hand(lambda: self._write(pending))
            self.last_check = time.monotonic()
        return bool(pending)

    def _write(self, pending: list[_Pending]) -> None:
        """The writer thread's work: one transaction for all of `pending`."""
        started = time.monotonic()
        try:
            self._record(pending)
        finally:
            self._write_seconds = time.monotonic() - started
            points = sum(_points(block) for item in pending for block in item.blocks)
            self._seconds_per_point = self._write_seconds / max(points, 1)

    def _record(self, pending: list[_Pending]) -> None:
        try:
            verdicts = queue.record_progress(
                self.db, [item.progress() for item in pending], self._tails
            )
        except DBAPIError as exc:
            if not is_transient(exc):
                raise
            log.warning("event=flush_failed error=%r", str(exc)[:200])
            self._retry = {item.member.id: item.blocks for item in pending}
            self._written = False
            return
        for item in pending:
            item.member.verdict = verdicts[item.member.id]
            item.member.written_step = item.step
        if any(item.state is not None for item in pending):
            self.last_checkpoint = time.monotonic()
        self._written = True

    def _raise_writer_error(self) -> None:
        error, self._writer.error = self._writer.error, None
        if error is not None:
            raise error

    @staticmethod
    def _moved(member: Member) -> bool:
        return member.step != member.written_step

    @staticmethod
    def _state(member: Member, checkpoint: bool) -> bytes | None:
        # Taken now, on the training thread: the group's state is that of the last block.
        # A block that ended the run is not worth resuming from: the run is done.
        block = member.last_block
        wanted = checkpoint and block is not None and block.step < member.spec.steps
        return block.snapshot() if wanted else None

    def drain(self, stopping: threading.Event) -> bool:
        """Flush until every point is written or its lease is lost, however long a passing
        database error lasts: every try checks the lease, so a run that another worker took
        over meanwhile comes back LOST and nothing is written for it. Only a stopping worker
        gives up (False), leaving its runs to the reaper."""
        if self.flush_now():
            return True
        log.warning("event=drain_waiting experiments=%s", [m.id for m in self.members])
        while not stopping.wait(self.settings.poll_seconds):
            if self.flush_now():
                return True
        return False


class _Writer:
    """A thread that does one job (a write, a lease check) at a time, handed over by the
    training thread; an error it raises waits in `error` for the training thread to
    re-raise."""

    def __init__(self) -> None:
        self._job: Callable[[], None] | None = None
        self._idle, self._wake = threading.Event(), threading.Event()
        self._idle.set()
        self._closed = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="metric-writer", daemon=True)
        self._thread.start()

    def busy(self) -> bool:
        return not self._idle.is_set()

    def hand(self, job: Callable[[], None]) -> None:
        self._idle.clear()
        self._job = job
        self._wake.set()

    def wait(self) -> None:
        self._idle.wait()

    def close(self) -> None:
        self.wait()
        self._closed = True
        self._wake.set()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            try:
                if self._job is not None:
                    self._job()
            except BaseException as exc:  # noqa: BLE001 - handed to the training thread
                self.error = exc
            finally:
                self._job = None
                self._idle.set()


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
            except Exception as exc:  # noqa: BLE001 - the beat must outlive any one failure
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
        """Ask the loop to end: running jobs checkpoint and go back to the queue, then the
        worker unregisters and the loop returns."""
        self.stopping.set()

    def run_forever(self) -> None:
        forget_after = FORGET_WORKERS_AFTER_LEASES * self.settings.lease_seconds
        queue.register_worker(self.db, self.info, forget_after)
        heartbeat = Heartbeat(self.db, self.info, self.settings.heartbeat_seconds)
        heartbeat.start()
        log.info("event=worker_started worker=%s device=%s", self.id, self.info.device)
        try:
            self._warm_up()
            while not self.stopping.is_set():
                if not self.run_one():
                    self.stopping.wait(self.settings.poll_seconds)
        finally:
            heartbeat.stop()
            queue.unregister_worker(self.db, self.id)
            log.info("event=worker_stopped worker=%s", self.id)

    def _warm_up(self) -> None:
        """Compile the kernels before the first claim; if that fails, runs compile them."""
        try:
            warm_up(self.stopping.is_set)
        except Exception:  # noqa: BLE001 - a worker that cannot warm up can still train
            log.exception("event=warm_up_failed worker=%s", self.id)

    def run_one(self) -> bool:
        """Reap silent workers' jobs if due, then claim and run the oldest queued experiment
        (with its batchable siblings); False if the queue was empty."""
        try:
            self._reap_if_due()
            claimed = self._claim()
        except DBAPIError as exc:
            log.warning("event=claim_failed worker=%s error=%r", self.id, str(exc)[:200])
            return False
        if not claimed:
            return False
        first, ids = claimed[0], [c.id for c in claimed]
        log.info(
            "event=claimed experiments=%s worker=%s attempt=%d resume_step=%d",
            ids,
            self.id,
            first.lease.attempt,
            first.resume_step,
        )
        try:
            self._run(claimed)
        except Exception:  # a bug must not take the worker down with the run
            log.exception("event=run_crashed experiments=%s worker=%s", ids, self.id)
        return True

    def _claim(self) -> list[lifecycle.Claimed]:
        first = lifecycle.claim_next(self.db, self.id)
        if first is None:
            return []
        limit = self.settings.max_batch - 1
        return [first, *lifecycle.claim_siblings(self.db, self.id, first, limit)]

    def _reap_if_due(self) -> None:
        # Every worker reaps, at most once per heartbeat period: one cheap UPDATE.
        if time.monotonic() - self.last_reap < self.settings.heartbeat_seconds:
            return
        self.last_reap = time.monotonic()
        moved = lifecycle.reap(self.db, self.settings.lease_seconds, self.settings.max_attempts)
        if moved:
            log.info("event=reaped jobs=%d worker=%s", moved, self.id)

    def _run(self, claimed: list[lifecycle.Claimed]) -> None:
        members, resumes = [], []
        for item in claimed:
            try:
                spec = parse_stored_spec(item.spec)
            except ValueError as exc:
                self._fail(item.lease, f"invalid stored spec: {exc}")
                continue
            members.append(Member(item.lease, spec, item.resume_step))
            resumes.append(item.resume)
        if members:
            self._train(members, resumes)

    def _train(self, members: list[Member], resumes: list[bytes | None]) -> None:
        buffer = MetricBuffer(self.db, members, self.settings)
        ended: set[int] = set()

        def on_blocks(blocks: list[MetricBlock | None]) -> list[bool]:
            for member, block in zip(members, blocks, strict=True):
                if block is not None:
                    member.add(block)
            stopping = self.stopping.is_set()
            if stopping:
                buffer.flush_now(checkpoint=True)
            elif buffer.due():
                buffer.flush(checkpoint=buffer.checkpoint_due())
            else:
                buffer.check()
            return [m.verdict == queue.RUNNING and not stopping for m in members]

        def on_end(done: list[tuple[int, RunResult | EngineError]]) -> None:
            if buffer.drain(self.stopping):
                self._record_ends([(members[m], outcome) for m, outcome in done])
            else:
                log.warning("event=left_to_reaper experiments=%s", [members[m].id for m, _ in done])
            ended.update(m for m, _ in done)

        specs = [member.spec for member in members]
        try:
            training.run_group(
                specs,
                on_blocks,
                resumes,
                on_end=on_end,
                block_seconds=self.settings.block_seconds,
                threads=self.settings.threads,
            )
        except Exception as exc:  # whatever a run raises fails the run, never the worker
            self._fail_rest(buffer, [m for i, m in enumerate(members) if i not in ended], exc)
        finally:
            buffer.close()

    def _fail_rest(self, buffer: MetricBuffer, members: list[Member], exc: Exception) -> None:
        """Store the points the runs made before `exc`, then mark them failed with it."""
        log.warning(
            "event=run_error experiments=%s error=%r",
            [m.id for m in members],
            failure_message(exc)[:200],
            exc_info=not isinstance(exc, (*PLAIN_ERRORS, MemoryError)),
        )
        try:
            written = buffer.drain(self.stopping)
        except DBAPIError as error:  # points that cannot be stored do not keep the run open
            log.warning("event=drain_failed error=%r", str(error)[:200])
            written = True
        if written:
            self._record_ends([(member, exc) for member in members])

    def _record_ends(self, ended: list[tuple[Member, RunResult | Exception]]) -> None:
        """Record how each of `ended` ended: the runs that finished (succeeded or canceled)
        with their summaries, all in one transaction; the others one by one."""
        finished = []
        for member, outcome in ended:
            if member.verdict == queue.LOST:
                log.warning("event=lease_lost experiment=%d worker=%s", member.id, self.id)
                continue
            if isinstance(outcome, Exception):
                error = failure_message(outcome)
                log.warning("event=failed experiment=%d error=%r", member.id, error[:200])
                self._fail(member.lease, error)
            elif outcome.completed or member.verdict == queue.CANCEL:
                status = Status.SUCCEEDED if outcome.completed else Status.CANCELED
                finished.append((member, status, outcome))
            else:
                self._until_written(lambda lease=member.lease: lifecycle.requeue(self.db, lease))
        if finished:
            endings = self._endings(finished)
            self._until_written(lambda: lifecycle.finish_many(self.db, endings))
        for member, _ in ended:
            if member.verdict != queue.LOST:
                log.info("event=ended experiment=%d step=%d", member.id, member.step)

    def _endings(self, finished: list[tuple[Member, Status, RunResult]]) -> list[lifecycle.Ending]:
        """Each finished run's ending with its summary, the series read a few runs a query."""
        endings = []
        for group in _by_points(finished, SUMMARY_READ_POINTS):
            ids = [member.id for member, _, _ in group]
            with self.db.connect() as connection:
                errors = metric_store.read_many(connection, ids, "directional_error")
            for member, status, result in group:
                series = errors.get(member.id, metric_store.SeriesArrays.empty())
                endings.append(
                    lifecycle.Ending(member.lease, status, _summary(member, result, series))
                )
        return endings

    def _fail(self, lease: lifecycle.Lease, error: str) -> None:
        self._until_written(lambda: lifecycle.finish(self.db, lease, Status.FAILED, error=error))

    def _until_written(self, write: Callable[[], object]) -> None:
        """Make `write` (lease-checked, idempotent) until it goes through, trying again after
        passing database errors; a stopping worker gives up and leaves the run to the reaper."""
        while True:
            try:
                write()
                return
            except DBAPIError as exc:
                if not is_transient(exc):
                    raise
                log.warning("event=write_failed worker=%s error=%r", self.id, str(exc)[:200])
            if self.stopping.wait(self.settings.poll_seconds):
                return


def _summary(member: Member, result: RunResult, errors: metric_store.SeriesArrays) -> dict:
    """Final values, thresholds and the fitted rate, over the whole stored series of
    directional errors (a resumed run's engine saw only the steps since its checkpoint)."""
    summary = {
        "steps": result.steps_done,
        **{f"final_{name}": value for name, value in result.final.items()},
        **summarize(errors.steps, errors.values, member.spec.lr, member.spec.optimizer),
    }
    return _json_safe(summary)


def _by_points(
    finished: list[tuple[Member, Status, RunResult]], points: int
) -> list[list[tuple[Member, Status, RunResult]]]:
    """`finished` in groups whose series hold about `points` points at most (one run alone
    may hold more)."""
    groups: list[list[tuple[Member, Status, RunResult]]] = [[]]
    held = 0
    for item in finished:
        size = item[0].spec.steps // item[0].spec.log_every + 2
        if groups[-1] and held + size > points:
            groups.append([])
            held = 0
        groups[-1].append(item)
        held += size
    return groups


def is_transient(exc: DBAPIError) -> bool:
    """A database error that trying again may cure: a lock, a timeout, a dropped connection."""
    return isinstance(exc, OperationalError) or exc.connection_invalidated


def failure_message(exc: BaseException) -> str:
    """What the user reads on a run that `exc` ended."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return (
            f"out of memory: the run needs more memory than this worker has ({exc}); "
            "try a smaller batch_size, n_samples, dim or width, or fewer members in one sweep"
        )
    if isinstance(exc, PLAIN_ERRORS):
        return str(exc)
    if isinstance(exc, ArithmeticError):
        return f"numeric error ({type(exc).__name__}: {exc}); try a smaller lr or init_scale"
    return f"the worker could not run it: {type(exc).__name__}: {exc}"


def _json_safe(value):  # noqa: ANN001, ANN202
    """JSON columns (PostgreSQL's above all) take no NaN: store the API's spelling of it."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value
