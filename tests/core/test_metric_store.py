"""The packed metric store on SQLite and on a scratch PostgreSQL database."""

import math

import numpy as np
import pytest
from sqlalchemy import insert

from core import metric_store
from core.db import make_engine, upgrade_schema
from core.metric_store import CHUNK_STEPS, SeriesArrays
from core.models import Experiment


@pytest.fixture(params=["sqlite", "postgresql"])
def store_db(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        upgrade_schema(url)
        engine = make_engine(url)
        yield engine
        engine.dispose()
        return
    url = request.getfixturevalue("scratch_postgres_url")
    upgrade_schema(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def _experiment(engine) -> int:
    with engine.begin() as connection:
        row = {"name": "x", "status": "running", "spec": {}, "total_steps": 1}
        return connection.execute(insert(Experiment).returning(Experiment.id), row).scalar_one()


def _write(engine, experiment_id, points) -> int:
    with engine.begin() as connection:
        return metric_store.write_points(connection, experiment_id, points)


def _read(engine, experiment_id, name="loss", **bounds) -> SeriesArrays:
    with engine.connect() as connection:
        return metric_store.read_series(connection, experiment_id, name, **bounds)


def _same(series: SeriesArrays, steps, values) -> None:
    np.testing.assert_array_equal(series.steps, steps)
    np.testing.assert_array_equal(series.values, values)  # NaN equals NaN here


def test_round_trip_keeps_every_value_bit_for_bit(store_db):
    experiment_id = _experiment(store_db)
    steps = np.arange(0, 3 * CHUNK_STEPS + 17, 3)
    values = np.random.default_rng(0).normal(size=len(steps)) * 1e-300
    values[[0, 5, 9, -1]] = [math.nan, math.inf, -math.inf, 5e-324]
    assert _write(store_db, experiment_id, {"loss": (steps, values)}) == len(steps)
    _same(_read(store_db, experiment_id), steps, values)
    ranged = _read(store_db, experiment_id, start_step=CHUNK_STEPS - 2, end_step=2 * CHUNK_STEPS)
    inside = (steps >= CHUNK_STEPS - 2) & (steps <= 2 * CHUNK_STEPS)
    _same(ranged, steps[inside], values[inside])
    assert _read(store_db, experiment_id, name="norm").steps.size == 0


def test_overlapping_and_repeated_writes_leave_one_point_per_step(store_db):
    experiment_id = _experiment(store_db)
    steps = np.arange(20_000)
    values = np.sqrt(steps.astype(float))
    _write(store_db, experiment_id, {"loss": (steps[:12_000], values[:12_000])})
    # A resumed worker replays a flush, partly overlapping, then goes on.
    _write(store_db, experiment_id, {"loss": (steps[9_000:], values[9_000:])})
    _write(store_db, experiment_id, {"loss": (steps[9_000:15_000], values[9_000:15_000])})
    _write(store_db, experiment_id, [("loss", 7, 1.0), ("loss", 7, values[7]), ("loss", 3, None)])
    expected = values.copy()
    expected[3] = math.nan
    _same(_read(store_db, experiment_id), steps, expected)
    with store_db.connect() as connection:
        assert metric_store.count_points(connection, experiment_id) == 20_000


def test_out_of_order_writes_are_read_back_sorted(store_db):
    experiment_id = _experiment(store_db)
    _write(store_db, experiment_id, {"loss": ([50_000, 10], [2.0, 1.0])})
    _write(store_db, experiment_id, {"loss": ([30_000], [3.0])})
    _same(_read(store_db, experiment_id), [10, 30_000, 50_000], [1.0, 3.0, 2.0])


def test_replayed_flush_is_idempotent(store_db):
    experiment_id = _experiment(store_db)
    flush = {"angle": (np.arange(100), np.ones(100)), "loss": (np.arange(100), np.zeros(100))}
    for _ in range(2):
        with store_db.begin() as connection:
            assert metric_store.write_points(connection, experiment_id, flush) == 200
    with store_db.connect() as connection:
        assert metric_store.count_points(connection, experiment_id) == 200
    with store_db.begin() as connection:
        metric_store.delete_points(connection, experiment_id)
        assert metric_store.count_points(connection, experiment_id) == 0


def test_compare_reads_many_runs_in_one_query(store_db):
    ids = [_experiment(store_db) for _ in range(3)]
    for i, experiment_id in enumerate(ids[:2]):
        _write(store_db, experiment_id, {"loss": (np.arange(10), np.full(10, float(i)))})
    with store_db.connect() as connection:
        many = metric_store.read_many(connection, ids, "loss", start_step=2, end_step=4)
    assert sorted(many) == ids[:2]
    _same(many[ids[1]], [2, 3, 4], [1.0, 1.0, 1.0])


def _random_walk(count: int, seed: int = 0) -> SeriesArrays:
    values = np.cumsum(np.random.default_rng(seed).normal(size=count))
    return SeriesArrays(np.arange(count, dtype=np.int64), values)


@pytest.mark.parametrize("spacing", ["linear", "log"])
def test_downsampling_keeps_first_last_and_every_buckets_extremes(spacing):
    series = _random_walk(200_000)
    series.values[123_457] = 1e6  # a one-step spike
    series.values[777] = -math.inf
    series.values[1000:1010] = math.nan
    thin = metric_store.downsample(series, 1000, spacing)
    assert 500 < len(thin.steps) <= 1000
    assert thin.steps[0] == 0 and thin.steps[-1] == 199_999
    assert np.all(np.diff(thin.steps) > 0)
    kept = dict(zip(thin.steps.tolist(), thin.values.tolist(), strict=True))
    assert kept[123_457] == 1e6 and kept[777] == -math.inf
    # Each kept point is the original's, and between two kept points no original value lies
    # outside the range a plot would draw through buckets' extremes.
    np.testing.assert_array_equal(series.values[thin.steps], thin.values)
    assert np.nanmax(thin.values) == np.nanmax(series.values)


def test_linear_downsampling_holds_each_buckets_min_and_max():
    series = _random_walk(102_400, seed=1)
    thin = metric_store.downsample(series, 400, "linear")
    kept = set(thin.steps.tolist())
    for bucket in np.array_split(np.arange(102_400), 100):
        # 400 points: 100 buckets of 1024 steps (or 200 of 512, which nest inside these).
        low = bucket[0] + int(np.argmin(series.values[bucket]))
        high = bucket[0] + int(np.argmax(series.values[bucket]))
        assert low in kept and high in kept


def test_small_series_and_tiny_budgets():
    series = _random_walk(10)
    assert metric_store.downsample(series, 10) is series
    assert metric_store.downsample(series, 2).steps.tolist() == [0, 9]
    assert len(metric_store.downsample(series, 3).steps) == 3


@pytest.mark.parametrize(
    ("bounds", "max_points", "spacing"),
    [
        ({}, 1000, "linear"),
        ({}, 1000, "log"),
        ({}, 40, "linear"),
        ({}, 5000, "log"),
        ({"start_step": 3001, "end_step": 150_007}, 700, "linear"),
        ({"start_step": 10_000}, 300, "log"),
        ({"end_step": 9_000}, 100, "linear"),
        ({"start_step": 5, "end_step": 700}, 2000, "linear"),
        ({}, 3, "linear"),
    ],
)
def test_sketch_reads_return_exactly_the_points_of_a_full_read(
    store_db, bounds, max_points, spacing
):
    experiment_id = _experiment(store_db)
    walk = _random_walk(200_000, seed=2)
    keep = np.random.default_rng(3).random(200_000) > 0.2  # gaps, as with log_every or crashes
    walk.values[[10, 60_001, 60_002]] = [math.nan, math.inf, -math.inf]
    walk.values[70_000:70_100] = math.nan
    _write(store_db, experiment_id, {"loss": (walk.steps[keep], walk.values[keep])})
    expected = metric_store.downsample(
        _read(store_db, experiment_id, **bounds), max_points, spacing
    )
    with store_db.connect() as connection:
        got = metric_store.read_downsampled(
            connection, experiment_id, "loss", max_points=max_points, spacing=spacing, **bounds
        )
    assert len(got.steps) <= max_points
    _same(got, expected.steps, expected.values)


def test_many_downsampled_reads_match_one_by_one_full_reads(store_db):
    lengths = [0, 50, 9_000, 120_000]
    ids = [_experiment(store_db) for _ in lengths]
    for experiment_id, length in zip(ids, lengths, strict=True):
        walk = _random_walk(length, seed=experiment_id)
        _write(store_db, experiment_id, {"loss": (walk.steps * 3, walk.values)})
    bounds = {"start_step": 30, "end_step": 300_000}
    with store_db.connect() as connection:
        many = metric_store.read_many_downsampled(
            connection, ids, "loss", max_points=200, spacing="log", **bounds
        )
    assert sorted(many) == ids[1:]
    for experiment_id in ids[1:]:
        full = _read(store_db, experiment_id, **bounds)
        expected = metric_store.downsample(full, 200, "log")
        _same(many[experiment_id], expected.steps, expected.values)


@pytest.mark.parametrize("step", [0, 1, 4095, 4096, 5000, 9999, 20_000])
def test_points_from_a_step_on_are_dropped_and_earlier_ones_kept(store_db, step):
    experiment_id = _experiment(store_db)
    steps = np.arange(0, 10_000)
    _write(store_db, experiment_id, {"loss": (steps, steps * 0.5), "norm": (steps, steps * 2.0)})
    with store_db.begin() as connection:
        metric_store.delete_points_from(connection, experiment_id, step)
    with store_db.connect() as connection:
        for name, scale in (("loss", 0.5), ("norm", 2.0)):
            series = metric_store.read_series(connection, experiment_id, name)
            kept = steps[steps < step]
            assert series.steps.tolist() == kept.tolist()
            assert series.values.tolist() == (kept * scale).tolist()
