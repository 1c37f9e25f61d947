"""Client and CLI against stand-ins for #3's sweeps and theory endpoints (their contracts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dirconv import ApiError, Client
from dirconv.cli import main


def test_sweep_queues_members_and_reads_their_metrics(future_api):
    with Client(future_api.url) as client:
        sweep = client.sweep({"steps": 200}, {"depth": [1, 2]}, name="depths")
        assert len(sweep["experiment_ids"]) == 2
        client.wait_all(sweep["experiment_ids"], timeout=60)
        members = client.sweep_metrics(sweep["id"], max_points=50)
    assert [m["grid_values"] for m in members] == [{"depth": 1}, {"depth": 2}]
    steps, values = members[1]["series"]
    assert len(steps) == 50 and values[0] == pytest.approx(0.6325, abs=1e-4)


def test_sweep_errors_name_the_base_field(future_api):
    with Client(future_api.url) as client, pytest.raises(ApiError) as raised:
        client.sweep({}, {"depth": [0]})
    assert raised.value.errors[0][0] == "base.depth"


def test_theory_follows_the_contract(future_api):
    with Client(future_api.url) as client:
        run = client.submit(depth=2, steps=1000)
        steps, errors = client.theory(run["id"], max_points=11)
        assert steps.tolist() == list(range(0, 1001, 100))
        assert errors[0] == pytest.approx(0.6325, abs=1e-4) and np.all(np.diff(errors) < 0)
        assert client.theory(client.submit(dim=3)["id"]) is None


def test_cli_sweep_prints_the_members(future_api, capsys):
    code = main(["--url", future_api.url, "sweep", "--grid", "depth=1,2,3", "--steps", "100"])
    assert code == 0
    assert "submitted sweep" in capsys.readouterr().out


def test_reproduce_paper_takes_the_theory_endpoint_without_flow_runs(future_api, capsys, tmp_path):
    out = tmp_path / "repro"
    args = ["reproduce-paper", "--out", str(out), "--depths", "2", "--steps", "300"]
    assert main(["--url", future_api.url, *args]) == 0
    assert "does not run optimizer 'flow'" in capsys.readouterr().err
    table = (Path(out) / "table.md").read_text()
    assert "/theory" in table and "| 2 | flow | 0.6325" in table
