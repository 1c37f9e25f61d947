"""A group's members on several threads (DIRCONV_THREADS), and the worker's writer thread."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from core import lifecycle, metric_store
from core.models import Experiment
from core.settings import Settings
from core.spec import ExperimentSpec
from worker import engine, loop
from worker.engine import MetricBlock
from worker.loop import Member, MetricBuffer
from worker.trainers import parts


def _series(specs, threads):  # noqa: ANN001, ANN202
    logged = [{} for _ in specs]

    def on_blocks(blocks):  # noqa: ANN001, ANN202
        for member, block in zip(logged, blocks, strict=True):
            for name, values in block.values.items() if block else ():
                member.setdefault(name, []).extend(values.tolist())
        return [True] * len(blocks)

    engine.run_group(specs, on_blocks, block_seconds=0.002, threads=threads)
    return logged


@pytest.mark.parametrize(
    "specs",
    [
        [ExperimentSpec(depth=d, seed=s, steps=400, batch_size=200) for d in (1, 2, 3, 4)
         for s in (0, 1, 2)],
        [ExperimentSpec(depth=d, lr=lr, steps=300, batch_size=100) for d in (1, 3)
         for lr in (1e-3, 1e-2, 1e-1)],  # one stream, split between threads
        [ExperimentSpec(optimizer="gd", depth=d, seed=s, steps=300, n_samples=50, dtype="float32")
         for d in (1, 2) for s in (0, 1, 2)],
        [ExperimentSpec(depth=d, steps=200, batch_size=100) for d in (1, 4)],  # parts < threads
    ],
    ids=["streams", "one-stream", "gd-float32", "fewer-members-than-threads"],
)  # fmt: skip
def test_metrics_on_several_threads_are_bit_for_bit_those_of_one(specs):
    alone = _series(specs, threads=1)
    assert _series(specs, threads=2) == alone
    assert _series(specs, threads=5) == alone


def test_parts_keep_streams_together_and_balance_members():
    stream_of = np.array([0, 0, 0, 0, 1, 1, 2, 2, 3, 3])
    split = parts.split(stream_of, 2)
    assert sorted(np.concatenate(split).tolist()) == list(range(10))
    for part in split:
        others = np.concatenate([p for p in split if p is not part])
        assert not set(stream_of[part]) & set(stream_of[others])
    assert sorted(len(part) for part in split) == [4, 6]
    one_stream = parts.split(np.zeros(5, np.int64), 3)
    assert len(one_stream) == 3 and sum(len(part) for part in one_stream) == 5
    assert len(parts.split(np.zeros(1, np.int64), 4)) == 1


def test_threads_default_to_the_cores_the_worker_may_use(monkeypatch):
    monkeypatch.delenv("DIRCONV_THREADS", raising=False)
    assert Settings().threads == len(os.sched_getaffinity(0))
    monkeypatch.setenv("DIRCONV_THREADS", "0")
    with pytest.raises(ValueError, match="threads"):
        Settings()


def _running_member(client, db) -> Member:  # noqa: ANN001
    experiment_id = client.post("/experiments", json={}).json()["id"]
    with db.begin() as connection:
        connection.execute(update(Experiment).values(status="running", worker_id="w", attempts=1))
    return Member(lifecycle.Lease(experiment_id, "w", 1), ExperimentSpec())


def _add_steps(member: Member, first: int, count: int) -> None:
    steps = np.arange(first, first + count)
    member.add(MetricBlock(steps, {"norm": steps * 1.0}, first + count))


def test_a_write_that_fails_in_passing_is_made_again_with_the_next(client, db, monkeypatch):
    member = _running_member(client, db)
    buffer = MetricBuffer(db, [member], Settings())
    real, failures = loop.queue.record_progress, [OperationalError("x", {}, Exception("locked"))]

    def flaky(*args):  # noqa: ANN002, ANN202
        if failures:
            raise failures.pop()
        return real(*args)

    monkeypatch.setattr(loop.queue, "record_progress", flaky)
    _add_steps(member, 0, 10)
    buffer.flush()  # on the writer thread, which fails
    _add_steps(member, 10, 5)
    written = buffer.flush_now()  # waits for the failed write, then writes everything
    assert not failures and written is True
    buffer.close()
    with db.connect() as connection:
        stored = metric_store.read_series(connection, member.id, "norm")
    assert stored.steps.tolist() == list(range(15))


def test_a_failure_on_the_writer_thread_is_raised_on_the_training_thread(client, db, monkeypatch):
    member = _running_member(client, db)
    buffer = MetricBuffer(db, [member], Settings())

    def broken(*_args):  # noqa: ANN002, ANN202
        raise ZeroDivisionError("a bug in the writer")

    monkeypatch.setattr(loop.queue, "record_progress", broken)
    _add_steps(member, 0, 10)
    buffer.flush()
    with pytest.raises(ZeroDivisionError, match="a bug"):
        buffer.flush_now()
    buffer.close()


def test_blocks_of_one_logged_row_keep_their_values_after_the_next_block():
    specs = [ExperimentSpec(depth=d, steps=6, batch_size=50) for d in (1, 2)]
    blocks = []
    engine.run_group(specs, lambda b: blocks.append(b) or [True] * len(b), block_seconds=1e-9)
    assert all(len(member[0].steps) == 1 for member in blocks)
    one_row_blocks = [float(member[1].values["loss"][0]) for member in blocks]
    assert one_row_blocks == _series(specs, threads=1)[1]["loss"]


def test_slow_writes_are_spaced_to_keep_the_writer_thread_mostly_idle(client, db):
    member = _running_member(client, db)
    buffer = MetricBuffer(db, [member], Settings(flush_seconds=0.25, writer_share=0.2))
    assert buffer.flush_interval() == 0.25  # no write yet
    _add_steps(member, 0, 10)
    assert buffer.flush_now()
    assert buffer.flush_interval() == 0.25  # one quick write: the flush period holds
    buffer._write_seconds = 0.1
    assert buffer.flush_interval() == pytest.approx(0.5)  # busy at most a fifth of the time
    buffer._write_seconds = 30.0
    assert buffer.flush_interval() == loop.MAX_FLUSH_SECONDS  # cancels are still seen
    buffer.close()
