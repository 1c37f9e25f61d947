"""The `dirconv` command against real API and worker processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dirconv.cli import _parser as cli_parser
from dirconv.cli import main, parse_grid, spec_from_args


def _run(api, capsys, *args: str) -> tuple[int, str, str]:
    code = main(["--url", api.url, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_submit_watch_then_show_and_metrics_csv(api, capsys):
    code, out, err = _run(api, capsys, "submit", "--depth", "3", "--steps", "300", "--watch")
    assert code == 0, err
    assert "submitted experiment" in out and "succeeded" in out
    assert "final_directional_error" in out
    assert "steps/s" in err or "step/s" in err
    experiment_id = out.split()[2]
    code, out, _ = _run(api, capsys, "show", experiment_id)
    assert code == 0 and "depth         3" in out
    code, out, _ = _run(api, capsys, "metrics", experiment_id, "--csv", "--max-points", "5")
    rows = out.strip().splitlines()
    assert rows[0] == "step,directional_error,angle,loss,norm,balancedness"
    assert len(rows) == 1 + 5
    assert rows[1].startswith("0,0.632") and rows[-1].startswith("300,")


def test_api_errors_print_field_and_reason_and_exit_nonzero(api, capsys):
    code, _, err = _run(api, capsys, "submit", "--depth", "0", "--loss", "hinge")
    assert code == 1
    assert "depth: Input should be greater than or equal to 1" in err
    assert "loss: " in err


def test_spec_file_and_set_are_merged_under_flags(tmp_path: Path):
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"depth": 2, "lr": 0.01, "steps": 10}))
    args = cli_parser().parse_args(
        ["submit", "--spec", str(spec_file), "--depth", "4", "--set", "seed=7", "--tag", "a"]
    )
    assert spec_from_args(args) == {"depth": 4, "lr": 0.01, "steps": 10, "seed": 7, "tags": ["a"]}


def test_grid_axes_parse_values_as_json():
    assert parse_grid(["depth=1,2", "loss=logistic,exponential"]) == {
        "depth": [1, 2],
        "loss": ["logistic", "exponential"],
    }


def test_list_and_cancel(api, capsys):
    _, out, _ = _run(api, capsys, "submit", "--steps", "1000000", "--name", "long-one")
    experiment_id = out.split()[2]
    code, out, _ = _run(api, capsys, "list", "--limit", "5")
    assert code == 0 and "long-one" in out and out.startswith("id")
    code, out, _ = _run(api, capsys, "cancel", experiment_id)
    assert code == 0 and "cancel requested" in out
    code, _, err = _run(api, capsys, "cancel", "999999")
    assert code == 1 and "experiment 999999 not found" in err


def test_unreachable_api_is_reported(capsys):
    assert main(["--url", "http://127.0.0.1:9", "list"]) == 3
    assert "cannot reach the dirconv API" in capsys.readouterr().err


def test_reproduce_paper_writes_figure_and_table(api, capsys, tmp_path: Path):
    out_dir = tmp_path / "reproduction"
    args = ["reproduce-paper", "--out", str(out_dir), "--depths", "1,2", "--steps", "300"]
    code, out, err = _run(api, capsys, *args)
    assert code == 0, err
    assert (out_dir / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out_dir / "table.md").read_text()
    assert "| 2 | SGD | 0.6325" in table and "| 2 | flow |" in table
    assert "steps to 1e-2" in table


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "dirconv"
    result = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    assert "reproduce-paper" in result.stdout


@pytest.mark.parametrize("command", ["watch", "show", "cancel", "metrics"])
def test_commands_need_an_id(command, capsys):
    with pytest.raises(SystemExit) as exited:
        main([command])
    assert exited.value.code == 2


def test_unreadable_spec_file_is_a_usage_error(tmp_path: Path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["--url", "http://127.0.0.1:9", "submit", "--spec", str(bad)]) == 2
    assert "--spec" in capsys.readouterr().err
