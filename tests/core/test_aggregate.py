"""core/aggregate.py against numpy, arrays only."""

from __future__ import annotations

import numpy as np
import pytest

from core.aggregate import STATS, aggregate, thinned
from core.metric_store import SeriesArrays


def test_thinning_keeps_every_kth_step_and_never_more_than_asked():
    grid = np.arange(20_001)
    kept = thinned(grid, 1000)
    assert len(kept) <= 1000 and (kept == grid[::21]).all()
    assert thinned(grid, None) is grid


@pytest.mark.parametrize("runs", [1, 2, 7])
def test_each_statistic_equals_numpy_over_the_runs_present(runs):
    rng = np.random.default_rng(runs)
    series = []
    for run in range(runs):
        steps = np.sort(rng.choice(50, size=30 - run, replace=False))
        series.append(SeriesArrays(steps, np.exp(rng.normal(size=len(steps)))))
    union = np.unique(np.concatenate([s.steps for s in series]))
    result = aggregate(union, runs, enumerate(series), STATS)
    for column, step in enumerate(union):
        present = np.array([s.values[s.steps == step][0] for s in series if step in s.steps])
        assert result.n[column] == len(present)
        expected = {
            "mean": np.mean(present),
            "std": np.std(present),
            "min": np.min(present),
            "max": np.max(present),
            "median": np.median(present),
            "q10": np.quantile(present, 0.1),
            "q25": np.quantile(present, 0.25),
            "q75": np.quantile(present, 0.75),
            "q90": np.quantile(present, 0.9),
            "gmean": np.exp(np.mean(np.log(present))),
        }
        for stat, value in expected.items():
            assert result.stats[stat][column] == pytest.approx(value, rel=1e-12), stat


def test_a_nan_point_makes_its_step_nan_and_infinities_stay():
    a = SeriesArrays(np.array([0, 1]), np.array([np.nan, np.inf]))
    b = SeriesArrays(np.array([0, 1]), np.array([1.0, 2.0]))
    result = aggregate(np.array([0, 1]), 2, [(0, a), (1, b)], STATS)
    assert result.n.tolist() == [2, 2]
    assert all(np.isnan(result.stats[stat][0]) for stat in STATS)
    assert result.stats["max"][1] == np.inf and result.stats["min"][1] == 2.0
    assert result.stats["mean"][1] == np.inf


def test_points_off_the_grid_are_skipped():
    part = SeriesArrays(np.array([0, 3, 5, 9]), np.array([1.0, 2.0, 3.0, 4.0]))
    result = aggregate(np.array([3, 9]), 1, [(0, part)], ["mean"])
    assert result.stats["mean"].tolist() == [2.0, 4.0]


def test_a_wide_step_span_is_searched_with_the_same_result(monkeypatch):
    rng = np.random.default_rng(3)
    series = [
        SeriesArrays(np.array([0, 10, 5_000_000]), rng.random(3)),
        SeriesArrays(np.array([10, 20, 5_000_000]), rng.random(3)),
    ]
    grid = np.array([0, 10, 20, 5_000_000])
    table = aggregate(grid, 2, enumerate(series), STATS)
    monkeypatch.setattr("core.aggregate.MAX_LOOKUP_STEPS", 100)
    searched = aggregate(grid, 2, enumerate(series), STATS)
    assert table.n.tolist() == searched.n.tolist() == [1, 2, 1, 2]
    for stat in STATS:
        np.testing.assert_array_equal(table.stats[stat], searched.stats[stat])
