"""Real `python -m service` and `python -m worker` processes on one SQLite file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Stack:
    """The API and any number of workers, sharing one database, logging to files."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'stack.db'}",
            "DIRCONV_POLL_SECONDS": "0.1",
            "PYTHONUNBUFFERED": "1",
        }
        self.processes: list[subprocess.Popen] = []
        self.log_files: list = []
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, *args: str) -> subprocess.Popen:
        log = open(self.tmp_path / f"{args[0]}-{len(self.processes)}.log", "w")  # noqa: SIM115
        self.log_files.append(log)
        process = subprocess.Popen(
            [sys.executable, "-m", *args], cwd=REPO_ROOT, env=self.env, stdout=log, stderr=log
        )
        self.processes.append(process)
        return process

    def start_api(self) -> subprocess.Popen:
        process = self.start("service", "--host", "127.0.0.1", "--port", str(self.port))
        wait_for(lambda: self._healthy(), timeout=30)
        return process

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def logs(self) -> str:
        return "\n".join(p.name + ":\n" + p.read_text() for p in self.tmp_path.glob("*.log"))

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self.log_files:
            log.close()


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = Stack(tmp_path)
    try:
        yield running
    except BaseException:
        print(running.logs())
        raise
    finally:
        running.stop_all()


def _experiment(stack: Stack, experiment_id: int) -> dict:
    return httpx.get(f"{stack.url}/experiments/{experiment_id}").json()


def test_submit_run_and_read_metrics_over_http(stack):
    stack.start_api()
    stack.start("worker")
    spec = {"depth": 3, "steps": 2000, "log_every": 10, "tags": ["e2e"]}
    created = httpx.post(f"{stack.url}/experiments", json=spec)
    assert created.status_code == 201, created.text
    experiment_id = created.json()["id"]
    wait_for(lambda: _experiment(stack, experiment_id)["status"] == "succeeded")
    metrics = httpx.get(
        f"{stack.url}/experiments/{experiment_id}/metrics",
        params={"names": "directional_error,norm"},
    ).json()
    errors = metrics["series"]["directional_error"]
    assert errors["steps"] == list(range(0, 2001, 10))
    assert errors["values"][0] == pytest.approx(0.6325, abs=1e-4)
    assert errors["values"][-1] < errors["values"][0]
    summary = _experiment(stack, experiment_id)["summary"]
    assert summary["final_directional_error"] == errors["values"][-1]


def test_cancel_reaches_a_worker_process_within_a_second(stack):
    stack.start_api()
    stack.start("worker")
    experiment_id = httpx.post(f"{stack.url}/experiments", json={"steps": 1_000_000}).json()["id"]
    wait_for(lambda: _experiment(stack, experiment_id)["progress"]["step"] > 0)
    asked = time.monotonic()
    assert httpx.post(f"{stack.url}/experiments/{experiment_id}/cancel").status_code == 202
    wait_for(lambda: _experiment(stack, experiment_id)["status"] == "canceled", timeout=5)
    assert time.monotonic() - asked < 1.5


def test_sigterm_requeues_the_run_and_another_worker_finishes_it(stack):
    stack.start_api()
    first = stack.start("worker")
    spec = {"steps": 30_000, "log_every": 100}
    experiment_id = httpx.post(f"{stack.url}/experiments", json=spec).json()["id"]
    wait_for(lambda: _experiment(stack, experiment_id)["progress"]["step"] > 0)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=10) == 0
    assert _experiment(stack, experiment_id)["status"] == "queued"
    stack.start("worker")
    wait_for(lambda: _experiment(stack, experiment_id)["status"] == "succeeded")
    steps = httpx.get(f"{stack.url}/experiments/{experiment_id}/metrics").json()["series"]
    assert steps["norm"]["steps"] == list(range(0, 30_001, 100))


def test_api_process_rejects_bad_specs_and_stores_nothing(stack):
    stack.start_api()
    for body in ({"depth": 0}, {"teacher": [1]}, {"extra": True}):
        response = httpx.post(f"{stack.url}/experiments", json=body)
        assert response.status_code == 422
    assert httpx.get(f"{stack.url}/experiments").json()["count"] == 0


def test_depth_sweep_over_http_shows_deeper_converges_faster(stack):
    stack.start_api()
    stack.start("worker")
    body = {"name": "depths", "base": {"steps": 4000, "log_every": 50},
            "grid": {"depth": [1, 2, 3, 4]}}  # fmt: skip
    created = httpx.post(f"{stack.url}/sweeps", json=body)
    assert created.status_code == 201, created.text
    sweep_url = f"{stack.url}/sweeps/{created.json()['id']}"
    wait_for(lambda: httpx.get(sweep_url).json()["counts"]["succeeded"] == 4)
    members = httpx.get(f"{sweep_url}/metrics", params={"name": "directional_error"}).json()
    at_4000 = {
        m["grid_values"]["depth"]: m["values"][m["steps"].index(4000)] for m in members["members"]
    }
    assert at_4000[1] > at_4000[2] > at_4000[3] > at_4000[4]
