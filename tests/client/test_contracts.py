"""Client and CLI against the sweeps, theory and flow endpoints of issue #3."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dirconv import ApiError, Client
from dirconv.cli import main


def test_sweep_queues_members_and_reads_their_metrics(api):
    with Client(api.url) as client:
        sweep = client.sweep({"steps": 200}, {"depth": [1, 2]}, name="depths")
        assert len(sweep["experiment_ids"]) == 2
        client.wait_all(sweep["experiment_ids"], timeout=60)
        members = client.sweep_metrics(sweep["id"], max_points=50)
    assert [m["grid_values"] for m in members] == [{"depth": 1}, {"depth": 2}]
    steps, values = members[1]["series"]
    assert len(steps) == 50 and values[0] == pytest.approx(0.6325, abs=1e-4)


def test_sweep_errors_name_the_grid_or_base_field(api):
    with Client(api.url) as client:
        with pytest.raises(ApiError) as raised:
            client.sweep({}, {"depth": [0]})
        assert raised.value.errors[0][0] == "grid.depth"
        with pytest.raises(ApiError) as raised:
            client.sweep({"lr": -1}, {"depth": [1]})
        assert raised.value.errors[0][0] == "base.lr"


def test_theory_follows_the_contract(api):
    with Client(api.url) as client:
        run = client.submit(depth=2, steps=1000)
        steps, errors = client.theory(run["id"], max_points=11)
        assert steps.tolist() == list(range(0, 1001, 100))
        assert errors[0] == pytest.approx(0.6325, abs=1e-4) and np.all(np.diff(errors) < 0)
        unbalanced = client.submit(depth=2, init="gaussian", init_scale=0.5)
        assert client.theory(unbalanced["id"]) is None


def test_cli_sweep_prints_the_members(api, capsys):
    code = main(["--url", api.url, "sweep", "--grid", "depth=1,2,3", "--steps", "100"])
    assert code == 0
    assert "submitted sweep" in capsys.readouterr().out


def test_reproduce_paper_draws_flow_runs_beside_sgd(api, capsys, tmp_path):
    out = tmp_path / "repro"
    args = ["reproduce-paper", "--out", str(out), "--depths", "2", "--steps", "300"]
    assert main(["--url", api.url, *args]) == 0
    table = (Path(out) / "table.md").read_text()
    assert "flow run" in table and "| 2 | flow | 0.6325" in table
    assert (Path(out) / "figure.png").stat().st_size > 10_000
