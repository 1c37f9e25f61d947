import numpy as np
import pytest

from core.settings import Settings
from worker import loop
from worker.loop import Worker
from worker.summary import summarize


def _curve(p: float, c: float, steps: np.ndarray, lr: float = 1e-3) -> np.ndarray:
    return np.exp(-c * (lr * steps) ** p)


@pytest.mark.parametrize(("p", "c"), [(2 / 3, 0.8), (1.0, 0.5), (1.3, 0.2)])
def test_fit_recovers_an_exact_stretched_exponential(p, c):
    steps = np.arange(0, 40_001, 10)
    summary = summarize(steps, _curve(p, c, steps), 1e-3, "flow")
    assert summary["rate_exponent"] == pytest.approx(p, rel=1e-9)
    assert summary["rate_constant"] == pytest.approx(c, rel=1e-9)
    first, last = summary["rate_window"]
    assert _curve(p, c, np.array([first]))[0] <= 0.1 and last == steps[-1] or last < steps[-1]


def test_fit_stops_before_the_noise_floor():
    steps = np.arange(0, 40_001, 10)
    rng = np.random.default_rng(0)
    floor = 1e-3 * np.exp(rng.normal(0, 0.3, len(steps)))
    errors = np.maximum(_curve(1.0, 0.5, steps), floor)
    summary = summarize(steps, errors, 1e-3, "sgd")
    assert summary["rate_exponent"] == pytest.approx(1.0, abs=0.05)
    assert errors[steps == summary["rate_window"][1]][0] > 2e-3


def test_steps_to_thresholds_and_min():
    steps = np.array([0, 10, 20, 30])
    summary = summarize(steps, np.array([0.6, 0.05, 0.02, 0.005]), 1e-3, "sgd")
    assert summary["steps_to"] == {"1e-1": 10, "1e-2": 30, "1e-3": None}
    assert summary["min_directional_error"] == 0.005
    assert summary["rate_exponent"] is None


@pytest.mark.parametrize(
    ("depth", "steps", "low", "high"), [(1, 100_000, 0.55, 0.67), (2, 40_000, 0.88, 1.0)]
)
def test_flow_runs_show_the_papers_rate_exponents(client, db, depth, steps, low, high):
    spec = {"optimizer": "flow", "dtype": "float64", "depth": depth, "steps": steps,
            "log_every": 100}  # fmt: skip
    experiment_id = client.post("/experiments", json=spec).json()["id"]
    Worker(db, Settings(flush_seconds=0.05)).run_one()
    summary = client.get(f"/experiments/{experiment_id}").json()["summary"]
    assert low < summary["rate_exponent"] < high


def test_a_sweeps_members_ending_together_get_the_summaries_of_their_own_series(
    client, db, monkeypatch
):
    """Members are summarised from series read a few runs a query (here one run a query, as
    the bound is set below one run's points); each summary is that of the member's series."""
    monkeypatch.setattr(loop, "SUMMARY_READ_POINTS", 10)
    grid = {"depth": [1, 3], "seed": [0, 1]}
    sweep = client.post("/sweeps", json={"base": {"steps": 3000}, "grid": grid}).json()
    Worker(db, Settings(flush_seconds=0.05)).run_one()
    for experiment_id in sweep["experiment_ids"]:
        run = client.get(f"/experiments/{experiment_id}").json()
        metrics = client.get(f"/experiments/{experiment_id}/metrics?names=directional_error")
        series = metrics.json()["series"]["directional_error"]
        expected = summarize(np.array(series["steps"]), np.array(series["values"]), 1e-3, "sgd")
        assert run["status"] == "succeeded"
        for field, value in expected.items():
            assert run["summary"][field] == value, field
