"""What a new user hit with the `dirconv` command, against real API and worker processes:
empty lists, closed pipes, metrics as one row a step, and the example's and the reproduction
table's wording."""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dirconv import Client
from dirconv.cli import EXIT_BROKEN_PIPE, TABLE_ROWS, main, thin_rows
from dirconv.reproduce import Curves, render_table

REPO_ROOT = Path(__file__).resolve().parents[2]
METRICS = ["directional_error", "angle", "loss", "norm", "balancedness"]


def _run(api, capsys, *args: str) -> tuple[int, str, str]:
    code = main(["--url", api.url, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def finished_run(api) -> str:
    """The id of a 300-step run that has ended."""
    with Client(api.url) as client:
        run = client.submit(depth=2, steps=300)
        assert client.wait(run["id"])["status"] == "succeeded"
    return str(run["id"])


@pytest.mark.parametrize(
    "filters", [["--status", "running", "--tag", "paper"], ["--tag", "no-run-has-this-tag"]]
)
def test_list_with_no_match_prints_the_header_and_a_zero_count(api, capsys, filters):
    code, out, err = _run(api, capsys, "list", *filters)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["id", "status", "progress", "depth", "loss", "optimizer", "lr",
                                "final_err", "name"]  # fmt: skip
    assert lines[-1] == "(0 of 0)"


def test_output_into_a_closed_pipe_ends_quietly(api, finished_run):
    reader, writer = os.pipe()
    os.close(reader)  # like `| head` that has already exited
    try:
        result = subprocess.run(
            [sys.executable, "-m", "dirconv.cli", "--url", api.url, "show", finished_run],
            stdout=writer, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        )  # fmt: skip
    finally:
        os.close(writer)
    assert result.returncode == EXIT_BROKEN_PIPE
    assert result.stderr == ""


def test_metrics_csv_has_one_row_a_step_with_every_metric(api, capsys, finished_run):
    code, out, err = _run(api, capsys, "metrics", finished_run, "--csv", "--max-points", "5")
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["step", *METRICS]
    assert [int(row[0]) for row in rows[1:]] == [0, 75, 150, 225, 300]
    assert all(len(row) == 6 and all(row) for row in rows[1:])
    assert rows[1][1].startswith("0.632")


def test_metrics_csv_without_max_points_has_every_step(api, capsys, finished_run):
    code, out, _ = _run(api, capsys, "metrics", finished_run, "--csv", "--names", "loss,norm")
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0 and rows[0] == ["step", "loss", "norm"]
    assert [int(row[0]) for row in rows[1:]] == list(range(301))


def test_metrics_prints_a_table_of_values(api, capsys, finished_run):
    code, out, err = _run(api, capsys, "metrics", finished_run)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["step", *METRICS]
    assert len(lines) == 1 + TABLE_ROWS
    assert lines[1].split()[:2] == ["0", "0.632456"]
    assert lines[-1].split()[0] == "300"
    code, out, _ = _run(api, capsys, "metrics", finished_run, "--max-points", "3")
    assert [line.split()[0] for line in out.splitlines()] == ["step", "0", "150", "300"]


def test_metrics_of_a_range_thin_within_it(api, capsys, finished_run):
    args = ["--start-step", "100", "--end-step", "200", "--max-points", "3"]
    code, out, _ = _run(api, capsys, "metrics", finished_run, *args)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["100", "150", "200"]


@pytest.mark.parametrize(("keep", "expected"), [(1, [0]), (2, [0, 10]), (4, [0, 4, 7, 10])])
def test_thinning_keeps_the_ends_and_spreads_the_rest(keep, expected):
    rows = [[str(step), "1.0"] for step in range(11)]
    assert [int(row[0]) for row in thin_rows(rows, 0, 10, keep)] == expected


def test_reproduction_table_says_dash_where_no_rate_was_fitted():
    series = (np.array([0, 100]), np.array([0.6, 0.5]))
    summary = {"rate_exponent": None, "rate_constant": None, "rate_window": None}
    run = {"id": 1, "status": "succeeded", "summary": summary}
    table = render_table([Curves(depth=1, sgd_run=run, sgd=series)], 100)
    assert "None" not in table
    assert "| 1 | — | — | — |" in table


def test_reproduction_table_formats_fitted_rates():
    series = (np.array([0, 100]), np.array([0.6, 0.5]))
    summary = {
        "rate_exponent": 1.2242062655,
        "rate_constant": 0.4556512,
        "rate_window": [3710, 10880],
    }
    run = {"id": 1, "status": "succeeded", "summary": summary}
    table = render_table([Curves(depth=4, sgd_run=run, sgd=series)], 100)
    assert "| 4 | 1.224 | 0.4557 | 3,710–10,880 |" in table


def _depth_sweep_example():
    spec = importlib.util.spec_from_file_location(
        "depth_sweep", REPO_ROOT / "examples/depth_sweep.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_depth_sweep_example_reports_reached_and_not_reached():
    example = _depth_sweep_example()
    steps = np.array([0, 10, 20])
    assert example.report_line(4, steps, np.array([0.6, 0.005, 0.001])) == (
        "depth 4: final error 0.001, error <= 0.01 from step 10"
    )
    assert example.report_line(1, steps, np.array([0.6, 0.5, 0.4])) == (
        "depth 1: final error 0.4, error still above 0.01 after 20 steps"
    )


def test_depth_sweep_example_against_the_api(api):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "depth_sweep.py")],
        env={**os.environ, "DIRCONV_URL": api.url}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"depth {d}" for d in (1, 2, 3, 4)]
    assert lines[0].endswith("error still above 0.01 after 10000 steps")
    assert "error <= 0.01 from step 6" in lines[3]
