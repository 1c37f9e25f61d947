"""Jobs are bounded before they are accepted: memory and stored points, for runs and sweeps;
the estimates are checked against what the trainers really allocate and log."""

from __future__ import annotations

import pytest

from core import cost
from core.settings import get_settings
from core.spec import ExperimentSpec
from worker import engine
from worker.trainers.registry import make_trainer


def _refusal(response) -> tuple[list[str], str]:  # noqa: ANN001
    assert response.status_code == 422, response.text[:300]
    (error,) = response.json()["detail"]
    return error["loc"], error["msg"]


def _count(client) -> int:  # noqa: ANN001
    return client.get("/experiments").json()["count"]


def test_a_run_past_the_memory_limit_is_refused_naming_batch_size(client):
    loc, message = _refusal(
        client.post("/experiments", json={"dim": 10000, "batch_size": 10_000_000, "steps": 1})
    )
    assert loc == ["body", "batch_size"]
    assert "DIRCONV_MAX_RUN_BYTES" in message and "MiB" in message
    assert _count(client) == 0


def test_a_wide_input_is_blamed_on_dim_when_the_batch_is_the_default(client, settings_env):
    settings_env(MAX_RUN_BYTES=30_000_000)
    loc, _ = _refusal(client.post("/experiments", json={"dim": 10000, "steps": 1}))
    assert loc == ["body", "dim"]
    loc, _ = _refusal(client.post("/experiments", json={"optimizer": "gd", "n_samples": 2_000_000}))
    assert loc == ["body", "n_samples"]


def test_a_large_network_is_blamed_on_its_width(client, settings_env):
    settings_env(MAX_RUN_BYTES=50_000_000)
    spec = {"depth": 3, "width": 2000, "dim": 100, "batch_size": 10, "steps": 1}
    loc, message = _refusal(client.post("/experiments", json=spec))
    assert loc == ["body", "width"]
    assert "smaller network" in message


def test_stored_points_past_the_limit_are_refused_naming_log_every(client, settings_env):
    settings_env(MAX_RUN_POINTS=1000)
    loc, message = _refusal(client.post("/experiments", json={"steps": 1000, "log_every": 1}))
    assert loc == ["body", "log_every"]
    assert "5,005 metric points" in message and "DIRCONV_MAX_RUN_POINTS" in message
    loc, _ = _refusal(client.post("/experiments", json={"steps": 1000}))
    assert loc == ["body", "steps"]
    assert client.post("/experiments", json={"steps": 1000, "log_every": 10}).status_code == 201
    assert _count(client) == 1


def test_a_sweep_past_its_points_limit_is_refused_and_stores_nothing(client):
    grid = {"seed": list(range(64)), "depth": [1, 2]}
    response = client.post("/sweeps", json={"base": {"steps": 1_000_000}, "grid": grid})
    loc, message = _refusal(response)
    assert loc == ["body", "base", "steps"]
    assert "640,000,640" in message and "DIRCONV_MAX_SWEEP_POINTS" in message
    assert _count(client) == 0


def test_a_sweep_whose_members_together_need_too_much_memory_is_refused(client):
    base = {"steps": 10, "batch_size": 200_000, "dim": 100}
    grid = {"seed": list(range(64)), "depth": [1, 2]}
    loc, message = _refusal(client.post("/sweeps", json={"base": base, "grid": grid}))
    assert loc == ["body", "base", "batch_size"]
    assert "128 members training together" in message
    small = client.post("/sweeps", json={"base": base, "grid": {"depth": [1, 2]}})
    assert small.status_code == 201, small.text[:300]


def test_a_member_past_a_limit_is_named_in_the_grid(client):
    grid = {"batch_size": [1000, 40_000_000]}
    loc, message = _refusal(client.post("/sweeps", json={"base": {"steps": 1}, "grid": grid}))
    assert loc == ["body", "grid", "batch_size"]
    assert "batch_size=40000000" in message


@pytest.mark.parametrize(
    "fields",
    [
        {"steps": 50, "log_every": 7},
        {"steps": 49, "log_every": 7},
        {"steps": 5, "log_every": 100},
        {"steps": 20, "optimizer": "gd", "n_samples": 64},
    ],
)
def test_stored_points_count_what_a_run_logs(fields):
    spec = ExperimentSpec(**fields)
    logged = []
    engine.run(spec, lambda block: logged.append(len(block.steps) * len(block.values)) or True)
    assert cost.stored_points(spec) == sum(logged)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("seeds", [(0,), (0, 1)], ids=["lone-drawing-ahead", "sweep"])
def test_the_memory_estimate_covers_the_groups_arrays(dtype, seeds):
    specs = [
        ExperimentSpec(dim=50, depth=depth, batch_size=20_000, seed=seed, dtype=dtype)
        for depth in ((1,) if len(seeds) == 1 else (1, 3))
        for seed in seeds
    ]
    group = make_trainer(specs, threads=2)
    assert (group.prefetch is not None) == (len(specs) == 1)
    allocated = group.x.nbytes + group.y.nbytes + group.params.nbytes
    allocated += group.prefetch.nbytes() if group.prefetch is not None else 0
    assert cost.group_bytes(specs) >= allocated
    assert cost.group_bytes(specs) < 4 * allocated + cost.BASE_BYTES


def test_defaults_are_the_documented_limits():
    settings = get_settings()
    assert settings.max_run_bytes == 1 << 30
    assert settings.max_run_points == 20_000_000
    assert settings.max_sweep_points == 200_000_000
    assert settings.max_read_points == 2_000_000
