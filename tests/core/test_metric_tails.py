"""A writer's memory of its tail chunks packs the same bytes as a write that reads them back."""

import math

import numpy as np
import pytest
from sqlalchemy import event, select

from core import metric_store
from core.metric_store import CHUNK_STEPS, SeriesArrays, storage
from core.metric_store.encoding import by_chunk, chunked, merge, pack, sorted_unique
from core.metric_store.storage import CHUNK_CONTENT as CONTENT
from core.models import MetricChunk
from tests.core.test_metric_store import _experiment, store_db  # noqa: F401 - fixture

NAME = "loss"


def _blocks(seed: int, count: int) -> list[SeriesArrays]:
    """Blocks of ascending steps with gaps, NaN and infinities, some crossing chunk borders."""
    rng = np.random.default_rng(seed)
    blocks, step = [], 0
    for _ in range(count):
        steps = step + np.cumsum(rng.integers(1, 4, size=int(rng.integers(1, 900))))
        values = rng.normal(size=len(steps))
        values[rng.random(len(steps)) < 0.05] = math.nan
        values[rng.random(len(steps)) < 0.01] = math.inf
        blocks.append(SeriesArrays(steps, values))
        step = int(steps[-1])
    return blocks


@pytest.mark.parametrize("seed", range(5))
def test_appended_rows_equal_rows_packed_from_the_whole_chunk(seed):
    """Three series of different lengths and gaps, written together block after block."""
    tails, stored = metric_store.Tails(), {}
    runs = [_blocks(seed * 3 + k, 40) for k in range(3)]
    for blocks in zip(*runs, strict=True):
        writes, expected = [], []
        for name, block in enumerate(blocks):
            for chunk, part in by_chunk(block):
                held = None if tails.knows(1, str(name), chunk) else stored.get((name, chunk))
                stored[name, chunk] = merge(stored.get((name, chunk)), part)
                writes.append((str(name), chunk, held, part))
                expected.append(pack(1, str(name), chunk, stored[name, chunk]))
        assert tails.pack(1, writes) == expected


def test_a_rewritten_step_and_an_earlier_chunk_are_merged_like_a_read_back_chunk():
    tails = metric_store.Tails()
    first = SeriesArrays(np.arange(0, 100), np.arange(0, 100, dtype=float))
    again = SeriesArrays(np.array([50, 120]), np.array([-1.0, -2.0]))
    tails.pack(1, [(NAME, 0, None, first)])
    stored = merge(first, again)
    assert tails.pack(1, [(NAME, 0, None, again)]) == [pack(1, NAME, 0, stored)]
    later = SeriesArrays(np.array([CHUNK_STEPS + 3]), np.array([7.0]))
    tails.pack(1, [(NAME, 1, None, later)])
    assert not tails.knows(1, NAME, 0)
    assert tails.pack(1, [(NAME, 0, stored, again)]) == [pack(1, NAME, 0, merge(stored, again))]


def _rows(engine, experiment_id):
    columns = [getattr(MetricChunk, name) for name in ("name", "chunk", *CONTENT)]
    query = select(*columns).where(MetricChunk.experiment_id == experiment_id)
    with engine.connect() as connection:
        return connection.execute(query.order_by(MetricChunk.name, MetricChunk.chunk)).all()


def test_writes_with_memory_store_the_rows_of_writes_without(store_db):  # noqa: F811
    remembering, reading = _experiment(store_db), _experiment(store_db)
    tails = metric_store.Tails()
    for block in _blocks(7, 30):
        points = {NAME: (block.steps, block.values), "acc": (block.steps, -block.values)}
        with store_db.begin() as connection:
            metric_store.write_points(connection, remembering, points, tails)
            metric_store.write_points(connection, reading, points)
    rows = _rows(store_db, remembering)
    assert len(rows) > 4
    assert rows == _rows(store_db, reading)


def test_a_groups_write_stores_the_rows_of_one_write_per_experiment(store_db, monkeypatch):  # noqa: F811
    """write_many over several experiments, with memory and with several statements' worth of
    rows, against write_points one experiment at a time without memory."""
    monkeypatch.setattr(storage, "ROWS_PER_STATEMENT", 3)
    together = [_experiment(store_db) for _ in range(3)]
    alone = [_experiment(store_db) for _ in range(3)]
    tails = metric_store.Tails()
    runs = [_blocks(11 + k, 12) for k in range(3)]
    for blocks in zip(*runs, strict=True):
        batch = [
            (
                experiment_id,
                {NAME: (block.steps, block.values), "acc": (block.steps, -block.values)},
            )
            for experiment_id, block in zip(together, blocks, strict=True)
        ]
        with store_db.begin() as connection:
            metric_store.write_many(connection, batch, tails)
            for experiment_id, (_, points) in zip(alone, batch, strict=True):
                metric_store.write_points(connection, experiment_id, points)
    for mine, reference in zip(together, alone, strict=True):
        assert _rows(store_db, mine) == _rows(store_db, reference) != []


@pytest.mark.parametrize("seed", range(4))
def test_metrics_sharing_a_steps_array_are_cut_like_each_alone(seed):
    """Unsorted steps with repeats (the last value of a step wins), across chunk borders."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(0, 3 * CHUNK_STEPS, size=int(rng.integers(1, 5000)))
    values = {name: rng.normal(size=len(steps)) for name in ("a", "b", "c")}
    parts = chunked({name: (steps, column) for name, column in values.items()})
    expected = {
        (name, chunk): part
        for name, column in values.items()
        for chunk, part in by_chunk(sorted_unique(steps, column))
    }
    assert parts.keys() == expected.keys()
    for key, part in parts.items():
        assert np.array_equal(part.steps, expected[key].steps)
        assert np.array_equal(part.values, expected[key].values)


def test_a_writer_with_memory_reads_back_no_chunk_after_its_tails(store_db):  # noqa: F811
    """Each chunk is read back once, when the writer first meets the series: the chunks that
    follow a remembered tail cannot be stored yet."""
    experiment_id, tails = _experiment(store_db), metric_store.Tails()
    reads = []

    def count_reads(conn, cursor, statement, *args):  # noqa: ANN001, ANN202
        if statement.lstrip().upper().startswith("SELECT") and "metric_chunks" in statement:
            reads.append(statement)

    event.listen(store_db, "before_cursor_execute", count_reads)
    try:
        for block in _blocks(3, 60):
            with store_db.begin() as connection:
                points = {NAME: (block.steps, block.values)}
                metric_store.write_points(connection, experiment_id, points, tails)
    finally:
        event.remove(store_db, "before_cursor_execute", count_reads)
    assert len(_rows(store_db, experiment_id)) > 4
    assert len(reads) == 1
