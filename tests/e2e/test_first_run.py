"""A fresh worker process compiles (or loads from numba's cache) its kernels before it claims
any work, so its first run steps at once (bench/first_run.py measures how soon)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.waiting import wait_for

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _status(url: str, experiment_id: int) -> str:
    return httpx.get(f"{url}/experiments/{experiment_id}").json()["status"]


@SQLITE_ONLY
def test_worker_warms_up_before_its_first_claim(stack, tmp_path: Path):
    stack.start_api()
    created = httpx.post(f"{stack.url}/experiments", json={"depth": 4, "steps": 100})
    experiment_id = created.json()["id"]
    stack.start("worker")  # the run is queued before the worker starts
    wait_for(lambda: _status(stack.url, experiment_id) == "succeeded", "the run to succeed")
    log = (tmp_path / "worker-1.log").read_text()
    assert "event=kernels_ready" in log, log
    assert log.index("event=kernels_ready") < log.index("event=claimed"), log
