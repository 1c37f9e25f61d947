"""Client and CLI for issue #13: aggregates, sweep groups, finding, editing, archiving and
rerunning runs, against real API and worker processes."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from dirconv import ApiError, Client
from dirconv.cli import main

ALL_STATS = ("mean", "std", "min", "max", "median", "q10", "q25", "q75", "q90", "gmean")
QUANTILES = {"median": 0.5, "q10": 0.1, "q25": 0.25, "q75": 0.75, "q90": 0.9}


@pytest.fixture(scope="module")
def client(api) -> Client:
    with Client(api.url) as connected:
        yield connected


@pytest.fixture(scope="module")
def seeds(client) -> list[int]:
    """Three finished runs, noise from different seeds, one of them shorter than the others."""
    specs = [(0, 200), (1, 300), (2, 300)]
    ids = [
        client.submit(seed=seed, steps=steps, log_every=10, tags=["seeds13"])["id"]
        for seed, steps in specs
    ]
    client.wait_all(ids, timeout=120)
    return ids


@pytest.fixture(scope="module")
def depth_sweep(client) -> dict:
    sweep = client.sweep({"steps": 200, "log_every": 20}, {"depth": [1, 2], "seed": [0, 1]})
    client.wait_all(sweep["experiment_ids"], timeout=120)
    return sweep


def _expected(series: list[tuple[np.ndarray, np.ndarray]], stat: str, step: int) -> float:
    values = np.array([v[s == step][0] for s, v in series if step in s])
    if stat in QUANTILES:
        return float(np.quantile(values, QUANTILES[stat]))
    if stat == "gmean":
        return float(np.exp(np.mean(np.log(values))))
    return float(getattr(np, stat)(values))


def _cli(api, capsys, *args: str) -> tuple[int, str, str]:
    code = main(["--url", api.url, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_aggregate_matches_numpy_on_the_raw_series(client, seeds):
    raw = [client.metrics(i, "directional_error")["directional_error"] for i in seeds]
    answer = client.aggregate(seeds, stats=ALL_STATS)
    assert answer["ids"] == seeds and answer["missing"] == []
    assert answer["steps"].dtype == np.int64 and answer["steps"].tolist() == list(range(0, 301, 10))
    assert answer["n"].tolist() == [3] * 21 + [2] * 10
    for stat in ALL_STATS:
        expected = [_expected(raw, stat, int(step)) for step in answer["steps"]]
        assert answer[stat].dtype == np.float64
        np.testing.assert_allclose(answer[stat], expected, rtol=1e-12, err_msg=stat)


def test_aggregate_thins_by_every_kth_step_and_keeps_the_range(client, seeds):
    full = client.aggregate(seeds, stats="mean,q90")
    assert set(full) >= {"mean", "q90"} and "min" not in full
    thinned = client.aggregate(seeds, stats=["mean"], max_points=5)
    assert len(thinned["steps"]) <= 5
    chosen = np.isin(full["steps"], thinned["steps"])
    assert np.array_equal(thinned["mean"], full["mean"][chosen])
    assert len(set(np.diff(thinned["steps"]).tolist())) == 1
    window = client.aggregate(seeds, start_step=100, end_step=150)
    assert window["steps"].tolist() == [100, 110, 120, 130, 140, 150]


def test_aggregate_errors_name_the_parameter(client, seeds):
    with pytest.raises(ApiError) as raised:
        client.aggregate(seeds, stats=["mean", "mode"])
    assert raised.value.status == 422 and raised.value.errors[0][0] == "stats"
    with pytest.raises(ApiError) as raised:
        client.aggregate(seeds, name="accuracy")
    assert raised.value.errors[0][0] == "name"


def test_sweep_aggregate_groups_members_by_grid_fields(client, depth_sweep):
    answer = client.sweep_aggregate(depth_sweep["id"], by=["depth"], stats=["mean", "std"])
    assert answer["by"] == ["depth"]
    assert [group["values"] for group in answer["groups"]] == [{"depth": 1}, {"depth": 2}]
    members = client.sweep_metrics(depth_sweep["id"])
    for group in answer["groups"]:
        inside = [m for m in members if m["grid_values"]["depth"] == group["values"]["depth"]]
        raw = [m["series"] for m in inside]
        assert sorted(group["ids"]) == sorted(m["experiment_id"] for m in inside)
        assert group["n"].tolist() == [2] * len(group["steps"])
        np.testing.assert_allclose(group["mean"], np.mean([v for _, v in raw], axis=0))
        np.testing.assert_allclose(group["std"], np.std([v for _, v in raw], axis=0))
    whole = client.sweep_aggregate(depth_sweep["id"], max_points=3)
    assert len(whole["groups"]) == 1 and whole["groups"][0]["n"][0] == 4
    with pytest.raises(ApiError) as raised:
        client.sweep_aggregate(depth_sweep["id"], by="lr")
    assert raised.value.status == 422 and raised.value.errors[0][0] == "by"


def test_update_renames_retags_and_annotates(client):
    run = client.submit(steps=50, name="before", tags=["old"])
    updated = client.update(run["id"], name="after", tags=["a", "b"], notes="looks odd")
    assert (updated["name"], updated["tags"], updated["notes"]) == (
        "after",
        ["a", "b"],
        "looks odd",
    )
    kept = client.update(run["id"], notes="")
    assert kept["name"] == "after" and kept["tags"] == ["a", "b"] and kept["notes"] == ""
    with pytest.raises(ApiError) as raised:
        client.update(run["id"], tags=[""])
    assert raised.value.status == 422 and raised.value.errors[0][0].startswith("tags")


def test_archive_hides_a_run_until_restored(client, seeds):
    archived = seeds[0]
    client.archive(archived)
    assert client.get(archived)["archived"] is True
    listed = client.list(tag="seeds13")
    assert archived not in [run["id"] for run in listed["data"]] and listed["count"] == 2
    assert client.list(tag="seeds13", archived=True)["count"] == 3
    answer = client.aggregate(seeds, stats="mean")
    assert answer["missing"] == [archived] and answer["n"][0] == 2
    assert client.aggregate(seeds, archived=True)["n"][0] == 3
    restored = client.restore(archived)
    assert restored["archived"] is False and client.list(tag="seeds13")["count"] == 3


def test_rerun_queues_a_new_run_with_the_same_spec(client):
    run = client.submit(steps=60, depth=3, seed=31)
    again = client.rerun(run["id"])
    assert again["id"] != run["id"] and again["status"] == "queued"
    assert again["spec"] == run["spec"]
    with pytest.raises(ApiError) as raised:
        client.rerun(999_999)
    assert raised.value.status == 404


def test_list_filters_by_spec_and_sweep_and_sorts(client, depth_sweep):
    members = set(depth_sweep["experiment_ids"])
    by_sweep = client.list(sweep_id=depth_sweep["id"])
    assert {run["id"] for run in by_sweep["data"]} == members
    deep = client.list(sweep_id=depth_sweep["id"], spec={"depth": 2, "seed": 1})
    assert [run["spec"]["depth"] for run in deep["data"]] == [2] and deep["count"] == 1
    assert client.list(spec={"depth": 2, "lr": 1e-3, "loss": "logistic"}, limit=1)["count"] >= 2
    ordered = client.list(sweep_id=depth_sweep["id"], sort="final_directional_error")["data"]
    finals = [run["summary"]["final_directional_error"] for run in ordered]
    assert finals == sorted(finals)
    with pytest.raises(ApiError) as raised:
        client.list(spec={"colour": "red"})
    assert raised.value.errors[0][0] == "spec.colour"


def test_events_of_an_unknown_run_raise_api_error(client):
    with pytest.raises(ApiError) as raised:
        next(client.events(999_999))
    assert raised.value.status == 404


# The command line


def test_cli_aggregate_prints_the_clients_numbers(api, capsys, client, seeds):
    ids = ",".join(str(i) for i in seeds)
    code, out, err = _cli(api, capsys, "aggregate", ids, "--stats", "mean,q90", "--csv")
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["step", "n", "mean", "q90"]
    answer = client.aggregate(seeds, stats="mean,q90", max_points=20)
    assert [int(row[0]) for row in rows[1:]] == answer["steps"].tolist()
    np.testing.assert_allclose([float(row[2]) for row in rows[1:]], answer["mean"])
    code, out, _ = _cli(api, capsys, "aggregate", ids, "--max-points", "4")
    lines = out.splitlines()
    assert lines[0].split() == ["step", "n", "mean", "min", "max", "median"]
    assert 2 <= len(lines) - 1 <= 4 and lines[1].split()[:2] == ["0", "3"]


def test_cli_aggregate_of_a_sweep_prints_a_row_per_group_and_step(api, capsys, depth_sweep):
    args = ["aggregate", "--sweep", str(depth_sweep["id"]), "--by", "depth", "--max-points", "2"]
    code, out, err = _cli(api, capsys, *args)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["depth", "step", "n"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["1", "0", "2"],
        ["1", "120", "2"],
        ["2", "0", "2"],
        ["2", "120", "2"],
    ]
    code, _, err = _cli(api, capsys, "aggregate", "--sweep", str(depth_sweep["id"]), "--by", "x")
    assert code == 1 and err.startswith("by: ")


@pytest.mark.parametrize(
    "args", [[], ["1,2", "--sweep", "1"], ["1,2", "--by", "depth"], ["one,two"]]
)
def test_cli_aggregate_needs_ids_or_a_sweep(args, capsys):
    assert main(["--url", "http://127.0.0.1:9", "aggregate", *args]) == 2
    assert "error: " in capsys.readouterr().err


def test_cli_aggregate_reports_runs_left_out(api, capsys, seeds):
    code, _, err = _cli(api, capsys, "aggregate", f"{seeds[1]},999999")
    assert code == 0 and "left out: 999999" in err


def test_cli_edit_archive_restore_and_rerun(api, capsys, client):
    run = client.submit(steps=50, name="cli13")
    ident = str(run["id"])
    code, out, _ = _cli(api, capsys, "edit", ident, "--name", "cli13-b", "--tag", "x", "--tag", "y")
    assert code == 0 and "cli13-b" in out and "x, y" in out
    code, out, _ = _cli(api, capsys, "edit", ident, "--no-tags", "--notes", "a note")
    assert code == 0 and "(none)" in out and "a note" in out
    assert client.get(run["id"])["tags"] == []
    assert _cli(api, capsys, "edit", ident)[0] == 2
    code, out, _ = _cli(api, capsys, "archive", ident)
    assert code == 0 and "archived" in out
    _, out, _ = _cli(
        api, capsys, "list", "--spec", f"seed={run['spec']['seed']}", "--limit", "1000"
    )
    assert "cli13-b" not in out
    _, out, _ = _cli(api, capsys, "list", "--archived", "--limit", "1000")
    assert "cli13-b [archived]" in out
    code, out, _ = _cli(api, capsys, "restore", ident)
    assert code == 0 and "restored" in out
    code, out, _ = _cli(api, capsys, "rerun", ident)
    assert code == 0 and f"rerunning {ident}" in out
    rerun_id = int(out.split()[2])
    assert client.get(rerun_id)["spec"] == run["spec"]
    code, _, err = _cli(api, capsys, "archive", "999999")
    assert code == 1 and "999999 not found" in err


def test_cli_list_filters_by_spec_sweep_and_sorts(api, capsys, depth_sweep):
    sweep = str(depth_sweep["id"])
    args = ["list", "--sweep", sweep, "--spec", "depth=2", "--sort=-final_directional_error"]
    code, out, err = _cli(api, capsys, *args)
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()[1:-1]]
    assert len(rows) == 2 and {row[3] for row in rows} == {"2"}
    finals = [float(row[7]) for row in rows]
    assert finals == sorted(finals, reverse=True) and out.endswith("(2 of 2)\n")
    code, _, err = _cli(api, capsys, "list", "--spec", "depth=deep")
    assert code == 1 and err.startswith("spec.depth: ")
    assert _cli(api, capsys, "list", "--spec", "depth")[0] == 2
