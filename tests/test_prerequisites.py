"""The suite on a machine without PostgreSQL or Chromium: their tests skip and the run ends
with one line saying so; with DIRCONV_TEST_REQUIRE (as `.ci/run` sets it) they fail instead.
Each case runs a real pytest on two of the suite's own tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.e2e.stack import REPO_ROOT

NEEDS_POSTGRES = (
    "tests/core/test_db.py::test_upsert_of_one_row_inserts_then_replaces_it_with_sql_values"
)
NEEDS_CHROMIUM = "tests/browser/test_dashboard.py::test_new_run_form_shows_errors_next_to_fields"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the probe closes


def _pytest_without_prerequisites(require: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DIRCONV_TEST_POSTGRES_URL": f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/test",
        "DIRCONV_TEST_CHROMIUM": str(REPO_ROOT / "no-such-chromium"),
        "DIRCONV_TEST_REQUIRE": require,
    }
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*command, NEEDS_POSTGRES, NEEDS_CHROMIUM],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_missing_postgres_and_chromium_skip_and_the_last_line_says_how_to_enable_them():
    result = _pytest_without_prerequisites(require="")
    assert result.returncode == 0, result.stdout[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("skipped 1 tests that need Chromium")
    assert "apt-get install chromium chromium-driver" in last
    assert "1 tests that need PostgreSQL" in last and "createdb test" in last
    assert "1 passed, 2 skipped" in result.stdout  # the SQLite half still ran


def test_required_prerequisites_that_are_missing_fail_the_run():
    result = _pytest_without_prerequisites(require="postgres,chromium")
    assert result.returncode == 1
    assert "DIRCONV_TEST_REQUIRE requires postgres" in result.stdout
    assert "DIRCONV_TEST_REQUIRE requires chromium" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("1 passed, 2 errors")


@pytest.mark.parametrize("require", ["postgresql", "postgres,chrome"])
def test_an_unknown_required_name_stops_the_run(require):
    result = _pytest_without_prerequisites(require=require)
    assert result.returncode == 4
    assert "known: postgres, chromium" in result.stderr
